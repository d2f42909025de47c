/* viewer_view.c: one slice view (XY, XZ or YZ): a GtkDrawingArea showing
 * the slice through the crosshair, composed in C (viewer_render.h) into a
 * cached cairo image, plus its slider. The cache is keyed by slice index,
 * window/level version, label version, opacity and visibility, so zooming,
 * panning and moving the crosshair in another view only repaint.
 * Mouse: wheel zooms about the pointer (Shift+wheel steps slices), left
 * click sets the crosshair, left drag pans, right drag adjusts
 * window (horizontal) and level (vertical). Keys: Up/Down, Page Up/Down
 * (10), Home/End step slices; +/- zoom; 0 fits. Main thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "viewer/viewer_app.h"

struct viewer_view_s {
  viewer_app_t* app;
  viewer_axis_t axis;
  GtkWidget* box;
  GtkWidget* title;
  GtkWidget* area;
  GtkWidget* slider;
  bool is_setting_slider;

  uint32_t width, height; /* slice image */
  uint8_t* grey;
  uint8_t* labels;
  uint32_t* argb;
  cairo_surface_t* surface;
  bool is_grey_ok, is_labels_ok, is_argb_ok;
  uint32_t grey_index, labels_index;
  uint64_t grey_version, labels_version;
  bool argb_with_labels;
  double argb_opacity;

  double zoom; /* 1: the slice fits the view */
  double pan_x, pan_y;
  double drag_pan_x, drag_pan_y;
  bool is_panning;
  viewer_wl_t drag_wl;
  double pointer_x, pointer_y;
  bool has_pointer;
};

/* The cursor coordinate (0 z, 1 y, 2 x) a view's slice index follows. */
static int fixed_dim(viewer_axis_t axis) {
  switch (axis) {
  case VIEWER_AXIS_XY:
    return 0;
  case VIEWER_AXIS_XZ:
    return 1;
  case VIEWER_AXIS_YZ:
    return 2;
  }
  return 0;
}


/* Image column and row of the crosshair. */
static void cursor_colrow(const viewer_view_t* v, double* col, double* row) {
  const uint32_t* c = v->app->cursor;
  switch (v->axis) {
  case VIEWER_AXIS_XY:
    *col = c[2];
    *row = c[1];
    return;
  case VIEWER_AXIS_XZ:
    *col = c[2];
    *row = c[0];
    return;
  case VIEWER_AXIS_YZ:
    *col = c[0];
    *row = c[1];
    return;
  }
}


static void release_buffers(viewer_view_t* v) {
  if (v->surface != NULL) {
    cairo_surface_destroy(v->surface);
    v->surface = NULL;
  }
  g_free(v->grey);
  g_free(v->labels);
  g_free(v->argb);
  v->grey = v->labels = NULL;
  v->argb = NULL;
  v->is_grey_ok = v->is_labels_ok = v->is_argb_ok = false;
}


static void refresh(viewer_view_t* v) {
  viewer_app_t* app = v->app;
  if (!app->has_volume || v->argb == NULL) {
    return;
  }
  uint32_t index = app->cursor[fixed_dim(v->axis)];
  bool is_changed = false;
  if (!v->is_grey_ok || v->grey_index != index ||
      v->grey_version != app->grey_version) {
    viewer_slice_grey(&app->vol, &app->lut, v->axis, index, v->grey);
    v->is_grey_ok = true;
    v->grey_index = index;
    v->grey_version = app->grey_version;
    is_changed = true;
  }
  bool with_labels =
      viewer_overlay_has(app) && app->show_mask && app->opacity > 0;
  if (with_labels && (!v->is_labels_ok || v->labels_index != index ||
                      v->labels_version != app->labels_version)) {
    viewer_overlay_slice(app, v->axis, index, v->labels);
    v->is_labels_ok = true;
    v->labels_index = index;
    v->labels_version = app->labels_version;
    is_changed = true;
  }
  if (is_changed || !v->is_argb_ok || v->argb_with_labels != with_labels ||
      v->argb_opacity != app->opacity) {
    cairo_surface_flush(v->surface);
    viewer_composite(v->grey, with_labels ? v->labels : NULL,
                     (size_t) v->width * v->height, app->opacity, v->argb);
    cairo_surface_mark_dirty(v->surface);
    v->is_argb_ok = true;
    v->argb_with_labels = with_labels;
    v->argb_opacity = app->opacity;
  }
}


void viewer_view_labels_rect(viewer_view_t* v, const uint32_t r[4]) {
  viewer_app_t* app = v->app;
  uint32_t index = app->cursor[fixed_dim(v->axis)];
  if (app->chunks == NULL || v->labels == NULL || !v->is_labels_ok ||
      v->labels_index != index || v->labels_version != app->labels_version ||
      r[0] + r[2] > v->width || r[1] + r[3] > v->height) {
    gtk_widget_queue_draw(v->area); /* refresh() composes it all */
    return;
  }
  viewer_chunks_slice(app->chunks, v->axis, index, r, v->labels, v->width);
  if (v->is_argb_ok && v->argb_with_labels) {
    cairo_surface_flush(v->surface);
    for (uint32_t row = r[1]; row < r[1] + r[3]; row++) {
      size_t at = (size_t) row * v->width + r[0];
      viewer_composite(v->grey + at, v->labels + at, r[2], v->argb_opacity,
                       v->argb + at);
    }
    cairo_surface_mark_dirty_rectangle(v->surface, (int) r[0], (int) r[1],
                                       (int) r[2], (int) r[3]);
  }
  gtk_widget_queue_draw(v->area);
}


const uint32_t* viewer_view_pixels(viewer_view_t* v,
                                   uint32_t* width,
                                   uint32_t* height) {
  if (!v->app->has_volume) {
    return NULL;
  }
  refresh(v);
  *width = v->width;
  *height = v->height;
  return v->argb;
}


/* Scale and origin of the image in the widget. */
static void geometry(const viewer_view_t* v,
                     double* s,
                     double* ox,
                     double* oy) {
  double aw = gtk_widget_get_width(v->area);
  double ah = gtk_widget_get_height(v->area);
  double fit = fmin(aw / v->width, ah / v->height);
  *s = fit * v->zoom;
  *ox = (aw - v->width * *s) / 2 + v->pan_x;
  *oy = (ah - v->height * *s) / 2 + v->pan_y;
}


static void draw(GtkDrawingArea* area,
                 cairo_t* cr,
                 int aw,
                 int ah,
                 gpointer user) {
  viewer_view_t* v = user;
  viewer_app_t* app = v->app;
  (void) area;
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.11);
  cairo_paint(cr);
  if (!app->has_volume) {
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_move_to(cr, 12, ah / 2.0);
    cairo_show_text(cr, "Open a tomogram: File > Open, or drop a .mrc here");
    return;
  }
  (void) aw;
  refresh(v);
  double s, ox, oy;
  geometry(v, &s, &ox, &oy);
  cairo_save(cr);
  cairo_translate(cr, ox, oy);
  cairo_scale(cr, s, s);
  cairo_set_source_surface(cr, v->surface, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_rectangle(cr, 0, 0, v->width, v->height);
  cairo_fill(cr);
  cairo_restore(cr);

  double col = 0, row = 0;
  cursor_colrow(v, &col, &row);
  double cx = floor(ox + (col + 0.5) * s) + 0.5;
  double cy = floor(oy + (row + 0.5) * s) + 0.5;
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgba(cr, 1.0, 0.85, 0.1, 0.55);
  cairo_move_to(cr, cx, oy);
  cairo_line_to(cr, cx, oy + v->height * s);
  cairo_move_to(cr, ox, cy);
  cairo_line_to(cr, ox + v->width * s, cy);
  cairo_stroke(cr);

  char text[64];
  static const char* dims = "zyx";
  int d = fixed_dim(v->axis);
  snprintf(text, sizeof(text), "%s  %c %u of 0–%u  %.0f%%",
           viewer_axis_name(v->axis), dims[d], app->cursor[d],
           app->vol.shape.d[d] - 1, s * 100);
  cairo_set_font_size(cr, 12);
  cairo_set_source_rgba(cr, 0, 0, 0, 0.6);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text, &ext);
  cairo_rectangle(cr, 4, 4, ext.x_advance + 8, 18);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_move_to(cr, 8, 17);
  cairo_show_text(cr, text);
}


/* The voxel under widget point (px, py); false outside the image. */
static bool voxel_at(const viewer_view_t* v,
                     double px,
                     double py,
                     uint32_t zyx[3]) {
  double s, ox, oy;
  geometry(v, &s, &ox, &oy);
  double col = floor((px - ox) / s), row = floor((py - oy) / s);
  if (col < 0 || row < 0 || col >= v->width || row >= v->height) {
    return false;
  }
  viewer_slice_voxel(v->axis, v->app->cursor[fixed_dim(v->axis)],
                     (uint32_t) col, (uint32_t) row, zyx);
  return true;
}


static void show_readout(viewer_view_t* v) {
  viewer_app_t* app = v->app;
  uint32_t zyx[3];
  if (!app->has_volume || !v->has_pointer ||
      !voxel_at(v, v->pointer_x, v->pointer_y, zyx)) {
    return;
  }
  char text[160];
  int n = snprintf(text, sizeof(text), "z %u  y %u  x %u   value %.4g", zyx[0],
                   zyx[1], zyx[2],
                   viewer_volume_value(&app->vol, zyx[0], zyx[1], zyx[2]));
  if (viewer_overlay_has(app) && n > 0 && (size_t) n < sizeof(text)) {
    snprintf(text + n, sizeof(text) - (size_t) n, "   label %u",
             viewer_overlay_label(app, zyx));
  }
  viewer_window_status(app, text);
}


static void step_slice(viewer_view_t* v, int delta) {
  viewer_app_t* app = v->app;
  if (!app->has_volume) {
    return;
  }
  int d = fixed_dim(v->axis);
  int64_t i = (int64_t) app->cursor[d] + delta;
  int64_t n = app->vol.shape.d[d];
  i = i < 0 ? 0 : (i >= n ? n - 1 : i);
  uint32_t c[3] = {app->cursor[0], app->cursor[1], app->cursor[2]};
  c[d] = (uint32_t) i;
  viewer_window_set_cursor(app, c);
}


static void zoom_about(viewer_view_t* v, double factor, double px, double py) {
  double s, ox, oy;
  geometry(v, &s, &ox, &oy);
  double z = fmin(fmax(v->zoom * factor, 0.1), 64.0);
  double ns = s * z / v->zoom;
  double ix = (px - ox) / s, iy = (py - oy) / s;
  double aw = gtk_widget_get_width(v->area);
  double ah = gtk_widget_get_height(v->area);
  v->zoom = z;
  v->pan_x = px - ix * ns - (aw - v->width * ns) / 2;
  v->pan_y = py - iy * ns - (ah - v->height * ns) / 2;
  gtk_widget_queue_draw(v->area);
  viewer_overlay_view_changed(v->app);
}


double viewer_view_zoom(viewer_view_t* v) {
  if (v == NULL || !v->app->has_volume || v->width == 0 ||
      gtk_widget_get_width(v->area) <= 0) {
    return 0;
  }
  double s, ox, oy;
  geometry(v, &s, &ox, &oy);
  return s;
}


static gboolean on_scroll(GtkEventControllerScroll* c,
                          double dx,
                          double dy,
                          gpointer user) {
  viewer_view_t* v = user;
  (void) dx;
  if (!v->app->has_volume) {
    return FALSE;
  }
  GdkModifierType mods =
      gtk_event_controller_get_current_event_state(GTK_EVENT_CONTROLLER(c));
  if (mods & GDK_SHIFT_MASK) {
    step_slice(v, dy > 0 ? -1 : 1);
    return TRUE;
  }
  double px =
      v->has_pointer ? v->pointer_x : gtk_widget_get_width(v->area) / 2.0;
  double py =
      v->has_pointer ? v->pointer_y : gtk_widget_get_height(v->area) / 2.0;
  zoom_about(v, pow(1.15, -dy), px, py);
  return TRUE;
}


static void on_motion(GtkEventControllerMotion* c,
                      double x,
                      double y,
                      gpointer user) {
  viewer_view_t* v = user;
  (void) c;
  v->pointer_x = x;
  v->pointer_y = y;
  v->has_pointer = true;
  show_readout(v);
}


static void on_enter(GtkEventControllerMotion* c,
                     double x,
                     double y,
                     gpointer user) {
  viewer_view_t* v = user;
  (void) c;
  v->pointer_x = x;
  v->pointer_y = y;
  v->has_pointer = true;
  gtk_widget_grab_focus(v->area); /* keys step the hovered view */
}


static void on_leave(GtkEventControllerMotion* c, gpointer user) {
  viewer_view_t* v = user;
  (void) c;
  v->has_pointer = false;
}


static void on_pan_begin(GtkGestureDrag* g, double x, double y, gpointer user) {
  viewer_view_t* v = user;
  (void) g;
  (void) x;
  (void) y;
  v->drag_pan_x = v->pan_x;
  v->drag_pan_y = v->pan_y;
  v->is_panning = false;
  gtk_widget_grab_focus(v->area);
}


static void on_pan_update(GtkGestureDrag* g,
                          double dx,
                          double dy,
                          gpointer user) {
  viewer_view_t* v = user;
  (void) g;
  if (!v->is_panning && hypot(dx, dy) < 4) {
    return;
  }
  v->is_panning = true;
  v->pan_x = v->drag_pan_x + dx;
  v->pan_y = v->drag_pan_y + dy;
  gtk_widget_queue_draw(v->area);
}


static void on_pan_end(GtkGestureDrag* g, double dx, double dy, gpointer user) {
  viewer_view_t* v = user;
  (void) dx;
  (void) dy;
  if (v->is_panning || !v->app->has_volume) {
    return;
  }
  /* A click: the crosshair goes to the voxel under it. */
  double sx, sy;
  gtk_gesture_drag_get_start_point(g, &sx, &sy);
  uint32_t zyx[3];
  if (voxel_at(v, sx, sy, zyx)) {
    viewer_window_set_cursor(v->app, zyx);
  }
}


static void on_wl_begin(GtkGestureDrag* g, double x, double y, gpointer user) {
  viewer_view_t* v = user;
  (void) g;
  (void) x;
  (void) y;
  v->drag_wl = v->app->wl;
}


static void on_wl_update(GtkGestureDrag* g,
                         double dx,
                         double dy,
                         gpointer user) {
  viewer_view_t* v = user;
  (void) g;
  if (!v->app->has_volume) {
    return;
  }
  /* Right: wider window; down: higher level (darker image). 200 pixels of
   * drag double the window or move the level by one window. */
  double w0 = v->drag_wl.hi - v->drag_wl.lo;
  double c0 = (v->drag_wl.hi + v->drag_wl.lo) / 2;
  double w = w0 * pow(2.0, dx / 200.0);
  double c = c0 + dy / 200.0 * w0;
  viewer_wl_t wl = {c - w / 2, c + w / 2};
  viewer_window_set_wl(v->app, wl, true);
}


static gboolean on_key(GtkEventControllerKey* c,
                       guint keyval,
                       guint keycode,
                       GdkModifierType state,
                       gpointer user) {
  viewer_view_t* v = user;
  (void) c;
  (void) keycode;
  (void) state;
  switch (keyval) {
  case GDK_KEY_Up:
  case GDK_KEY_Right:
    step_slice(v, 1);
    return TRUE;
  case GDK_KEY_Down:
  case GDK_KEY_Left:
    step_slice(v, -1);
    return TRUE;
  case GDK_KEY_Page_Up:
    step_slice(v, 10);
    return TRUE;
  case GDK_KEY_Page_Down:
    step_slice(v, -10);
    return TRUE;
  case GDK_KEY_Home:
    step_slice(v, -(1 << 20));
    return TRUE;
  case GDK_KEY_End:
    step_slice(v, 1 << 20);
    return TRUE;
  case GDK_KEY_plus:
  case GDK_KEY_equal:
  case GDK_KEY_KP_Add:
    zoom_about(v, 1.25, gtk_widget_get_width(v->area) / 2.0,
               gtk_widget_get_height(v->area) / 2.0);
    return TRUE;
  case GDK_KEY_minus:
  case GDK_KEY_KP_Subtract:
    zoom_about(v, 0.8, gtk_widget_get_width(v->area) / 2.0,
               gtk_widget_get_height(v->area) / 2.0);
    return TRUE;
  case GDK_KEY_0:
    v->zoom = 1;
    v->pan_x = v->pan_y = 0;
    gtk_widget_queue_draw(v->area);
    viewer_overlay_view_changed(v->app);
    return TRUE;
  default:
    return FALSE;
  }
}


static void on_slider(GtkRange* range, gpointer user) {
  viewer_view_t* v = user;
  if (v->is_setting_slider || !v->app->has_volume) {
    return;
  }
  int d = fixed_dim(v->axis);
  uint32_t c[3] = {v->app->cursor[0], v->app->cursor[1], v->app->cursor[2]};
  c[d] = (uint32_t) lround(gtk_range_get_value(range));
  if (c[d] != v->app->cursor[d]) {
    viewer_window_set_cursor(v->app, c);
  }
}


viewer_view_t* viewer_view_new(viewer_app_t* app, viewer_axis_t axis) {
  viewer_view_t* v = g_new0(viewer_view_t, 1);
  v->app = app;
  v->axis = axis;
  v->zoom = 1;
  v->box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 2);
  v->area = gtk_drawing_area_new();
  gtk_widget_set_hexpand(v->area, TRUE);
  gtk_widget_set_vexpand(v->area, TRUE);
  gtk_widget_set_size_request(v->area, 160, 160);
  gtk_widget_set_focusable(v->area, TRUE);
  gtk_drawing_area_set_draw_func(GTK_DRAWING_AREA(v->area), draw, v, NULL);
  gtk_box_append(GTK_BOX(v->box), v->area);

  v->slider = gtk_scale_new_with_range(GTK_ORIENTATION_HORIZONTAL, 0, 1, 1);
  gtk_scale_set_digits(GTK_SCALE(v->slider), 0);
  gtk_scale_set_draw_value(GTK_SCALE(v->slider), TRUE);
  gtk_scale_set_value_pos(GTK_SCALE(v->slider), GTK_POS_LEFT);
  gtk_widget_set_sensitive(v->slider, FALSE);
  g_signal_connect(v->slider, "value-changed", G_CALLBACK(on_slider), v);
  gtk_box_append(GTK_BOX(v->box), v->slider);

  GtkEventController* scroll =
      gtk_event_controller_scroll_new(GTK_EVENT_CONTROLLER_SCROLL_VERTICAL);
  g_signal_connect(scroll, "scroll", G_CALLBACK(on_scroll), v);
  gtk_widget_add_controller(v->area, scroll);

  GtkEventController* motion = gtk_event_controller_motion_new();
  g_signal_connect(motion, "motion", G_CALLBACK(on_motion), v);
  g_signal_connect(motion, "enter", G_CALLBACK(on_enter), v);
  g_signal_connect(motion, "leave", G_CALLBACK(on_leave), v);
  gtk_widget_add_controller(v->area, motion);

  GtkGesture* pan = gtk_gesture_drag_new();
  gtk_gesture_single_set_button(GTK_GESTURE_SINGLE(pan), GDK_BUTTON_PRIMARY);
  g_signal_connect(pan, "drag-begin", G_CALLBACK(on_pan_begin), v);
  g_signal_connect(pan, "drag-update", G_CALLBACK(on_pan_update), v);
  g_signal_connect(pan, "drag-end", G_CALLBACK(on_pan_end), v);
  gtk_widget_add_controller(v->area, GTK_EVENT_CONTROLLER(pan));

  GtkGesture* wl = gtk_gesture_drag_new();
  gtk_gesture_single_set_button(GTK_GESTURE_SINGLE(wl), GDK_BUTTON_SECONDARY);
  g_signal_connect(wl, "drag-begin", G_CALLBACK(on_wl_begin), v);
  g_signal_connect(wl, "drag-update", G_CALLBACK(on_wl_update), v);
  gtk_widget_add_controller(v->area, GTK_EVENT_CONTROLLER(wl));

  GtkEventController* key = gtk_event_controller_key_new();
  g_signal_connect(key, "key-pressed", G_CALLBACK(on_key), v);
  gtk_widget_add_controller(v->area, key);
  return v;
}


GtkWidget* viewer_view_widget(viewer_view_t* v) {
  return v->box;
}


void viewer_view_volume_changed(viewer_view_t* v) {
  viewer_app_t* app = v->app;
  release_buffers(v);
  v->zoom = 1;
  v->pan_x = v->pan_y = 0;
  if (app->has_volume) {
    viewer_slice_dims(&app->vol.shape, v->axis, &v->width, &v->height);
    size_t n = (size_t) v->width * v->height;
    v->grey = g_malloc(n);
    v->labels = g_malloc(n);
    v->argb = g_malloc(n * 4);
    v->surface = cairo_image_surface_create_for_data(
        (unsigned char*) v->argb, CAIRO_FORMAT_ARGB32, (int) v->width,
        (int) v->height, (int) v->width * 4);
    uint32_t count = viewer_slice_count(&app->vol.shape, v->axis);
    v->is_setting_slider = true;
    gtk_range_set_range(GTK_RANGE(v->slider), 0, count > 1 ? count - 1 : 1);
    gtk_range_set_increments(GTK_RANGE(v->slider), 1, 10);
    gtk_range_set_value(GTK_RANGE(v->slider), app->cursor[fixed_dim(v->axis)]);
    v->is_setting_slider = false;
    gtk_widget_set_sensitive(v->slider, count > 1);
  }
  gtk_widget_queue_draw(v->area);
}


void viewer_view_redraw(viewer_view_t* v) {
  if (v->app->has_volume) {
    v->is_setting_slider = true;
    gtk_range_set_value(GTK_RANGE(v->slider),
                        v->app->cursor[fixed_dim(v->axis)]);
    v->is_setting_slider = false;
  }
  gtk_widget_queue_draw(v->area);
  show_readout(v);
}


void viewer_view_free(viewer_view_t* v) {
  if (v == NULL) {
    return;
  }
  release_buffers(v);
  g_free(v);
}
