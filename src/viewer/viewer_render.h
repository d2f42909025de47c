/* viewer_render.h: what a slice view shows, in plain C: window/level of
 * voxels to 8-bit grey, the three orthogonal slices of a volume and of a
 * label volume, label colours and the compositing of a label overlay over
 * grey into opaque 32-bit pixels (0xAARRGGBB in native byte order, cairo's
 * ARGB32 and GDK's B8G8R8A8 on little-endian). No GTK; any thread. */
#ifndef VIEWER_RENDER_H
#define VIEWER_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"
#include "viewer/viewer_volume.h"

/* Which slice a view shows. XY: fixed z, image x right, y down. XZ: fixed
 * y, x right, z down. YZ: fixed x, z right, y down (so it lines up with
 * XY's rows when placed to its right, as in orthogonal views). */
typedef enum {
  VIEWER_AXIS_XY = 0,
  VIEWER_AXIS_XZ = 1,
  VIEWER_AXIS_YZ = 2
} viewer_axis_t;

#define VIEWER_AXIS_COUNT 3

/* "XY", "XZ", "YZ". */
const char* viewer_axis_name(viewer_axis_t axis);

/* Image width and height of a slice of `shape` along `axis`. */
void viewer_slice_dims(const core_shape_t* shape,
                       viewer_axis_t axis,
                       uint32_t* width,
                       uint32_t* height);

/* Number of slices along `axis` (nz for XY, ny for XZ, nx for YZ). */
uint32_t viewer_slice_count(const core_shape_t* shape, viewer_axis_t axis);

/* The volume voxel (z, y, x) shown at image pixel (col, row) of slice
 * `index` along `axis`. */
void viewer_slice_voxel(viewer_axis_t axis,
                        uint32_t index,
                        uint32_t col,
                        uint32_t row,
                        uint32_t zyx[3]);

/* Window/level: values <= lo are black, >= hi white, linear between. */
typedef struct {
  double lo, hi;
} viewer_wl_t;

/* Grey of one value under `wl` (rounded; lo == hi: a step at lo). */
uint8_t viewer_wl_apply(const viewer_wl_t* wl, double v);

/* A window/level prepared for one MRC mode: a table for the 8- and 16-bit
 * modes (every bit pattern, float16 included), a scale for float32. */
typedef struct {
  int32_t mode;
  viewer_wl_t wl;
  float offset, scale; /* float32: grey = (v - offset) * scale */
  uint8_t* lut;        /* 256 or 65536 entries; NULL for float32 */
} viewer_wl_lut_t;

/* Prepares `lut` (allocating its table). Returns 0 or -ENOMEM. */
int viewer_wl_lut_init(viewer_wl_lut_t* lut, int32_t mode, viewer_wl_t wl);
void viewer_wl_lut_free(viewer_wl_lut_t* lut);

/* Slice `index` along `axis` of `vol` windowed to grey into `out`
 * (width * height bytes, viewer_slice_dims). */
void viewer_slice_grey(const viewer_volume_t* vol,
                       const viewer_wl_lut_t* lut,
                       viewer_axis_t axis,
                       uint32_t index,
                       uint8_t* out);

/* The same slice of a full-resolution uint8 label volume of `shape`. */
void viewer_slice_labels(const uint8_t* labels,
                         const core_shape_t* shape,
                         viewer_axis_t axis,
                         uint32_t index,
                         uint8_t* out);

/* Colour of `label` as 0xRRGGBB; label 0 (background) is never drawn.
 * 1..8 are fixed distinct colours, higher labels cycle through hues. */
uint32_t viewer_label_rgb(uint8_t label);

/* out[i] = grey[i] as an opaque grey pixel, or, where labels (may be NULL)
 * is non-zero, the blend grey + (colour - grey) * opacity per channel
 * (opacity 0..1, rounded to 1/256 steps). */
void viewer_composite(const uint8_t* grey,
                      const uint8_t* labels,
                      size_t count,
                      double opacity,
                      uint32_t* out);

/* Blend of one channel, as viewer_composite computes it. */
uint8_t viewer_blend_channel(uint8_t grey, uint8_t colour, double opacity);

/* Where the three views go in a screenshot, at one pixel per voxel: XY at
 * the top left, YZ to its right (sharing rows y), XZ below it (sharing
 * columns x), `gap` pixels between; the bottom-right corner stays empty.
 * rects[axis] = {left, top, width, height}; *width, *height: the image. */
void viewer_ortho_layout(const core_shape_t* shape,
                         uint32_t gap,
                         uint32_t rects[VIEWER_AXIS_COUNT][4],
                         uint32_t* width,
                         uint32_t* height);

#endif
