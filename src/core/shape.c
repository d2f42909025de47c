/* shape.c: volume shapes and nearest-origin down/upsampling of uint8
 * volumes (previews). Pure; any thread. The loops hoist every division out
 * of the innermost axis: one row pointer per (z, y), strided reads in x. */
#include "core/shape.h"

#include <assert.h>
#include <string.h>


bool core_shape_is_valid(const core_shape_t* s) {
  for (int i = 0; i < 3; i++) {
    if (s->d[i] < 1 || s->d[i] > CORE_SHAPE_MAX_DIM) {
      return false;
    }
  }
  return true;
}


uint64_t core_shape_voxels(const core_shape_t* s) {
  return (uint64_t) s->d[0] * s->d[1] * s->d[2];
}


core_shape_t core_shape_downsample(const core_shape_t* s, uint32_t scale) {
  assert(scale >= 1);
  core_shape_t out;
  for (int i = 0; i < 3; i++) {
    /* Written without d + scale - 1 so that huge d cannot wrap. */
    out.d[i] = s->d[i] / scale + (s->d[i] % scale != 0);
  }
  return out;
}


void core_shape_downsample_u8(const uint8_t* src,
                              const core_shape_t* s,
                              uint32_t scale,
                              uint8_t* dst) {
  assert(scale >= 1);
  core_shape_t p = core_shape_downsample(s, scale);
  size_t row_len = s->d[2];
  size_t plane_len = (size_t) s->d[1] * row_len;

  if (scale == 1) {
    memcpy(dst, src, plane_len * s->d[0]);
    return;
  }
  for (uint32_t i = 0; i < p.d[0]; i++) {
    const uint8_t* plane = src + (size_t) i * scale * plane_len;
    for (uint32_t j = 0; j < p.d[1]; j++) {
      const uint8_t* row = plane + (size_t) j * scale * row_len;
      for (uint32_t k = 0; k < p.d[2]; k++) {
        dst[k] = row[(size_t) k * scale];
      }
      dst += p.d[2];
    }
  }
}


/* Expands one preview row into a full-resolution row of `nx` voxels. */
static void upsample_row(const uint8_t* src,
                         uint32_t pnx,
                         uint32_t nx,
                         uint32_t scale,
                         uint8_t* dst) {
  for (uint32_t k = 0; k < pnx; k++) {
    uint32_t x0 = k * scale;
    uint32_t n = nx - x0 < scale ? nx - x0 : scale;
    memset(dst + x0, src[k], n);
  }
}


void core_shape_upsample_u8(const uint8_t* src,
                            const core_shape_t* s,
                            uint32_t scale,
                            uint8_t* dst) {
  assert(scale >= 1);
  core_shape_t p = core_shape_downsample(s, scale);
  size_t row_len = s->d[2];
  size_t plane_len = (size_t) s->d[1] * row_len;

  for (uint32_t z = 0; z < s->d[0]; z++) {
    uint8_t* plane = dst + (size_t) z * plane_len;
    if (z % scale != 0) {
      /* Every full-res plane in a block is a copy of the block's first. */
      memcpy(plane, plane - plane_len, plane_len);
      continue;
    }
    const uint8_t* pplane = src + (size_t) (z / scale) * p.d[1] * p.d[2];
    for (uint32_t y = 0; y < s->d[1]; y++) {
      uint8_t* row = plane + (size_t) y * row_len;
      if (y % scale != 0) {
        memcpy(row, row - row_len, row_len);
      } else {
        upsample_row(pplane + (size_t) (y / scale) * p.d[2], p.d[2], s->d[2],
                     scale, row);
      }
    }
  }
}
