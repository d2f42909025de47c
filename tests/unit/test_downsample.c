/* test_downsample.c: region-by-region preview downsampling equals the
 * whole-volume reference (nearest: core_shape_downsample_u8; max: the
 * largest label of each block), for scales that do not divide the shape,
 * whatever order and size the regions come in; boxes and their union. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/downsample.h"


static uint8_t label_at(uint32_t z, uint32_t y, uint32_t x) {
  uint32_t h = z * 73856093u ^ y * 19349663u ^ x * 83492791u;
  return (uint8_t) (h % 7 == 0 ? 1 + h % 3 : 0);
}


static uint8_t* make_volume(const core_shape_t* s) {
  uint8_t* v = malloc(core_shape_voxels(s));
  size_t i = 0;
  for (uint32_t z = 0; z < s->d[0]; z++) {
    for (uint32_t y = 0; y < s->d[1]; y++) {
      for (uint32_t x = 0; x < s->d[2]; x++) {
        v[i++] = label_at(z, y, x);
      }
    }
  }
  return v;
}


static void reference_max(const uint8_t* v,
                          const core_shape_t* s,
                          uint32_t scale,
                          uint8_t* out) {
  core_shape_t p = core_shape_downsample(s, scale);
  memset(out, 0, core_shape_voxels(&p));
  for (uint32_t z = 0; z < s->d[0]; z++) {
    for (uint32_t y = 0; y < s->d[1]; y++) {
      for (uint32_t x = 0; x < s->d[2]; x++) {
        uint8_t l = v[((size_t) z * s->d[1] + y) * s->d[2] + x];
        uint8_t* o = &out[((size_t) (z / scale) * p.d[1] + y / scale) * p.d[2] +
                          x / scale];
        *o = l > *o ? l : *o;
      }
    }
  }
}


/* Refreshes preview box of region b from the volume, as a worker does. */
static void refresh(core_downsample_t m,
                    const uint8_t* v,
                    const core_shape_t* s,
                    uint32_t scale,
                    const core_box_t* b,
                    uint8_t* dst) {
  core_box_t pb = core_box_to_preview(b, scale);
  size_t plane = (size_t) s->d[1] * s->d[2];
  uint32_t z1 = pb.hi[0] * scale < s->d[0] ? pb.hi[0] * scale : s->d[0];
  for (uint32_t z = pb.lo[0] * scale; z < z1; z++) {
    uint32_t y_lo, y_hi;
    if (core_downsample_rows_needed(m, &pb, z, scale, s, &y_lo, &y_hi)) {
      core_downsample_fold(m, v + z * plane + (size_t) y_lo * s->d[2], z, y_lo,
                           y_hi, s, scale, &pb, dst);
    }
  }
}


static void check(core_downsample_t m, core_shape_t s, uint32_t scale) {
  uint8_t* v = make_volume(&s);
  core_shape_t p = core_shape_downsample(&s, scale);
  size_t n = core_shape_voxels(&p);
  uint8_t* want = malloc(n);
  uint8_t* got = calloc(1, n);
  if (m == CORE_DOWNSAMPLE_NEAREST) {
    core_shape_downsample_u8(v, &s, scale, want);
  } else {
    reference_max(v, &s, scale, want);
  }
  /* Windows of 5 voxels, last window first: order must not matter. */
  for (int zi = (int) ((s.d[0] - 1) / 5); zi >= 0; zi--) {
    for (uint32_t y0 = 0; y0 < s.d[1]; y0 += 5) {
      for (uint32_t x0 = 0; x0 < s.d[2]; x0 += 5) {
        uint32_t z0 = (uint32_t) zi * 5;
        core_box_t b = {{z0, y0, x0},
                        {z0 + 5 < s.d[0] ? z0 + 5 : s.d[0],
                         y0 + 5 < s.d[1] ? y0 + 5 : s.d[1],
                         x0 + 5 < s.d[2] ? x0 + 5 : s.d[2]}};
        refresh(m, v, &s, scale, &b, got);
      }
    }
  }
  cr_assert(memcmp(got, want, n) == 0, "%s scale %u: windows differ",
            core_downsample_name(m), scale);
  memset(got, 0, n);
  core_box_t all = {{0, 0, 0}, {s.d[0], s.d[1], s.d[2]}};
  refresh(m, v, &s, scale, &all, got);
  cr_assert(memcmp(got, want, n) == 0, "%s scale %u: whole volume differs",
            core_downsample_name(m), scale);
  free(v);
  free(want);
  free(got);
}


Test(downsample, nearest_by_regions_equals_reference, .timeout = 10) {
  for (uint32_t scale = 1; scale <= 4; scale++) {
    check(CORE_DOWNSAMPLE_NEAREST, (core_shape_t){{13, 17, 22}}, scale);
  }
}


Test(downsample, max_by_regions_equals_reference, .timeout = 10) {
  for (uint32_t scale = 1; scale <= 4; scale++) {
    check(CORE_DOWNSAMPLE_MAX, (core_shape_t){{13, 17, 22}}, scale);
  }
}


Test(downsample, max_keeps_a_one_voxel_membrane, .timeout = 10) {
  core_shape_t s = {{4, 4, 4}};
  uint8_t v[64] = {0};
  v[(1 * 4 + 2) * 4 + 3] = 1; /* one voxel, not at a block origin */
  uint8_t got[8] = {0};
  core_box_t all = {{0, 0, 0}, {4, 4, 4}};
  refresh(CORE_DOWNSAMPLE_MAX, v, &s, 2, &all, got);
  cr_assert_eq(got[(0 * 2 + 1) * 2 + 1], 1);
  memset(got, 0, sizeof(got));
  refresh(CORE_DOWNSAMPLE_NEAREST, v, &s, 2, &all, got);
  cr_assert_eq(got[(0 * 2 + 1) * 2 + 1], 0);
}


Test(downsample, boxes_validate_and_unite, .timeout = 10) {
  core_shape_t s = {{10, 10, 10}};
  core_box_t a = {{1, 2, 3}, {4, 5, 6}};
  core_box_t bad = {{1, 2, 3}, {1, 5, 6}};
  core_box_t out = {{0, 0, 0}, {11, 1, 1}};
  cr_assert(core_box_is_valid(&a, &s));
  cr_assert_not(core_box_is_valid(&bad, &s));
  cr_assert_not(core_box_is_valid(&out, &s));
  core_box_t acc = core_box_empty();
  cr_assert(core_box_is_empty(&acc));
  core_box_union(&acc, &a);
  core_box_t b = {{0, 7, 4}, {2, 9, 5}};
  core_box_union(&acc, &b);
  cr_assert_eq(acc.lo[0], 0);
  cr_assert_eq(acc.lo[1], 2);
  cr_assert_eq(acc.hi[1], 9);
  cr_assert_eq(acc.hi[2], 6);
  core_box_t p = core_box_to_preview(&a, 4);
  cr_assert_eq(p.lo[2], 0);
  cr_assert_eq(p.hi[2], 2);
}
