/* downsample.c: label masks into previews, region by region. See
 * downsample.h. Pure. */
#include "core/downsample.h"

#include <assert.h>
#include <string.h>


bool core_box_is_valid(const core_box_t* b, const core_shape_t* s) {
  for (int a = 0; a < 3; a++) {
    if (!(b->lo[a] < b->hi[a] && b->hi[a] <= s->d[a])) {
      return false;
    }
  }
  return true;
}


bool core_box_is_empty(const core_box_t* b) {
  return b->hi[0] <= b->lo[0] || b->hi[1] <= b->lo[1] || b->hi[2] <= b->lo[2];
}


core_box_t core_box_empty(void) {
  core_box_t b;
  memset(&b, 0, sizeof(b));
  return b;
}


void core_box_union(core_box_t* acc, const core_box_t* b) {
  if (core_box_is_empty(b)) {
    return;
  }
  if (core_box_is_empty(acc)) {
    *acc = *b;
    return;
  }
  for (int a = 0; a < 3; a++) {
    acc->lo[a] = b->lo[a] < acc->lo[a] ? b->lo[a] : acc->lo[a];
    acc->hi[a] = b->hi[a] > acc->hi[a] ? b->hi[a] : acc->hi[a];
  }
}


core_box_t core_box_to_preview(const core_box_t* b, uint32_t scale) {
  assert(scale >= 1);
  core_box_t p;
  for (int a = 0; a < 3; a++) {
    p.lo[a] = b->lo[a] / scale;
    p.hi[a] = (uint32_t) (((uint64_t) b->hi[a] + scale - 1) / scale);
  }
  return p;
}


static uint32_t min_u32(uint64_t a, uint32_t b) {
  return a < b ? (uint32_t) a : b;
}


bool core_downsample_rows_needed(core_downsample_t m,
                                 const core_box_t* pb,
                                 uint32_t z,
                                 uint32_t scale,
                                 const core_shape_t* s,
                                 uint32_t* y_lo,
                                 uint32_t* y_hi) {
  uint32_t pz = z / scale;
  if (pz < pb->lo[0] || pz >= pb->hi[0] ||
      (m == CORE_DOWNSAMPLE_NEAREST && z % scale != 0)) {
    return false;
  }
  *y_lo = pb->lo[1] * scale;
  *y_hi = m == CORE_DOWNSAMPLE_NEAREST
              ? min_u32((uint64_t) (pb->hi[1] - 1) * scale + 1, s->d[1])
              : min_u32((uint64_t) pb->hi[1] * scale, s->d[1]);
  return *y_lo < *y_hi;
}


/* Max of each block of one row into the preview row, columns pb's. */
static void fold_row_max(const uint8_t* row,
                         uint32_t nx,
                         uint32_t scale,
                         uint32_t px0,
                         uint32_t px1,
                         uint8_t* dst) {
  for (uint32_t px = px0; px < px1; px++) {
    uint32_t x0 = px * scale;
    uint32_t x1 = min_u32((uint64_t) x0 + scale, nx);
    uint8_t v = dst[px];
    for (uint32_t x = x0; x < x1; x++) {
      v = row[x] > v ? row[x] : v;
    }
    dst[px] = v;
  }
}


void core_downsample_fold(core_downsample_t m,
                          const uint8_t* rows,
                          uint32_t z,
                          uint32_t y_lo,
                          uint32_t y_hi,
                          const core_shape_t* s,
                          uint32_t scale,
                          const core_box_t* pb,
                          uint8_t* dst) {
  core_shape_t ps = core_shape_downsample(s, scale);
  size_t pnx = ps.d[2];
  uint32_t nx = s->d[2];
  uint32_t pz = z / scale;
  uint8_t* plane = dst + (size_t) pz * ps.d[1] * pnx;
  uint32_t px0 = pb->lo[2];
  uint32_t px1 = pb->hi[2];
  if (m == CORE_DOWNSAMPLE_MAX && z % scale == 0) {
    for (uint32_t py = pb->lo[1]; py < pb->hi[1]; py++) {
      memset(plane + py * pnx + px0, 0, px1 - px0);
    }
  }
  for (uint32_t y = y_lo; y < y_hi; y++) {
    uint32_t py = y / scale;
    if (py < pb->lo[1] || py >= pb->hi[1]) {
      continue;
    }
    const uint8_t* row = rows + (size_t) (y - y_lo) * nx;
    uint8_t* out = plane + py * pnx;
    if (m == CORE_DOWNSAMPLE_MAX) {
      fold_row_max(row, nx, scale, px0, px1, out);
    } else if (y % scale == 0) {
      for (uint32_t px = px0; px < px1; px++) {
        out[px] = row[(size_t) px * scale];
      }
    }
  }
}
