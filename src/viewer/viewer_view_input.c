/* viewer_view_input.c: a slice view's widget and its input (viewer_view.c
 * draws it; viewer_view_int.h is their share): the drawing area and its
 * slider, the readout of the voxel under the pointer, and the controllers.
 * Mouse: wheel zooms about the pointer (Shift+wheel steps slices), left
 * click sets the crosshair, left drag pans, right drag adjusts window
 * (horizontal) and level (vertical). Keys: Up/Down, Page Up/Down (10),
 * Home/End step slices; +/- zoom; 0 fits. Main thread only. */
#include <math.h>
#include <stdio.h>

#include "viewer/viewer_app.h"
#include "viewer/viewer_view_int.h"


/* The voxel under widget point (px, py); false outside the image. */
static bool voxel_at(const viewer_view_t* v,
                     double px,
                     double py,
                     uint32_t zyx[3]) {
  double s, ox, oy;
  viewer_view_geometry(v, &s, &ox, &oy);
  double col = floor((px - ox) / s), row = floor((py - oy) / s);
  if (col < 0 || row < 0 || col >= v->width || row >= v->height) {
    return false;
  }
  viewer_slice_voxel(v->axis, v->app->cursor[viewer_view_fixed_dim(v->axis)],
                     (uint32_t) col, (uint32_t) row, zyx);
  return true;
}


void viewer_view_show_readout(viewer_view_t* v) {
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
  int d = viewer_view_fixed_dim(v->axis);
  int64_t i = (int64_t) app->cursor[d] + delta;
  int64_t n = app->vol.shape.d[d];
  i = i < 0 ? 0 : (i >= n ? n - 1 : i);
  uint32_t c[3] = {app->cursor[0], app->cursor[1], app->cursor[2]};
  c[d] = (uint32_t) i;
  viewer_window_set_cursor(app, c);
}


static void zoom_about(viewer_view_t* v, double factor, double px, double py) {
  double s, ox, oy;
  viewer_view_geometry(v, &s, &ox, &oy);
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
  viewer_view_show_readout(v);
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
  int d = viewer_view_fixed_dim(v->axis);
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
  gtk_drawing_area_set_draw_func(GTK_DRAWING_AREA(v->area), viewer_view_draw, v,
                                 NULL);
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
