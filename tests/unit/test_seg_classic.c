/* test_seg_classic.c: the classic segmenter (core/seg_classic.h): windows
 * compute exactly what the whole volume gives, the mask does not depend on
 * threads or window order, it finds the phantom's structures (Dice against
 * the sim engine's exact `blobs` mask), stays quiet on noise, reads every
 * MRC mode alike, survives degenerate shapes and rejects bad arguments.
 * Threads come from tests/support/seg_driver.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mask.h"
#include "core/mrc.h"
#include "core/phantom.h"
#include "core/seg_classic.h"
#include "seg_driver.h"


/* A phantom tomogram of `s` (malloc'd, the caller frees). */
static float* phantom(const core_shape_t* s, uint64_t seed, float noise) {
  core_phantom_t ph;
  core_phantom_init(&ph, s, seed, noise);
  size_t plane = (size_t) s->d[1] * s->d[2];
  float* v = malloc(plane * s->d[0] * sizeof(float));
  cr_assert_not_null(v);
  for (uint32_t z = 0; z < s->d[0]; z++) {
    core_phantom_slice(&ph, z, v + z * plane);
  }
  return v;
}


/* A float32 input over `v` of shape `s` (borrowed). */
static core_seg_input_t float_input(const float* v, const core_shape_t* s) {
  core_seg_input_t in = {.data = v, .mode = CORE_MRC_MODE_FLOAT32, .shape = *s};
  return in;
}


/* The default parameters with windows of `window` (0: the default). */
static core_seg_params_t params(uint32_t window) {
  core_seg_params_t p;
  core_seg_params_default(&p);
  if (window > 0) {
    p.window = window;
  }
  return p;
}


/* What core_seg_window() needs besides the input: the volume's
 * statistics, the plan of windows and one worker's scratch. */
typedef struct {
  core_seg_stats_t st;
  core_seg_plan_t plan;
  core_seg_scratch_t* scratch; /* owned: windows_free() */
} windows_t;


static void windows_init(windows_t* w,
                         const core_seg_input_t* in,
                         const core_seg_params_t* p) {
  cr_assert_eq(core_seg_stats(in, p, &w->st), 0);
  cr_assert_eq(core_seg_plan_init(&w->plan, &in->shape, p), 0);
  cr_assert_eq(core_seg_scratch_new(&w->plan, &w->scratch), 0);
}


static void windows_free(windows_t* w) {
  core_seg_scratch_free(w->scratch);
}


static uint8_t* segment(const float* vol,
                        const core_shape_t* s,
                        const core_seg_params_t* p,
                        unsigned threads,
                        uint64_t shuffle) {
  uint8_t* mask = malloc(core_shape_voxels(s));
  cr_assert_not_null(mask);
  core_seg_input_t in = float_input(vol, s);
  int err = seg_driver_run(&in, p, threads, shuffle, mask, NULL, NULL);
  cr_assert_eq(err, 0, "seg_driver_run: %d", err);
  return mask;
}


static double dice(const uint8_t* got,
                   const uint8_t* want,
                   uint64_t n,
                   uint8_t label) {
  uint64_t a = 0, b = 0, both = 0;
  for (uint64_t i = 0; i < n; i++) {
    a += got[i] == label;
    b += want[i] == label;
    both += got[i] == label && want[i] == label;
  }
  return a + b ? 2.0 * (double) both / (double) (a + b) : 1.0;
}


static uint64_t labelled(const uint8_t* mask, uint64_t n) {
  uint64_t c = 0;
  for (uint64_t i = 0; i < n; i++) {
    cr_assert_leq(mask[i], 2, "voxel %llu = %u", (unsigned long long) i,
                  mask[i]);
    c += mask[i] != 0;
  }
  return c;
}


Test(seg_classic, smoothing_a_box_equals_smoothing_the_whole, .timeout = 30) {
  core_shape_t s = {{23, 31, 37}};
  float* v = phantom(&s, 5, 0.5f);
  core_seg_params_t p = params(0);
  core_seg_input_t in = float_input(v, &s);
  size_t n = core_shape_voxels(&s);
  float* whole = malloc(n * sizeof(float));
  float* part = malloc(n * sizeof(float));
  const uint32_t zero[3] = {0, 0, 0};
  cr_assert_eq(core_seg_smooth(&in, &p, zero, s.d, whole), 0);
  /* Boxes touching each border, the middle, single voxels. */
  const uint32_t boxes[][6] = {{0, 0, 0, 5, 7, 9},    {18, 24, 28, 5, 7, 9},
                               {7, 11, 13, 9, 9, 9},  {0, 30, 0, 23, 1, 37},
                               {22, 0, 36, 1, 31, 1}, {11, 15, 18, 1, 1, 1}};
  for (size_t b = 0; b < sizeof(boxes) / sizeof(boxes[0]); b++) {
    const uint32_t* lo = boxes[b];
    const uint32_t* sz = boxes[b] + 3;
    cr_assert_eq(core_seg_smooth(&in, &p, lo, sz, part), 0);
    for (uint32_t z = 0; z < sz[0]; z++) {
      for (uint32_t y = 0; y < sz[1]; y++) {
        const float* want =
            whole + ((size_t) (lo[0] + z) * s.d[1] + lo[1] + y) * s.d[2] +
            lo[2];
        const float* got = part + ((size_t) z * sz[1] + y) * sz[2];
        cr_assert_arr_eq(got, want, sz[2] * sizeof(float),
                         "box %zu, row z=%u y=%u differs", b, z, y);
      }
    }
  }
  const uint32_t out_lo[3] = {20, 0, 0}, out_n[3] = {4, 1, 1};
  cr_assert_eq(core_seg_smooth(&in, &p, out_lo, out_n, part), -EINVAL);
  free(whole);
  free(part);
  free(v);
}


Test(seg_classic, small_windows_give_the_one_window_mask, .timeout = 60) {
  /* Not a multiple of the window on any axis, so edge windows are short. */
  core_shape_t s = {{50, 45, 61}};
  float* v = phantom(&s, 3, 0.5f);
  core_seg_params_t p = params(128); /* one window covers it all */
  uint8_t* whole = segment(v, &s, &p, 1, 0);
  for (uint32_t w = 11; w <= 33; w *= 3) {
    p.window = w;
    uint8_t* windowed = segment(v, &s, &p, 2, 0);
    cr_assert_arr_eq(windowed, whole, core_shape_voxels(&s),
                     "window %u differs from one window", w);
    free(windowed);
  }
  free(whole);
  free(v);
}


Test(seg_classic, window_pass_alone_matches_across_windows, .timeout = 60) {
  /* Before the final pass too: each window's core is exact (and along Z
   * a window's box covers a fraction of the volume). */
  core_shape_t s = {{96, 40, 44}};
  float* v = phantom(&s, 9, 0.5f);
  core_seg_input_t in = float_input(v, &s);
  size_t n = core_shape_voxels(&s);
  uint8_t* masks[2];
  const uint32_t windows[2] = {128, 12};
  for (int k = 0; k < 2; k++) {
    core_seg_params_t p = params(windows[k]);
    windows_t ws;
    windows_init(&ws, &in, &p);
    masks[k] = malloc(n);
    memset(masks[k], 0xee, n);
    for (uint64_t i = 0; i < ws.plan.windows; i++) {
      core_seg_window_t w;
      core_seg_plan_window(&ws.plan, i, &w);
      cr_assert_eq(
          core_seg_window(&in, &p, &ws.st, &ws.plan, &w, ws.scratch, masks[k]),
          0);
    }
    windows_free(&ws);
  }
  cr_assert_arr_eq(masks[0], masks[1], n);
  cr_assert_gt(labelled(masks[0], n), 0);
  free(masks[0]);
  free(masks[1]);
  free(v);
}


Test(seg_classic, a_window_writes_only_its_core, .timeout = 30) {
  core_shape_t s = {{30, 30, 30}};
  float* v = phantom(&s, 2, 0.5f);
  core_seg_input_t in = float_input(v, &s);
  core_seg_params_t p = params(16);
  windows_t ws;
  windows_init(&ws, &in, &p);
  cr_assert_eq(ws.plan.windows, 8);
  uint8_t* mask = malloc(core_shape_voxels(&s));
  memset(mask, 0xaa, core_shape_voxels(&s));
  core_seg_window_t w;
  core_seg_plan_window(&ws.plan, 7, &w); /* the far corner: [16,30)^3 */
  cr_assert_eq(w.lo[0], 16);
  cr_assert_eq(w.hi[2], 30);
  cr_assert_eq(core_seg_window(&in, &p, &ws.st, &ws.plan, &w, ws.scratch, mask),
               0);
  for (uint32_t z = 0; z < 30; z++) {
    for (uint32_t y = 0; y < 30; y++) {
      for (uint32_t x = 0; x < 30; x++) {
        uint8_t m = mask[((size_t) z * 30 + y) * 30 + x];
        bool inside = z >= 16 && y >= 16 && x >= 16;
        cr_assert(inside ? m <= 2 : m == 0xaa, "voxel %u,%u,%u = %u", z, y, x,
                  m);
      }
    }
  }
  windows_free(&ws);
  free(mask);
  free(v);
}


Test(seg_classic, same_mask_whatever_threads_and_order, .timeout = 60) {
  core_shape_t s = {{56, 56, 56}};
  float* v = phantom(&s, 4, 0.5f);
  core_seg_params_t p = params(14); /* 64 windows */
  uint8_t* ref = segment(v, &s, &p, 1, 0);
  const unsigned threads[] = {1, 2, 4, 4};
  const uint64_t orders[] = {12345, 0, 7, 99};
  for (int k = 0; k < 4; k++) {
    uint8_t* m = segment(v, &s, &p, threads[k], orders[k]);
    cr_assert_arr_eq(m, ref, core_shape_voxels(&s),
                     "%u threads, order %llu differ", threads[k],
                     (unsigned long long) orders[k]);
    free(m);
  }
  free(ref);
  free(v);
}


/* Dice of each label against the sim engine's blobs mask, the phantom's
 * exact ground truth. */
static void check_dice(uint32_t edge, uint64_t seed, double bar1, double bar2) {
  core_shape_t s = {{edge, edge, edge}};
  float* v = phantom(&s, seed, 0.5f);
  core_seg_params_t p = params(48);
  uint8_t* got = segment(v, &s, &p, 2, 0);
  uint8_t* want = malloc(core_shape_voxels(&s));
  core_mask_spec_t spec = {s, CORE_PATTERN_BLOBS, seed};
  core_mask_render(&spec, 1.0, 1, 0, want);
  uint64_t n = core_shape_voxels(&s);
  double d1 = dice(got, want, n, 1), d2 = dice(got, want, n, 2);
  cr_log_info("%u^3 seed %llu: Dice membrane %.3f particle %.3f", edge,
              (unsigned long long) seed, d1, d2);
  cr_assert_geq(d1, bar1, "membrane Dice %.3f", d1);
  cr_assert_geq(d2, bar2, "particle Dice %.3f", d2);
  free(got);
  free(want);
  free(v);
}


Test(seg_classic, finds_the_phantoms_membranes_and_particles, .timeout = 60) {
  check_dice(96, 1, 0.8, 0.7);
  check_dice(96, 2, 0.8, 0.7);
}


Test(seg_classic, pure_noise_gives_almost_no_labels, .timeout = 30) {
  core_shape_t s = {{64, 64, 64}};
  size_t n = core_shape_voxels(&s);
  float* v = malloc(n * sizeof(float));
  uint64_t x = 42;
  for (size_t i = 0; i < n; i++) {
    /* Sum of 4 uniforms: close enough to Gaussian, sd 0.5. */
    double g = 0;
    for (int k = 0; k < 4; k++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      g += (double) (x >> 11) / 9007199254740992.0 - 0.5;
    }
    v[i] = (float) (g * 0.5 * sqrt(3.0));
  }
  core_seg_params_t p = params(0);
  uint8_t* m = segment(v, &s, &p, 2, 0);
  uint64_t c = labelled(m, n);
  cr_assert_leq(c, n / 10000, "%llu of %zu voxels labelled in pure noise",
                (unsigned long long) c, n);
  free(m);
  free(v);
}


Test(seg_classic, constant_volume_gives_no_labels, .timeout = 30) {
  core_shape_t s = {{20, 20, 20}};
  size_t n = core_shape_voxels(&s);
  float* v = calloc(n, sizeof(float));
  for (size_t i = 0; i < n; i++) {
    v[i] = 3.0f;
  }
  core_seg_params_t p = params(0);
  uint8_t* m = segment(v, &s, &p, 1, 0);
  cr_assert_eq(labelled(m, n), 0);
  free(m);
  free(v);
}


Test(seg_classic, degenerate_shapes_do_not_crash, .timeout = 60) {
  const core_shape_t shapes[] = {{{1, 1, 1}},   {{1, 64, 64}}, {{64, 1, 64}},
                                 {{64, 64, 1}}, {{2, 3, 200}}, {{3, 3, 3}},
                                 {{5, 90, 2}}};
  for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
    const core_shape_t* s = &shapes[k];
    float* v = phantom(s, 11, 0.5f);
    core_seg_params_t p = params(4);
    uint8_t* m = segment(v, s, &p, 2, 3);
    labelled(m, core_shape_voxels(s)); /* every value a label */
    free(m);
    free(v);
  }
}


/* The volume as `mode`, values v * scale + offset (representable). */
static void* convert(const float* v,
                     size_t n,
                     int32_t mode,
                     float scale,
                     float offset) {
  void* out = malloc(n * 4);
  for (size_t i = 0; i < n; i++) {
    float f = roundf(v[i] * scale + offset);
    switch (mode) {
    case CORE_MRC_MODE_INT8:
      ((int8_t*) out)[i] = (int8_t) f;
      break;
    case CORE_MRC_MODE_INT16:
      ((int16_t*) out)[i] = (int16_t) f;
      break;
    case CORE_MRC_MODE_UINT16:
      ((uint16_t*) out)[i] = (uint16_t) f;
      break;
    default:
      ((float*) out)[i] = f;
    }
  }
  return out;
}


Test(seg_classic, integer_modes_segment_like_float, .timeout = 60) {
  core_shape_t s = {{40, 40, 40}};
  size_t n = core_shape_voxels(&s);
  float* v = phantom(&s, 6, 0.5f);
  core_seg_params_t p = params(0);
  const struct {
    int32_t mode;
    float scale, offset;
  } modes[] = {{CORE_MRC_MODE_INT8, 30, 0},
               {CORE_MRC_MODE_INT16, 1000, 0},
               {CORE_MRC_MODE_UINT16, 1000, 30000}};
  for (size_t k = 0; k < 3; k++) {
    /* The same quantised values as float32 must give the same mask. */
    float* ref =
        convert(v, n, CORE_MRC_MODE_FLOAT32, modes[k].scale, modes[k].offset);
    void* q = convert(v, n, modes[k].mode, modes[k].scale, modes[k].offset);
    uint8_t* a = segment(ref, &s, &p, 1, 0);
    uint8_t* b = malloc(n);
    core_seg_input_t in = {.data = q, .mode = modes[k].mode, .shape = s};
    cr_assert_eq(seg_driver_run(&in, &p, 1, 0, b, NULL, NULL), 0);
    cr_assert_arr_eq(a, b, n, "mode %d", modes[k].mode);
    cr_assert_gt(labelled(a, n), 0);
    free(a);
    free(b);
    free(q);
    free(ref);
  }
  free(v);
}


Test(seg_classic, float16_reads_its_values, .timeout = 30) {
  /* 1.5, -2, 0, a subnormal, inf (read as 0): smoothing with sigma 0
   * returns the values themselves. */
  const uint16_t h[5] = {0x3e00, 0xc000, 0x0000, 0x0001, 0x7c00};
  core_seg_input_t in = {
      .data = h, .mode = CORE_MRC_MODE_FLOAT16, .shape = {{1, 1, 5}}};
  core_seg_params_t p = params(0);
  p.sigma = 0;
  float out[5];
  const uint32_t lo[3] = {0, 0, 0}, n[3] = {1, 1, 5};
  cr_assert_eq(core_seg_smooth(&in, &p, lo, n, out), 0);
  cr_assert_float_eq(out[0], 1.5, 0);
  cr_assert_float_eq(out[1], -2.0, 0);
  cr_assert_float_eq(out[2], 0.0, 0);
  cr_assert_float_eq(out[3], 5.9604644775390625e-8, 0);
  cr_assert_float_eq(out[4], 0.0, 0);
}


Test(seg_classic, nan_voxels_read_as_zero, .timeout = 30) {
  core_shape_t s = {{32, 32, 32}};
  size_t n = core_shape_voxels(&s);
  float* v = phantom(&s, 8, 0.5f);
  float* z = malloc(n * sizeof(float));
  memcpy(z, v, n * sizeof(float));
  for (size_t i = 0; i < n; i += 97) {
    v[i] = i % 2 ? NAN : INFINITY;
    z[i] = 0;
  }
  core_seg_params_t p = params(0);
  uint8_t* a = segment(v, &s, &p, 1, 0);
  uint8_t* b = segment(z, &s, &p, 1, 0);
  cr_assert_arr_eq(a, b, n);
  free(a);
  free(b);
  free(z);
  free(v);
}


Test(seg_classic, bright_dense_matter_mirrors_dark, .timeout = 30) {
  core_shape_t s = {{48, 48, 48}};
  size_t n = core_shape_voxels(&s);
  float* v = phantom(&s, 10, 0.5f);
  float* neg = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    neg[i] = -v[i];
  }
  core_seg_params_t p = params(0);
  uint8_t* a = segment(v, &s, &p, 1, 0);
  p.dense_is_bright = true;
  uint8_t* b = segment(neg, &s, &p, 1, 0);
  cr_assert_arr_eq(a, b, n);
  cr_assert_gt(labelled(a, n), 0);
  free(a);
  free(b);
  free(neg);
  free(v);
}


/* A flat membrane (two leaflets) across z = 16 and a ball of radius 7 at
 * z = 44, in light noise. */
static float* sheet_and_ball(const core_shape_t* s) {
  float* v = malloc(core_shape_voxels(s) * sizeof(float));
  cr_assert_not_null(v);
  uint64_t x = 7;
  for (uint32_t z = 0; z < s->d[0]; z++) {
    for (uint32_t y = 0; y < s->d[1]; y++) {
      for (uint32_t xx = 0; xx < s->d[2]; xx++) {
        float dz = (float) z - 16.0f, l1 = (dz - 1.5f) / 1.2f;
        float l2 = (dz + 1.5f) / 1.2f;
        float val = -(expf(-l1 * l1) + expf(-l2 * l2));
        float bz = (float) z - 44, by = (float) y - 24, bx = (float) xx - 24;
        float q = (bz * bz + by * by + bx * bx) / 49.0f;
        val -= q < 1 ? 1.5f * (1 - q) : 0;
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        val += 0.2f * ((float) (x >> 40) / 16777216.0f - 0.5f);
        v[((size_t) z * s->d[1] + y) * s->d[2] + xx] = val;
      }
    }
  }
  return v;
}


Test(seg_classic, tells_sheets_from_blobs, .timeout = 30) {
  core_shape_t s = {{64, 48, 48}};
  size_t n = core_shape_voxels(&s);
  float* v = sheet_and_ball(&s);
  core_seg_params_t p = params(0);
  uint8_t* m = segment(v, &s, &p, 2, 0);
  cr_assert_eq(m[((size_t) 16 * 48 + 10) * 48 + 30], CORE_SEG_LABEL_MEMBRANE);
  cr_assert_eq(m[((size_t) 44 * 48 + 24) * 48 + 24], CORE_SEG_LABEL_PARTICLE);
  cr_assert_eq(m[((size_t) 44 * 48 + 24) * 48 + 30], CORE_SEG_LABEL_PARTICLE);
  cr_assert_eq(m[((size_t) 44 * 48 + 24) * 48 + 33], 0);
  uint64_t sheet = 0, ball = 0, spots = 0, other = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t z = (uint32_t) (i / (48 * 48));
    bool near_sheet = z >= 10 && z <= 22;
    sheet += near_sheet && m[i] == CORE_SEG_LABEL_MEMBRANE;
    spots += near_sheet && m[i] == CORE_SEG_LABEL_PARTICLE;
    ball += z >= 36 && m[i] == CORE_SEG_LABEL_PARTICLE;
    other += !near_sheet && z < 36 && m[i] != 0;
  }
  /* Noise makes a few spots of the sheet curve like blobs. */
  cr_assert_leq(spots, sheet / 50, "particle spots on the sheet %llu",
                (unsigned long long) spots);
  /* The sheet is 5 voxels thick in truth, the ball 1419 voxels. */
  cr_assert_geq(sheet, 48 * 48 * 4, "membrane voxels %llu",
                (unsigned long long) sheet);
  cr_assert_leq(sheet, 48 * 48 * 7, "membrane voxels %llu",
                (unsigned long long) sheet);
  cr_assert_geq(ball, 1100, "particle voxels %llu", (unsigned long long) ball);
  cr_assert_leq(ball, 1900, "particle voxels %llu", (unsigned long long) ball);
  cr_assert_eq(other, 0);
  free(m);
  free(v);
}


Test(seg_classic, drops_components_below_min_voxels, .timeout = 30) {
  core_shape_t s = {{64, 48, 48}};
  size_t n = core_shape_voxels(&s);
  float* v = sheet_and_ball(&s);
  core_seg_params_t p = params(0);
  p.min_voxels = 5000; /* the ball goes, the sheet stays */
  uint8_t* got = malloc(n);
  core_seg_input_t in = float_input(v, &s);
  core_seg_summary_t sum;
  cr_assert_eq(seg_driver_run(&in, &p, 1, 0, got, &sum, NULL), 0);
  cr_assert_eq(sum.components, 1);
  cr_assert_geq(sum.dropped, 1);
  cr_assert_leq(sum.voxels[CORE_SEG_LABEL_PARTICLE],
                sum.voxels[CORE_SEG_LABEL_MEMBRANE] / 50); /* spots */
  cr_assert_gt(sum.voxels[CORE_SEG_LABEL_MEMBRANE], 48 * 48 * 4);
  cr_assert_eq(sum.voxels[0] + sum.voxels[1] + sum.voxels[2], n);
  cr_assert_eq(got[((size_t) 44 * 48 + 24) * 48 + 24], 0);
  free(got);
  free(v);
}


Test(seg_classic, rejects_bad_parameters_and_windows, .timeout = 10) {
  core_seg_params_t p;
  char err[128];
  core_seg_params_default(&p);
  cr_assert_eq(core_seg_params_check(&p, err, sizeof(err)), 0);
  p.sigma = NAN;
  cr_assert_eq(core_seg_params_check(&p, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, "sigma") != NULL, "%s", err);
  core_seg_params_default(&p);
  p.window = 0;
  cr_assert_eq(core_seg_params_check(&p, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, "window") != NULL, "%s", err);
  core_seg_params_default(&p);
  p.edge_fraction = 1.5f;
  cr_assert_eq(core_seg_params_check(&p, NULL, 0), -EINVAL);

  p = params(8);
  core_shape_t s = {{20, 20, 20}};
  float* v = phantom(&s, 1, 0.5f);
  core_seg_input_t in = float_input(v, &s);
  windows_t ws;
  windows_init(&ws, &in, &p);
  cr_assert_eq(ws.plan.windows, 27);
  uint8_t mask[8000];
  core_seg_window_t w = {{1, 0, 0}, {9, 8, 8}}; /* not on the grid */
  cr_assert_eq(core_seg_window(&in, &p, &ws.st, &ws.plan, &w, ws.scratch, mask),
               -EINVAL);
  core_seg_window_t last = {{16, 16, 16}, {20, 20, 24}}; /* past the end */
  cr_assert_eq(
      core_seg_window(&in, &p, &ws.st, &ws.plan, &last, ws.scratch, mask),
      -EINVAL);
  core_seg_input_t other = {
      .data = v, .mode = CORE_MRC_MODE_FLOAT32, .shape = {{20, 20, 19}}};
  core_seg_plan_window(&ws.plan, 0, &w);
  cr_assert_eq(
      core_seg_window(&other, &p, &ws.st, &ws.plan, &w, ws.scratch, mask),
      -EINVAL);
  core_seg_input_t bad_mode = {.data = v, .mode = 3, .shape = s};
  cr_assert_eq(core_seg_stats(&bad_mode, &p, &ws.st), -EINVAL);
  core_shape_t zero = {{0, 4, 4}};
  cr_assert_eq(core_seg_plan_init(&ws.plan, &zero, &p), -EINVAL);
  windows_free(&ws);
  core_seg_scratch_free(NULL);
  free(v);
}
