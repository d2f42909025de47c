/* viewer_render.c: slices, window/level and overlay compositing for the
 * slice views (viewer_render.h). Hot paths: an XY slice reads contiguous
 * rows, XZ contiguous rows of each Z plane, YZ one voxel per row (strided);
 * every mode but float32 goes through a 256/65536-entry table. */
#include "viewer/viewer_render.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


const char* viewer_axis_name(viewer_axis_t axis) {
  switch (axis) {
  case VIEWER_AXIS_XY:
    return "XY";
  case VIEWER_AXIS_XZ:
    return "XZ";
  case VIEWER_AXIS_YZ:
    return "YZ";
  }
  return "?";
}


void viewer_slice_dims(const core_shape_t* shape,
                       viewer_axis_t axis,
                       uint32_t* width,
                       uint32_t* height) {
  switch (axis) {
  case VIEWER_AXIS_XY:
    *width = shape->d[2];
    *height = shape->d[1];
    return;
  case VIEWER_AXIS_XZ:
    *width = shape->d[2];
    *height = shape->d[0];
    return;
  case VIEWER_AXIS_YZ:
    *width = shape->d[0];
    *height = shape->d[1];
    return;
  }
}


uint32_t viewer_slice_count(const core_shape_t* shape, viewer_axis_t axis) {
  switch (axis) {
  case VIEWER_AXIS_XY:
    return shape->d[0];
  case VIEWER_AXIS_XZ:
    return shape->d[1];
  case VIEWER_AXIS_YZ:
    return shape->d[2];
  }
  return 0;
}


void viewer_slice_voxel(viewer_axis_t axis,
                        uint32_t index,
                        uint32_t col,
                        uint32_t row,
                        uint32_t zyx[3]) {
  switch (axis) {
  case VIEWER_AXIS_XY:
    zyx[0] = index;
    zyx[1] = row;
    zyx[2] = col;
    return;
  case VIEWER_AXIS_XZ:
    zyx[0] = row;
    zyx[1] = index;
    zyx[2] = col;
    return;
  case VIEWER_AXIS_YZ:
    zyx[0] = col;
    zyx[1] = row;
    zyx[2] = index;
    return;
  }
}


uint8_t viewer_wl_apply(const viewer_wl_t* wl, double v) {
  if (!(v > wl->lo)) { /* NaN is black too */
    return 0;
  }
  if (v >= wl->hi) {
    return 255;
  }
  double g = (v - wl->lo) * 255.0 / (wl->hi - wl->lo);
  return (uint8_t) (g + 0.5);
}


int viewer_wl_lut_init(viewer_wl_lut_t* lut, int32_t mode, viewer_wl_t wl) {
  memset(lut, 0, sizeof(*lut));
  lut->mode = mode;
  lut->wl = wl;
  double span = wl.hi - wl.lo;
  lut->offset = (float) wl.lo;
  lut->scale = span > 0 ? (float) (255.0 / span) : 0;
  size_t entries;
  switch (mode) {
  case CORE_MRC_MODE_FLOAT32:
    return 0;
  case CORE_MRC_MODE_INT8:
    entries = 256;
    break;
  case CORE_MRC_MODE_INT16:
  case CORE_MRC_MODE_UINT16:
  case CORE_MRC_MODE_FLOAT16:
    entries = 65536;
    break;
  default:
    return -EINVAL;
  }
  lut->lut = malloc(entries);
  if (lut->lut == NULL) {
    return -ENOMEM;
  }
  for (size_t i = 0; i < entries; i++) {
    double v;
    switch (mode) {
    case CORE_MRC_MODE_INT8:
      v = (int8_t) (uint8_t) i;
      break;
    case CORE_MRC_MODE_INT16:
      v = (int16_t) (uint16_t) i;
      break;
    case CORE_MRC_MODE_UINT16:
      v = (double) i;
      break;
    default:
      v = viewer_half_to_float((uint16_t) i);
      break;
    }
    lut->lut[i] = viewer_wl_apply(&wl, v);
  }
  return 0;
}


void viewer_wl_lut_free(viewer_wl_lut_t* lut) {
  free(lut->lut);
  lut->lut = NULL;
}


static inline uint8_t grey_f32(const viewer_wl_lut_t* lut, float v) {
  float g = (v - lut->offset) * lut->scale;
  if (!(g > 0.0f)) {
    return lut->scale > 0 || !(v > lut->offset) ? 0 : 255;
  }
  if (g >= 255.0f) {
    return 255;
  }
  return (uint8_t) (g + 0.5f);
}


/* `count` voxels from `src`, `stride` bytes apart, to grey. */
static void run_grey(const viewer_wl_lut_t* lut,
                     const uint8_t* src,
                     size_t stride,
                     size_t count,
                     uint8_t* out) {
  switch (lut->mode) {
  case CORE_MRC_MODE_FLOAT32:
    for (size_t i = 0; i < count; i++) {
      float v;
      memcpy(&v, src + i * stride, sizeof(v));
      out[i] = grey_f32(lut, v);
    }
    return;
  case CORE_MRC_MODE_INT8:
    for (size_t i = 0; i < count; i++) {
      out[i] = lut->lut[src[i * stride]];
    }
    return;
  default:
    for (size_t i = 0; i < count; i++) {
      uint16_t v;
      memcpy(&v, src + i * stride, sizeof(v));
      out[i] = lut->lut[v];
    }
    return;
  }
}


void viewer_slice_grey(const viewer_volume_t* vol,
                       const viewer_wl_lut_t* lut,
                       viewer_axis_t axis,
                       uint32_t index,
                       uint8_t* out) {
  const size_t nz = vol->shape.d[0], ny = vol->shape.d[1], nx = vol->shape.d[2];
  const size_t is = vol->itemsize;
  switch (axis) {
  case VIEWER_AXIS_XY:
    assert(index < nz);
    run_grey(lut, vol->data + (size_t) index * ny * nx * is, is, ny * nx, out);
    return;
  case VIEWER_AXIS_XZ:
    assert(index < ny);
    for (size_t z = 0; z < nz; z++) {
      run_grey(lut, vol->data + ((z * ny + index) * nx) * is, is, nx,
               out + z * nx);
    }
    return;
  case VIEWER_AXIS_YZ:
    /* Image (col z, row y): walk each Z plane down its column x, writing
     * column z of the image, so the file is read plane by plane. */
    assert(index < nx);
    {
      uint8_t col[4096];
      for (size_t z = 0; z < nz; z++) {
        run_grey(lut, vol->data + (z * ny * nx + index) * is, nx * is, ny, col);
        for (size_t y = 0; y < ny; y++) {
          out[y * nz + z] = col[y];
        }
      }
    }
    return;
  }
}


void viewer_slice_labels(const uint8_t* labels,
                         const core_shape_t* shape,
                         viewer_axis_t axis,
                         uint32_t index,
                         uint8_t* out) {
  const size_t nz = shape->d[0], ny = shape->d[1], nx = shape->d[2];
  switch (axis) {
  case VIEWER_AXIS_XY:
    memcpy(out, labels + (size_t) index * ny * nx, ny * nx);
    return;
  case VIEWER_AXIS_XZ:
    for (size_t z = 0; z < nz; z++) {
      memcpy(out + z * nx, labels + (z * ny + index) * nx, nx);
    }
    return;
  case VIEWER_AXIS_YZ:
    for (size_t z = 0; z < nz; z++) {
      const uint8_t* plane = labels + z * ny * nx + index;
      for (size_t y = 0; y < ny; y++) {
        out[y * nz + z] = plane[y * nx];
      }
    }
    return;
  }
}


uint32_t viewer_label_rgb(uint8_t label) {
  static const uint32_t fixed[] = {
      0x000000, /* background, never drawn */
      0xff4000, /* 1: membrane, orange-red */
      0x00a0ff, /* 2: particle, azure */
      0x30e030, /* 3: green */
      0xffd700, /* 4: gold */
      0xe040e0, /* 5: magenta */
      0x00e0d0, /* 6: turquoise */
      0x8060ff, /* 7: violet */
      0xff80a0, /* 8: pink */
  };
  if (label < sizeof(fixed) / sizeof(fixed[0])) {
    return fixed[label];
  }
  /* Golden-angle hues at full saturation for the rest. */
  double h = fmod((double) label * 137.508, 360.0) / 60.0;
  double x = 1.0 - fabs(fmod(h, 2.0) - 1.0);
  double r = 0, g = 0, b = 0;
  switch ((int) h) {
  case 0:
    r = 1, g = x;
    break;
  case 1:
    r = x, g = 1;
    break;
  case 2:
    g = 1, b = x;
    break;
  case 3:
    g = x, b = 1;
    break;
  case 4:
    r = x, b = 1;
    break;
  default:
    r = 1, b = x;
    break;
  }
  return ((uint32_t) (r * 255) << 16) | ((uint32_t) (g * 255) << 8) |
         (uint32_t) (b * 255);
}


static inline uint32_t alpha256(double opacity) {
  if (!(opacity > 0)) {
    return 0;
  }
  if (opacity >= 1) {
    return 256;
  }
  return (uint32_t) (opacity * 256.0 + 0.5);
}


static inline uint32_t blend(uint32_t grey, uint32_t colour, uint32_t a) {
  return (grey * (256 - a) + colour * a + 128) >> 8;
}


uint8_t viewer_blend_channel(uint8_t grey, uint8_t colour, double opacity) {
  return (uint8_t) blend(grey, colour, alpha256(opacity));
}


void viewer_composite(const uint8_t* grey,
                      const uint8_t* labels,
                      size_t count,
                      double opacity,
                      uint32_t* out) {
  uint32_t a = alpha256(opacity);
  if (labels == NULL || a == 0) {
    for (size_t i = 0; i < count; i++) {
      uint32_t g = grey[i];
      out[i] = 0xff000000u | g << 16 | g << 8 | g;
    }
    return;
  }
  uint32_t palette[256];
  for (int l = 0; l < 256; l++) {
    palette[l] = viewer_label_rgb((uint8_t) l);
  }
  for (size_t i = 0; i < count; i++) {
    uint32_t g = grey[i];
    uint8_t l = labels[i];
    if (l == 0) {
      out[i] = 0xff000000u | g << 16 | g << 8 | g;
      continue;
    }
    uint32_t c = palette[l];
    out[i] = 0xff000000u | blend(g, c >> 16, a) << 16 |
             blend(g, (c >> 8) & 0xff, a) << 8 | blend(g, c & 0xff, a);
  }
}


void viewer_ortho_layout(const core_shape_t* shape,
                         uint32_t gap,
                         uint32_t rects[VIEWER_AXIS_COUNT][4],
                         uint32_t* width,
                         uint32_t* height) {
  const uint32_t nz = shape->d[0], ny = shape->d[1], nx = shape->d[2];
  uint32_t xy[4] = {0, 0, nx, ny};
  uint32_t yz[4] = {nx + gap, 0, nz, ny};
  uint32_t xz[4] = {0, ny + gap, nx, nz};
  memcpy(rects[VIEWER_AXIS_XY], xy, sizeof(xy));
  memcpy(rects[VIEWER_AXIS_YZ], yz, sizeof(yz));
  memcpy(rects[VIEWER_AXIS_XZ], xz, sizeof(xz));
  *width = nx + gap + nz;
  *height = ny + gap + nz;
}
