/* viewer_view_int.h: one slice view's state, shared by its drawing
 * (viewer_view.c: the cached slice image, the crosshair, the slider's
 * position) and its input (viewer_view_input.c: the widget and its
 * controllers: mouse, keys, slider). Private to those two files. Main
 * thread only. */
#ifndef VIEWER_VIEW_INT_H
#define VIEWER_VIEW_INT_H

#include <stdbool.h>
#include <stdint.h>

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
int viewer_view_fixed_dim(viewer_axis_t axis);

/* Scale and origin of the image in the widget. */
void viewer_view_geometry(const viewer_view_t* v,
                          double* s,
                          double* ox,
                          double* oy);

/* The drawing area's draw function (user: the view). */
void viewer_view_draw(GtkDrawingArea* area,
                      cairo_t* cr,
                      int aw,
                      int ah,
                      gpointer user);

/* The status line's readout of the voxel under the pointer, if any. */
void viewer_view_show_readout(viewer_view_t* v);

#endif
