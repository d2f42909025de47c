/* viewer_view.c: one slice view (XY, XZ or YZ): a GtkDrawingArea showing
 * the slice through the crosshair, composed in C (viewer_render.h) into a
 * cached cairo image, plus its slider. The cache is keyed by slice index,
 * window/level version, label version, opacity and visibility, so zooming,
 * panning and moving the crosshair in another view only repaint. The
 * widget and its mouse and key input: viewer_view_input.c (over
 * viewer_view_int.h). Main thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "viewer/viewer_app.h"
#include "viewer/viewer_view_int.h"


/* The cursor coordinate (0 z, 1 y, 2 x) a view's slice index follows. */
int viewer_view_fixed_dim(viewer_axis_t axis) {
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
  uint32_t index = app->cursor[viewer_view_fixed_dim(v->axis)];
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
  uint32_t index = app->cursor[viewer_view_fixed_dim(v->axis)];
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
void viewer_view_geometry(const viewer_view_t* v,
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


void viewer_view_draw(GtkDrawingArea* area,
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
  viewer_view_geometry(v, &s, &ox, &oy);
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
  int d = viewer_view_fixed_dim(v->axis);
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


double viewer_view_zoom(viewer_view_t* v) {
  if (v == NULL || !v->app->has_volume || v->width == 0 ||
      gtk_widget_get_width(v->area) <= 0) {
    return 0;
  }
  double s, ox, oy;
  viewer_view_geometry(v, &s, &ox, &oy);
  return s;
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
    gtk_range_set_value(GTK_RANGE(v->slider),
                        app->cursor[viewer_view_fixed_dim(v->axis)]);
    v->is_setting_slider = false;
    gtk_widget_set_sensitive(v->slider, count > 1);
  }
  gtk_widget_queue_draw(v->area);
}


void viewer_view_redraw(viewer_view_t* v) {
  if (v->app->has_volume) {
    v->is_setting_slider = true;
    gtk_range_set_value(GTK_RANGE(v->slider),
                        v->app->cursor[viewer_view_fixed_dim(v->axis)]);
    v->is_setting_slider = false;
  }
  gtk_widget_queue_draw(v->area);
  viewer_view_show_readout(v);
}


void viewer_view_free(viewer_view_t* v) {
  if (v == NULL) {
    return;
  }
  release_buffers(v);
  g_free(v);
}
