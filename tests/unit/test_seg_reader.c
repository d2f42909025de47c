/* test_seg_reader.c: the classic segmenter reading its input through
 * core_seg_input_t.read (core/seg_classic.h), as the server does with
 * pread: the same statistics, windows and final mask as from memory, in
 * every mode, on several threads; only Z planes inside the volume are
 * asked for; a failing read fails the call that asked with its error and
 * leaves the window's core unwritten; an input with both or neither of
 * data and read is refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/mrc.h"
#include "core/phantom.h"
#include "core/seg_classic.h"
#include "seg_driver.h"

/* A volume in memory, read box by box as a file would be. */
typedef struct {
  const uint8_t* vol;
  size_t itemsize;
  core_shape_t shape;
  atomic_uint_fast64_t calls;
  uint64_t fail_after; /* calls that succeed before every later one fails;
                          UINT64_MAX: none fails */
  atomic_bool bad_box; /* a box that is not one plane inside the volume */
} reader_t;


static int read_box(void* user,
                    const uint32_t lo[3],
                    const uint32_t n[3],
                    void* out) {
  reader_t* r = user;
  uint64_t call = atomic_fetch_add(&r->calls, 1);
  for (int a = 0; a < 3; a++) {
    if (n[a] == 0 || (uint64_t) lo[a] + n[a] > r->shape.d[a]) {
      atomic_store(&r->bad_box, true);
      return -EFAULT;
    }
  }
  if (n[0] != 1) {
    atomic_store(&r->bad_box, true);
  }
  if (call >= r->fail_after) {
    return -ENODATA;
  }
  const core_shape_t* s = &r->shape;
  uint8_t* dst = out;
  size_t row = (size_t) n[2] * r->itemsize;
  for (uint32_t z = 0; z < n[0]; z++) {
    for (uint32_t y = 0; y < n[1]; y++) {
      size_t v = ((size_t) (lo[0] + z) * s->d[1] + lo[1] + y) * s->d[2] + lo[2];
      memcpy(dst, r->vol + v * r->itemsize, row);
      dst += row;
    }
  }
  return 0;
}


static core_seg_input_t read_input(reader_t* r,
                                   const void* vol,
                                   int32_t mode,
                                   const core_shape_t* s) {
  r->vol = vol;
  r->itemsize = core_mrc_mode_itemsize(mode);
  r->shape = *s;
  atomic_init(&r->calls, 0);
  r->fail_after = UINT64_MAX;
  atomic_init(&r->bad_box, false);
  return (core_seg_input_t){
      .mode = mode, .shape = *s, .read = read_box, .user = r};
}


static float* phantom(const core_shape_t* s, uint64_t seed) {
  core_phantom_t ph;
  core_phantom_init(&ph, s, seed, 0.5f);
  size_t plane = (size_t) s->d[1] * s->d[2];
  float* v = malloc(plane * s->d[0] * sizeof(float));
  cr_assert_not_null(v);
  for (uint32_t z = 0; z < s->d[0]; z++) {
    core_phantom_slice(&ph, z, v + z * plane);
  }
  return v;
}


/* `v` as int16 (x 1000), malloc'd. */
static int16_t* as_int16(const float* v, size_t n) {
  int16_t* q = malloc(n * sizeof(int16_t));
  cr_assert_not_null(q);
  for (size_t i = 0; i < n; i++) {
    float f = v[i] * 1000.0f;
    q[i] = (int16_t) (f < -32768 ? -32768 : f > 32767 ? 32767 : f);
  }
  return q;
}


Test(seg_reader, read_input_gives_the_in_memory_mask, .timeout = 60) {
  /* Not a multiple of the window on any axis; small windows on 3 threads
   * in a shuffled order, so reads run concurrently and hit every border. */
  core_shape_t s = {{45, 50, 61}};
  size_t n = core_shape_voxels(&s);
  float* v = phantom(&s, 3);
  int16_t* q = as_int16(v, n);
  const struct {
    const void* vol;
    int32_t mode;
  } inputs[] = {{v, CORE_MRC_MODE_FLOAT32}, {q, CORE_MRC_MODE_INT16}};
  core_seg_params_t p;
  core_seg_params_default(&p);
  p.window = 16;
  for (size_t k = 0; k < 2; k++) {
    core_seg_input_t mem = {
        .data = inputs[k].vol, .mode = inputs[k].mode, .shape = s};
    reader_t r;
    core_seg_input_t rd = read_input(&r, inputs[k].vol, inputs[k].mode, &s);
    core_seg_stats_t st_mem, st_rd;
    /* Compared bytewise below: the padding after the floats must match. */
    memset(&st_mem, 0, sizeof(st_mem));
    memset(&st_rd, 0, sizeof(st_rd));
    cr_assert_eq(core_seg_stats(&mem, &p, &st_mem), 0);
    cr_assert_eq(core_seg_stats(&rd, &p, &st_rd), 0);
    cr_assert_arr_eq(&st_mem, &st_rd, sizeof(st_mem), "mode %d stats",
                     inputs[k].mode);
    uint8_t* a = malloc(n);
    uint8_t* b = malloc(n);
    core_seg_summary_t sa, sb;
    cr_assert_eq(seg_driver_run(&mem, &p, 1, 0, a, &sa, NULL), 0);
    cr_assert_eq(seg_driver_run(&rd, &p, 3, 77, b, &sb, NULL), 0);
    cr_assert_arr_eq(a, b, n, "mode %d: the read input's mask differs",
                     inputs[k].mode);
    cr_assert_arr_eq(&sa, &sb, sizeof(sa));
    cr_assert_gt(sa.voxels[1] + sa.voxels[2], 0);
    cr_assert_gt(atomic_load(&r.calls), 0);
    cr_assert_not(atomic_load(&r.bad_box), "a box outside the volume");
    free(a);
    free(b);
  }
  free(q);
  free(v);
}


/* Noise (sd ~0.3, a fixed LCG) around 0 with three dark rods one voxel
 * thick and 10 long: thin, compact components, which the final pass grows
 * (no blob in them at a high k_curvature). */
static float* rods(const core_shape_t* s) {
  size_t n = core_shape_voxels(s);
  float* v = malloc(n * sizeof(float));
  cr_assert_not_null(v);
  uint64_t x = 12345;
  for (size_t i = 0; i < n; i++) {
    float sum = 0;
    for (int k = 0; k < 4; k++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      sum += (float) (x >> 40) / (float) (1ull << 24) - 0.5f;
    }
    v[i] = sum * 0.3f;
  }
  for (uint32_t c = 0; c < 3; c++) {
    uint32_t z = 8 + 12 * c, y = 6 + 11 * c, x0 = 26 - 10 * c;
    for (uint32_t xx = x0; xx < x0 + 10; xx++) {
      v[((size_t) z * s->d[1] + y) * s->d[2] + xx] -= 1.5f;
    }
  }
  return v;
}


Test(seg_reader, the_final_pass_reads_like_memory, .timeout = 60) {
  /* Thin compact components are grown in the final pass, re-reading the
   * input around them: the same result either way. */
  core_shape_t s = {{48, 48, 48}};
  size_t n = core_shape_voxels(&s);
  float* v = rods(&s);
  core_seg_params_t p;
  core_seg_params_default(&p);
  p.window = 24;
  p.k_curvature = 100; /* no blob: the rods stay thin until the final pass */
  core_seg_input_t mem = {.data = v, .mode = CORE_MRC_MODE_FLOAT32, .shape = s};
  reader_t r;
  core_seg_input_t rd = read_input(&r, v, CORE_MRC_MODE_FLOAT32, &s);
  core_seg_stats_t st;
  core_seg_plan_t plan;
  core_seg_scratch_t* scratch;
  cr_assert_eq(core_seg_stats(&mem, &p, &st), 0);
  cr_assert_eq(core_seg_plan_init(&plan, &s, &p), 0);
  cr_assert_eq(core_seg_scratch_new(&plan, &scratch), 0);
  uint8_t* pre = malloc(n); /* the windows' output */
  for (uint64_t i = 0; i < plan.windows; i++) {
    core_seg_window_t w;
    core_seg_plan_window(&plan, i, &w);
    cr_assert_eq(core_seg_window(&mem, &p, &st, &plan, &w, scratch, pre), 0);
  }
  core_seg_scratch_free(scratch);
  uint8_t* a = malloc(n);
  uint8_t* b = malloc(n);
  memcpy(a, pre, n);
  memcpy(b, pre, n);
  core_seg_summary_t sum;
  cr_assert_eq(core_seg_finish(&mem, &p, &st, a, &sum), 0);
  cr_assert_eq(sum.particles, 3, "%llu particles",
               (unsigned long long) sum.particles);
  cr_assert_gt(sum.voxels[2], 30, "the rods did not grow");
  cr_assert_eq(core_seg_finish(&rd, &p, &st, b, NULL), 0);
  cr_assert_gt(atomic_load(&r.calls), 0, "the final pass read nothing");
  cr_assert_arr_eq(a, b, n);
  cr_assert_not(atomic_load(&r.bad_box));
  /* A read failing there fails the final pass with its error. */
  memcpy(b, pre, n);
  atomic_store(&r.calls, 0);
  r.fail_after = 0;
  cr_assert_eq(core_seg_finish(&rd, &p, &st, b, NULL), -ENODATA);
  free(pre);
  free(a);
  free(b);
  free(v);
}


Test(seg_reader,
     a_failing_read_fails_the_call_and_writes_nothing,
     .timeout = 30) {
  core_shape_t s = {{40, 40, 40}};
  size_t n = core_shape_voxels(&s);
  float* v = phantom(&s, 2);
  core_seg_params_t p;
  core_seg_params_default(&p);
  p.window = 20;
  reader_t r;
  core_seg_input_t rd = read_input(&r, v, CORE_MRC_MODE_FLOAT32, &s);
  core_seg_stats_t st;
  core_seg_plan_t plan;
  core_seg_scratch_t* scratch;
  /* The statistics fail on the first read, or on a later one. */
  r.fail_after = 0;
  cr_assert_eq(core_seg_stats(&rd, &p, &st), -ENODATA);
  atomic_store(&r.calls, 0);
  r.fail_after = 5;
  cr_assert_eq(core_seg_stats(&rd, &p, &st), -ENODATA);
  r.fail_after = UINT64_MAX;
  cr_assert_eq(core_seg_stats(&rd, &p, &st), 0);
  cr_assert_eq(core_seg_plan_init(&plan, &s, &p), 0);
  cr_assert_eq(core_seg_scratch_new(&plan, &scratch), 0);
  uint8_t* mask = malloc(n);
  memset(mask, 0xaa, n);
  /* A window whose reads fail part way: its error, and its core untouched. */
  for (uint64_t after = 0; after < 30; after += 7) {
    atomic_store(&r.calls, 0);
    r.fail_after = after;
    core_seg_window_t w;
    core_seg_plan_window(&plan, 3, &w);
    cr_assert_eq(core_seg_window(&rd, &p, &st, &plan, &w, scratch, mask),
                 -ENODATA, "failing after %llu reads",
                 (unsigned long long) after);
    for (size_t i = 0; i < n; i++) {
      cr_assert_eq(mask[i], 0xaa, "voxel %zu written", i);
    }
  }
  const uint32_t lo[3] = {0, 0, 0}, box[3] = {4, 4, 4};
  float out[64];
  atomic_store(&r.calls, 0);
  r.fail_after = 2;
  cr_assert_eq(core_seg_smooth(&rd, &p, lo, box, out), -ENODATA);
  cr_assert_not(atomic_load(&r.bad_box));
  core_seg_scratch_free(scratch);
  free(mask);
  free(v);
}


Test(seg_reader, both_or_neither_of_data_and_read_is_refused, .timeout = 10) {
  core_shape_t s = {{8, 8, 8}};
  float v[512] = {0};
  core_seg_params_t p;
  core_seg_params_default(&p);
  reader_t r;
  core_seg_input_t both = read_input(&r, v, CORE_MRC_MODE_FLOAT32, &s);
  both.data = v;
  core_seg_input_t neither = {.mode = CORE_MRC_MODE_FLOAT32, .shape = s};
  core_seg_stats_t st;
  cr_assert_eq(core_seg_stats(&both, &p, &st), -EINVAL);
  cr_assert_eq(core_seg_stats(&neither, &p, &st), -EINVAL);
  uint8_t mask[512];
  cr_assert_eq(core_seg_run(&both, &p, mask, NULL), -EINVAL);
  cr_assert_eq(core_seg_run(&neither, &p, mask, NULL), -EINVAL);
  cr_assert_eq(atomic_load(&r.calls), 0);
}
