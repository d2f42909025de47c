/* test_mask.c: the simulated masks: determinism, label sets, the window
 * reveal of `blobs` against its definition, scale consistency, and label
 * counting against a plain histogram. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mask.h"


static uint8_t* render(const core_mask_spec_t* spec,
                       double progress,
                       uint32_t scale,
                       uint64_t tick,
                       size_t* n_out) {
  core_shape_t p = core_shape_downsample(&spec->shape, scale);
  size_t n = (size_t) core_shape_voxels(&p);
  uint8_t* out = malloc(n + 1);
  cr_assert(out != NULL);
  out[n] = 0xa5; /* guard byte */
  core_mask_render(spec, progress, scale, tick, out);
  cr_assert_eq(out[n], 0xa5, "render wrote past its output");
  if (n_out != NULL) {
    *n_out = n;
  }
  return out;
}


static void label_counts(const uint8_t* m, size_t n, uint64_t counts[256]) {
  memset(counts, 0, 256 * sizeof(counts[0]));
  for (size_t i = 0; i < n; i++) {
    counts[m[i]]++;
  }
}


Test(mask, random_is_deterministic_per_tick, .timeout = 10) {
  core_mask_spec_t spec = {{{17, 19, 23}}, CORE_PATTERN_RANDOM, 5};
  size_t n;
  uint8_t* a = render(&spec, 0.3, 1, 1, &n);
  uint8_t* b = render(&spec, 0.9, 1, 1, NULL);
  uint8_t* c = render(&spec, 0.3, 1, 2, NULL);
  spec.seed = 6;
  uint8_t* d = render(&spec, 0.3, 1, 1, NULL);
  cr_assert_eq(memcmp(a, b, n), 0, "progress changed a random mask");
  cr_assert_neq(memcmp(a, c, n), 0, "tick did not change the mask");
  cr_assert_neq(memcmp(a, d, n), 0, "seed did not change the mask");
  free(a);
  free(b);
  free(c);
  free(d);
}


Test(mask, random_is_balanced_zeros_and_ones, .timeout = 10) {
  /* 64*64*63 is not a multiple of 64 bytes, which covers the tail. */
  core_mask_spec_t spec = {{{64, 64, 63}}, CORE_PATTERN_RANDOM, 1};
  for (uint32_t scale = 1; scale <= 3; scale++) {
    size_t n;
    uint8_t* m = render(&spec, 0.5, scale, CORE_MASK_FINAL_TICK, &n);
    uint64_t c[256];
    label_counts(m, n, c);
    cr_assert_eq(c[0] + c[1], n, "labels outside {0,1}");
    double ones = (double) c[1] / (double) n;
    cr_assert(ones > 0.45 && ones < 0.55, "%.3f ones at scale %u", ones, scale);
    free(m);
  }
}


Test(mask, blobs_use_labels_0_1_2, .timeout = 10) {
  core_mask_spec_t spec = {{{64, 96, 80}}, CORE_PATTERN_BLOBS, 3};
  size_t n;
  uint8_t* m = render(&spec, 1.0, 1, 0, &n);
  uint64_t c[256];
  label_counts(m, n, c);
  cr_assert_eq(c[0] + c[1] + c[2], n, "labels outside {0,1,2}");
  cr_assert_gt(c[1], 0, "no membrane voxels");
  cr_assert_gt(c[2], 0, "no particle voxels");
  cr_assert_gt(c[0], n / 2, "mostly background expected");
  free(m);
}


Test(mask, blobs_are_deterministic_and_ignore_tick, .timeout = 10) {
  core_mask_spec_t spec = {{{40, 50, 60}}, CORE_PATTERN_BLOBS, 11};
  size_t n;
  uint8_t* a = render(&spec, 0.7, 1, 1, &n);
  uint8_t* b = render(&spec, 0.7, 1, 99, NULL);
  cr_assert_eq(memcmp(a, b, n), 0);
  spec.seed = 12;
  uint8_t* c = render(&spec, 0.7, 1, 1, NULL);
  cr_assert_neq(memcmp(a, c, n), 0, "seed did not change the structures");
  free(a);
  free(b);
  free(c);
}


Test(mask, blobs_at_progress_0_are_empty, .timeout = 10) {
  core_mask_spec_t spec = {{{64, 64, 64}}, CORE_PATTERN_BLOBS, 1};
  double ps[] = {0.0, -1.0, NAN, 0.9 / 8.0};
  for (size_t i = 0; i < 4; i++) {
    size_t n;
    uint8_t* m = render(&spec, ps[i], 1, 0, &n);
    for (size_t k = 0; k < n; k++) {
      cr_assert_eq(m[k], 0, "progress %g voxel %zu", ps[i], k);
    }
    free(m);
  }
}


Test(mask, blobs_at_progress_1_are_final, .timeout = 10) {
  core_mask_spec_t spec = {{{64, 64, 64}}, CORE_PATTERN_BLOBS, 8};
  size_t n;
  uint8_t* a = render(&spec, 1.0, 1, 0, &n);
  uint8_t* b = render(&spec, 7.5, 1, CORE_MASK_FINAL_TICK, NULL);
  uint8_t* c = render(&spec, 0.999, 1, 0, NULL);
  cr_assert_eq(memcmp(a, b, n), 0);
  cr_assert_neq(memcmp(a, c, n), 0, "0.999 revealed everything");
  free(a);
  free(b);
  free(c);
}


/* The definition: voxel v is final[v] when its window index is below
 * floor(progress * windows), else 0. Shapes not divisible by the window. */
Test(mask, blobs_reveal_whole_windows_in_zyx_order, .timeout = 10) {
  core_mask_spec_t spec = {{{70, 45, 100}}, CORE_PATTERN_BLOBS, 21};
  const uint32_t w = CORE_MASK_WINDOW;
  uint32_t nwz = (70 + w - 1) / w, nwy = (45 + w - 1) / w,
           nwx = (100 + w - 1) / w;
  uint32_t total = nwz * nwy * nwx;
  size_t n;
  uint8_t* final = render(&spec, 1.0, 1, 0, &n);
  uint8_t* prev = NULL;
  for (uint32_t step = 0; step <= 2 * total; step++) {
    double progress = (double) step / (2 * total);
    uint32_t shown = (uint32_t) floor(progress * total);
    uint8_t* m = render(&spec, progress, 1, 0, NULL);
    for (uint32_t z = 0; z < 70; z++) {
      for (uint32_t y = 0; y < 45; y++) {
        for (uint32_t x = 0; x < 100; x++) {
          size_t i = ((size_t) z * 45 + y) * 100 + x;
          uint32_t idx = ((z / w) * nwy + y / w) * nwx + x / w;
          uint8_t want = idx < shown ? final[i] : 0;
          cr_assert_eq(m[i], want, "progress %g at (%u,%u,%u)", progress, z, y,
                       x);
          if (prev != NULL && prev[i] != 0) {
            cr_assert_eq(m[i], prev[i], "revealed voxel changed");
          }
        }
      }
    }
    free(prev);
    prev = m;
  }
  free(prev);
  free(final);
}


Test(mask, blobs_preview_equals_downsampled_full_mask, .timeout = 10) {
  core_mask_spec_t spec = {{{67, 81, 95}}, CORE_PATTERN_BLOBS, 4};
  double ps[] = {0.1, 0.37, 0.5, 0.81, 1.0};
  for (size_t pi = 0; pi < 5; pi++) {
    uint8_t* full = render(&spec, ps[pi], 1, 0, NULL);
    for (uint32_t scale = 2; scale <= 7; scale++) {
      size_t n;
      uint8_t* pre = render(&spec, ps[pi], scale, 0, &n);
      uint8_t* want = malloc(n);
      core_shape_downsample_u8(full, &spec.shape, scale, want);
      cr_assert_eq(memcmp(pre, want, n), 0, "progress %g scale %u", ps[pi],
                   scale);
      free(want);
      free(pre);
    }
    free(full);
  }
}


Test(mask, blobs_render_tiny_and_flat_volumes, .timeout = 10) {
  core_shape_t shapes[] = {
      {{1, 1, 1}}, {{1, 300, 2}}, {{2, 3, 4096}}, {{5, 1, 7}}};
  for (size_t i = 0; i < 4; i++) {
    core_mask_spec_t spec = {shapes[i], CORE_PATTERN_BLOBS, 9};
    for (uint32_t scale = 1; scale <= 16; scale *= 4) {
      size_t n;
      uint8_t* m = render(&spec, 1.0, scale, 0, &n);
      for (size_t k = 0; k < n; k++) {
        cr_assert_leq(m[k], 2);
      }
      free(m);
    }
  }
}


Test(mask, count_labels_matches_a_histogram, .timeout = 10) {
  size_t lens[] = {0, 1, 7, 8, 15, 16, 17, 4095, 4096 * 9 + 13};
  for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
    size_t n = lens[li];
    uint8_t* m = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
      uint32_t r = (uint32_t) (i * 2654435761u) >> 7;
      m[i] = (uint8_t) (r % 8 == 0 ? r >> 8 : r % 3);
    }
    uint64_t want[256];
    label_counts(m, n, want);
    unsigned labels[] = {1, 2, 3, 9, 256};
    for (size_t k = 0; k < 5; k++) {
      unsigned nl = labels[k];
      uint64_t counts[256];
      for (unsigned v = 0; v < 256; v++) {
        counts[v] = 1000; /* counts are added to, not overwritten */
      }
      uint64_t other = core_mask_count_labels(m, n, counts, nl);
      uint64_t want_other = 0;
      for (unsigned v = 0; v < 256; v++) {
        if (v < nl) {
          cr_assert_eq(counts[v], 1000 + want[v], "len %zu labels %u v %u", n,
                       nl, v);
        } else {
          want_other += want[v];
          cr_assert_eq(counts[v], 1000, "touched counts[%u]", v);
        }
      }
      cr_assert_eq(other, want_other, "len %zu labels %u", n, nl);
    }
    free(m);
  }
}


Test(mask, count_labels_handles_long_runs, .timeout = 10) {
  /* More than 255 * 16 equal bytes in a row exercises the lane flush. */
  size_t n = 1 << 20;
  uint8_t* m = malloc(n);
  memset(m, 1, n);
  m[12345] = 0;
  uint64_t counts[2] = {0, 0};
  cr_assert_eq(core_mask_count_labels(m, n, counts, 2), 0);
  cr_assert_eq(counts[0], 1);
  cr_assert_eq(counts[1], n - 1);
  free(m);
}


/* A slab of planes is exactly those planes of the whole mask, for both
 * patterns, at partial progress, at any z range (the random stream is not
 * aligned to planes). */
Test(mask, planes_are_the_whole_masks_planes) {
  core_mask_spec_t spec = {.shape = {{37, 29, 31}}, .seed = 5};
  size_t plane = 29 * 31;
  uint8_t* full = malloc(37 * plane);
  uint8_t* part = malloc(37 * plane);
  cr_assert(full != NULL && part != NULL);
  core_pattern_t pats[2] = {CORE_PATTERN_BLOBS, CORE_PATTERN_RANDOM};
  double progs[2] = {0.4, 1.0};
  uint32_t ranges[4][2] = {{0, 37}, {3, 4}, {10, 33}, {36, 37}};
  for (int p = 0; p < 2; p++) {
    for (int g = 0; g < 2; g++) {
      spec.pattern = pats[p];
      core_mask_render(&spec, progs[g], 1, 7, full);
      for (int k = 0; k < 4; k++) {
        uint32_t z0 = ranges[k][0];
        uint32_t z1 = ranges[k][1];
        core_mask_render_planes(&spec, progs[g], 7, z0, z1, part);
        cr_assert(memcmp(part, full + z0 * plane, (z1 - z0) * plane) == 0,
                  "pattern %d progress %.1f planes %u..%u", p, progs[g], z0,
                  z1);
      }
    }
  }
  free(full);
  free(part);
}
