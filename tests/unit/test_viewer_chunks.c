/* test_viewer_chunks.c: the viewer's chunk overlay (viewer_chunks.c): the
 * coarse scale chosen from the volume, chunks copied from a library-style
 * dense mask, full resolution where the plane level's chunks arrived and
 * the coarse level upsampled with the server's alignment elsewhere, the
 * rectangles a chunk covers in each slice, keyframes, refused copies, and
 * the view throttle (at most one per interval, the last always sent). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "viewer/viewer_chunks.h"


Test(viewer_chunks, scale_fits_16_mib_and_follows_the_preview_scale) {
  core_shape_t small = {{64, 64, 64}};
  cr_assert_eq(viewer_chunks_pick_scale(&small, 0), 1);
  cr_assert_eq(viewer_chunks_pick_scale(&small, 1), 1);
  cr_assert_eq(viewer_chunks_pick_scale(&small, 3), 2);
  cr_assert_eq(viewer_chunks_pick_scale(&small, 4), 4);
  cr_assert_eq(viewer_chunks_pick_scale(&small, 100), 16);
  core_shape_t mid = {{512, 512, 512}}; /* 128 MiB: 16 MiB at 2 */
  cr_assert_eq(viewer_chunks_pick_scale(&mid, 0), 2);
  cr_assert_eq(viewer_chunks_pick_scale(&mid, 1), 2);
  core_shape_t gib = {{1024, 1024, 1024}};
  cr_assert_eq(viewer_chunks_pick_scale(&gib, 0), 4);
  core_shape_t big = {{4096, 4096, 4096}};
  cr_assert_eq(viewer_chunks_pick_scale(&big, 0), 16);
}


/* A full-resolution mask with structure at every scale. */
static uint8_t* make_full(const core_shape_t* s) {
  size_t n = (size_t) core_shape_voxels(s);
  uint8_t* m = malloc(n);
  for (size_t i = 0; i < n; i++) {
    uint32_t h = (uint32_t) (i * 2654435761u) >> 20;
    m[i] = (uint8_t) (h % 7 == 0 ? 1 + h % 2 : 0);
  }
  return m;
}


/* Max downsampling by `s` (the server's pyramid). */
static uint8_t* max_down(const uint8_t* f, const core_shape_t* v, uint32_t s) {
  core_shape_t d = core_shape_downsample(v, s);
  uint8_t* out = calloc(1, (size_t) core_shape_voxels(&d));
  for (uint32_t z = 0; z < v->d[0]; z++) {
    for (uint32_t y = 0; y < v->d[1]; y++) {
      for (uint32_t x = 0; x < v->d[2]; x++) {
        uint8_t l = f[((size_t) z * v->d[1] + y) * v->d[2] + x];
        size_t o = ((size_t) (z / s) * d.d[1] + y / s) * d.d[2] + x / s;
        if (l > out[o]) {
          out[o] = l;
        }
      }
    }
  }
  return out;
}


/* Copies every chunk of `level` (or only those cutting z = zcut when
 * zcut >= 0) from `src` into c. */
static void copy_level(viewer_chunks_t* c,
                       unsigned level,
                       const uint8_t* src,
                       int64_t zcut) {
  core_chunk_grid_t g = core_chunk_grid(&c->vol, level);
  for (uint64_t i = 0; i < g.count; i++) {
    uint32_t k[3];
    core_chunk_coords(&g, i, k);
    core_box_t b = core_chunk_box(&g, k);
    if (zcut >= 0 && ((uint64_t) zcut >> level < b.lo[0] ||
                      (uint64_t) zcut >> level >= b.hi[0])) {
      continue;
    }
    cr_assert_eq(viewer_chunks_copy(c, 1u << level, b.lo, b.hi, src, g.shape.d),
                 0);
  }
}


Test(viewer_chunks, full_resolution_where_received_coarse_elsewhere) {
  core_shape_t v = {{70, 60, 50}};
  uint8_t* full = make_full(&v);
  uint8_t* coarse = max_down(full, &v, 4);
  viewer_chunks_t c;
  cr_assert_eq(viewer_chunks_init(&c, &v, 4), 0);
  copy_level(&c, 2, coarse, -1);
  uint64_t labelled = 0;
  for (size_t i = 0; i < 18 * 15 * 13; i++) {
    labelled += coarse[i] != 0;
  }
  cr_assert_eq(c.labelled, labelled);
  copy_level(&c, 2, coarse, -1); /* the same again: counted once */
  cr_assert_eq(c.labelled, labelled);
  c.plane_level = 0;
  copy_level(&c, 0, full, 40); /* level-0 chunks of z in [32, 64) */
  uint32_t w = v.d[2], h = v.d[1];
  uint8_t* slice = malloc((size_t) w * h);
  uint32_t rect[4] = {0, 0, w, h};
  for (uint32_t z = 0; z < v.d[0]; z++) {
    viewer_chunks_slice(&c, VIEWER_AXIS_XY, z, rect, slice, w);
    bool fine = z >= 32 && z < 64;
    for (uint32_t y = 0; y < h; y++) {
      for (uint32_t x = 0; x < w; x++) {
        uint8_t want =
            fine ? full[((size_t) z * h + y) * w + x]
                 : coarse[((size_t) (z / 4) * 15 + y / 4) * 13 + x / 4];
        cr_assert_eq(slice[(size_t) y * w + x], want, "z %u y %u x %u", z, y,
                     x);
        cr_assert_eq(viewer_chunks_label(&c, z, y, x), want);
      }
    }
  }
  /* The YZ slice at x = 10 crosses both: fine rows z in [32, 64) only. */
  uint8_t* yz = malloc((size_t) v.d[0] * h);
  uint32_t r2[4] = {0, 0, v.d[0], h};
  viewer_chunks_slice(&c, VIEWER_AXIS_YZ, 10, r2, yz, v.d[0]);
  for (uint32_t y = 0; y < h; y++) {
    for (uint32_t z = 0; z < v.d[0]; z++) {
      cr_assert_eq(yz[(size_t) y * v.d[0] + z],
                   viewer_chunks_label(&c, z, y, 10));
    }
  }
  /* Without a plane level, the coarse level everywhere. */
  c.plane_level = -1;
  cr_assert_eq(viewer_chunks_label(&c, 40, 1, 1), coarse[(10 * 15 + 0) * 13]);
  /* The overlay as a volume (export) is the slices stacked. */
  c.plane_level = 0;
  uint8_t* vol = malloc((size_t) core_shape_voxels(&v));
  viewer_chunks_compose(&c, vol);
  cr_assert_eq(memcmp(vol + (size_t) 40 * w * h, full + (size_t) 40 * w * h,
                      (size_t) w * h),
               0);
  /* A keyframe clears everything. */
  viewer_chunks_clear(&c);
  viewer_chunks_compose(&c, vol);
  for (size_t i = 0; i < core_shape_voxels(&v); i++) {
    cr_assert_eq(vol[i], 0);
  }
  cr_assert_eq(c.known[0][0], 0);
  cr_assert_eq(c.labelled, 0);
  viewer_chunks_free(&c);
  free(vol);
  free(yz);
  free(slice);
  free(coarse);
  free(full);
}


Test(viewer_chunks, refused_copies) {
  core_shape_t v = {{40, 40, 40}};
  viewer_chunks_t c;
  cr_assert_eq(viewer_chunks_init(&c, &v, 3), -EINVAL);
  cr_assert_eq(viewer_chunks_init(&c, &v, 2), 0);
  uint8_t* m = calloc(1, 40 * 40 * 40);
  uint32_t lo[3] = {0, 0, 0}, hi[3] = {20, 20, 20};
  uint32_t s2[3] = {20, 20, 20}, s4[3] = {10, 10, 10}, s1[3] = {40, 40, 40};
  cr_assert_eq(viewer_chunks_copy(&c, 2, lo, hi, m, s2), 0);
  cr_assert_eq(viewer_chunks_copy(&c, 4, lo, s4, m, s4), -EINVAL,
               "above the coarse level");
  cr_assert_eq(viewer_chunks_copy(&c, 2, lo, hi, m, s1), -EINVAL,
               "not the level's shape");
  uint32_t over[3] = {21, 20, 20};
  cr_assert_eq(viewer_chunks_copy(&c, 2, lo, over, m, s2), -EINVAL);
  cr_assert_eq(viewer_chunks_copy(&c, 2, hi, hi, m, s2), -EINVAL, "empty");
  cr_assert_eq(viewer_chunks_copy(&c, 1, lo, s1, m, s1), 0);
  cr_assert_eq(viewer_chunks_copy(&c, 2, lo, hi, NULL, s2), -EINVAL);
  viewer_chunks_free(&c);
  free(m);
}


Test(viewer_chunks, rectangles_of_a_chunk_in_each_slice) {
  core_shape_t v = {{70, 60, 50}};
  uint32_t lo[3] = {0, 8, 8}, hi[3] = {8, 15, 13}; /* level 2, clipped */
  uint32_t r[4];
  cr_assert(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_XY, 31, r));
  cr_assert_eq(r[0], 32);
  cr_assert_eq(r[1], 32);
  cr_assert_eq(r[2], 50 - 32);
  cr_assert_eq(r[3], 60 - 32);
  cr_assert_not(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_XY, 32, r));
  cr_assert(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_XZ, 40, r));
  cr_assert_eq(r[0], 32); /* x */
  cr_assert_eq(r[1], 0);  /* z */
  cr_assert_eq(r[2], 18);
  cr_assert_eq(r[3], 32);
  cr_assert_not(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_XZ, 31, r));
  cr_assert(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_YZ, 49, r));
  cr_assert_eq(r[0], 0);  /* z */
  cr_assert_eq(r[1], 32); /* y */
  cr_assert_eq(r[2], 32);
  cr_assert_eq(r[3], 28);
  cr_assert_not(viewer_chunks_rect(&v, 4, lo, hi, VIEWER_AXIS_YZ, 50, r));
}


Test(viewer_chunks, throttle_sends_at_most_one_per_interval_and_the_last) {
  viewer_throttle_t t;
  viewer_throttle_init(&t, 50000);
  int64_t a[3] = {1, 2, 3}, b[3] = {2, 2, 3}, c[3] = {3, 2, 3}, out[3];
  int64_t wait;
  double zoom;
  cr_assert(viewer_throttle_want(&t, a, 1.0, 1000, &wait), "the first at once");
  cr_assert_not(viewer_throttle_want(&t, a, 1.0, 2000, &wait));
  cr_assert_eq(wait, 0, "unchanged: nothing");
  cr_assert_not(viewer_throttle_want(&t, b, 1.0, 11000, &wait));
  cr_assert_eq(wait, 40000);
  cr_assert_not(viewer_throttle_want(&t, c, 1.0, 21000, &wait));
  cr_assert_eq(wait, 30000);
  cr_assert_not(viewer_throttle_due(&t, 40000, out, &zoom, &wait));
  cr_assert_eq(wait, 11000, "not yet");
  cr_assert(viewer_throttle_due(&t, 51000, out, &zoom, &wait));
  cr_assert_eq(out[0], 3, "the last one wanted");
  cr_assert_not(viewer_throttle_due(&t, 52000, out, &zoom, &wait));
  cr_assert_eq(wait, 0, "nothing pending");
  /* Back to the sent view before the interval: the pending one is
   * dropped. */
  cr_assert_not(viewer_throttle_want(&t, a, 1.0, 60000, &wait));
  cr_assert_not(viewer_throttle_want(&t, c, 1.0, 61000, &wait));
  cr_assert_not(viewer_throttle_due(&t, 200000, out, &zoom, &wait));
  cr_assert_eq(wait, 0);
  /* A zoom change is a change; after the interval it goes at once. */
  cr_assert(viewer_throttle_want(&t, c, 0.5, 200000, &wait));
}
