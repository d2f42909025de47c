/* seg_classic.c: the classic segmenter's parameters, window plan and the
 * per-window pass (seg_classic.h says what it computes). Neighbours:
 * seg_filter.c, seg_morph.c (the steps), seg_stats.c (thresholds),
 * seg_cc.c and seg_label.c (the final pass). A window reads a box of input
 * around its core, wide enough that every value the core depends on is computed
 * from the same voxels as in the whole volume, so windows are exact and
 * independent. Pure; a scratch belongs to one thread at a time. */
#include "core/seg_classic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/seg_internal.h"

#define WINDOW_MIN 4u
#define WINDOW_MAX 512u

struct core_seg_scratch_s {
  uint32_t cap[3]; /* largest box, per axis */
  float* d;        /* box: smoothed, then darkness */
  float* tmp;      /* filter temporaries */
  uint8_t* s;      /* box: structure, then where particles may grow */
  uint8_t* t1;     /* box: depth, then labels */
  uint8_t* t2;     /* box: distance from blob cores */
  uint32_t* queue; /* growth queue, one entry per box voxel */
};


void core_seg_params_default(core_seg_params_t* p) {
  memset(p, 0, sizeof(*p)); /* padding too: callers may memcmp params */
  *p = (core_seg_params_t){
      .sigma = 1.25f,
      .k_detect = 3.5f,
      .edge_fraction = 0.55f,
      .peak_radius = 2,
      .sheet_radius = 5,
      .blob_extent = 12,
      .k_curvature = 3.0f,
      .k_support = 2.5f,
      .grow_steps = 3,
      .min_voxels = 20,
      .window = 128,
      .dense_is_bright = false,
  };
}


static int bad(char* err, size_t err_len, const char* what) {
  if (err_len > 0) {
    snprintf(err, err_len, "%s", what);
  }
  return -EINVAL;
}


int core_seg_params_check(const core_seg_params_t* p,
                          char* err,
                          size_t err_len) {
  /* Written so that NaN fails every range. */
  if (!(p->sigma >= 0 && p->sigma <= CORE_SEG_SIGMA_MAX)) {
    return bad(err, err_len, "sigma must be 0..8 voxels");
  }
  if (!(p->k_detect >= 0 && p->k_detect <= 100)) {
    return bad(err, err_len, "k_detect must be 0..100");
  }
  if (!(p->edge_fraction >= 0 && p->edge_fraction <= 1)) {
    return bad(err, err_len, "edge_fraction must be 0..1");
  }
  if (p->peak_radius > 16) {
    return bad(err, err_len, "peak_radius must be 0..16 voxels");
  }
  if (p->sheet_radius < 1 || p->sheet_radius > 60) {
    return bad(err, err_len, "sheet_radius must be 1..60 voxels");
  }
  if (!(p->k_curvature >= 0 && p->k_curvature <= 100)) {
    return bad(err, err_len, "k_curvature must be 0..100");
  }
  if (!(p->k_support >= 0 && p->k_support <= 100)) {
    return bad(err, err_len, "k_support must be 0..100");
  }
  if (p->grow_steps > 64) {
    return bad(err, err_len, "grow_steps must be 0..64");
  }
  if (p->window < WINDOW_MIN || p->window > WINDOW_MAX) {
    return bad(err, err_len, "window must be 4..512 voxels");
  }
  return 0;
}


uint32_t core_seg_core_step(const core_seg_params_t* p) {
  return 2 * p->sheet_radius;
}


uint32_t core_seg_halo_morph(const core_seg_params_t* p) {
  /* Labels depend on growth (grow_steps) from blobs, which reach up to
   * sheet_radius + 1 from cores; a core depends on the structure up to its
   * capped depth (sheet_radius, each voxel compared with its peak_radius
   * cube) and on the smoothed volume core_seg_core_step() away. */
  uint32_t reach = p->sheet_radius + 1 + p->grow_steps;
  uint32_t depth = reach + p->sheet_radius + p->peak_radius;
  uint32_t curve = reach + core_seg_core_step(p);
  return depth > curve ? depth : curve;
}


int core_seg_plan_init(core_seg_plan_t* plan,
                       const core_shape_t* shape,
                       const core_seg_params_t* p) {
  if (!core_shape_is_valid(shape) || core_seg_params_check(p, NULL, 0)) {
    return -EINVAL;
  }
  core_seg_kernel_t k;
  core_seg_kernel_init(&k, p->sigma);
  memset(plan, 0, sizeof(*plan));
  plan->shape = *shape;
  plan->window = p->window;
  plan->kernel_radius = k.r;
  plan->halo = core_seg_halo_morph(p) + k.r;
  plan->windows = 1;
  for (int a = 0; a < 3; a++) {
    plan->count[a] = shape->d[a] / p->window + (shape->d[a] % p->window != 0);
    plan->windows *= plan->count[a];
  }
  return 0;
}


void core_seg_plan_window(const core_seg_plan_t* plan,
                          uint64_t index,
                          core_seg_window_t* out) {
  uint64_t c[3] = {index / ((uint64_t) plan->count[1] * plan->count[2]),
                   index / plan->count[2] % plan->count[1],
                   index % plan->count[2]};
  for (int a = 0; a < 3; a++) {
    uint64_t lo = c[a] * plan->window, hi = lo + plan->window;
    out->lo[a] = (uint32_t) lo;
    out->hi[a] = (uint32_t) (hi < plan->shape.d[a] ? hi : plan->shape.d[a]);
  }
}


/* The largest box a window of `plan` reads into its scratch, per axis. */
static void box_cap(const core_seg_plan_t* plan, uint32_t cap[3]) {
  uint32_t hm = plan->halo - plan->kernel_radius;
  for (int a = 0; a < 3; a++) {
    uint64_t want = (uint64_t) plan->window + 2 * (uint64_t) hm;
    cap[a] = want < plan->shape.d[a] ? (uint32_t) want : plan->shape.d[a];
  }
}


/* Filter temporaries for a box of `cap`: the smoothing's, or the peak
 * threshold's two box-sized arrays, whichever is larger. */
static size_t tmp_floats(const core_seg_plan_t* plan, const uint32_t cap[3]) {
  size_t vox = (size_t) cap[0] * cap[1] * cap[2];
  size_t smooth = core_seg_smooth_tmp_floats(cap, plan->kernel_radius);
  return smooth > 2 * vox ? smooth : 2 * vox;
}


size_t core_seg_scratch_bytes(const core_seg_plan_t* plan) {
  uint32_t cap[3];
  box_cap(plan, cap);
  size_t vox = (size_t) cap[0] * cap[1] * cap[2];
  return sizeof(struct core_seg_scratch_s) +
         (vox + tmp_floats(plan, cap)) * sizeof(float) + 3 * vox +
         vox * sizeof(uint32_t);
}


int core_seg_scratch_new(const core_seg_plan_t* plan,
                         core_seg_scratch_t** out) {
  *out = NULL;
  core_seg_scratch_t* s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return -ENOMEM;
  }
  box_cap(plan, s->cap);
  size_t vox = (size_t) s->cap[0] * s->cap[1] * s->cap[2];
  s->d = malloc(vox * sizeof(float));
  s->tmp = malloc(tmp_floats(plan, s->cap) * sizeof(float));
  s->s = malloc(vox);
  s->t1 = malloc(vox);
  s->t2 = malloc(vox);
  s->queue = malloc(vox * sizeof(uint32_t));
  if (s->d == NULL || s->tmp == NULL || s->s == NULL || s->t1 == NULL ||
      s->t2 == NULL || s->queue == NULL) {
    core_seg_scratch_free(s);
    return -ENOMEM;
  }
  *out = s;
  return 0;
}


void core_seg_scratch_free(core_seg_scratch_t* s) {
  if (s == NULL) {
    return;
  }
  free(s->d);
  free(s->tmp);
  free(s->s);
  free(s->t1);
  free(s->t2);
  free(s->queue);
  free(s);
}


static bool window_ok(const core_seg_plan_t* plan, const core_seg_window_t* w) {
  for (int a = 0; a < 3; a++) {
    uint64_t end = (uint64_t) w->lo[a] + plan->window;
    if (w->lo[a] % plan->window != 0 || w->lo[a] >= plan->shape.d[a] ||
        w->hi[a] != (end < plan->shape.d[a] ? end : plan->shape.d[a])) {
      return false;
    }
  }
  return true;
}


/* Labels the box (origin lo, size n) in s->t1 from the darkness s->d. */
static void label_box(const core_seg_params_t* p,
                      const core_seg_stats_t* st,
                      const uint32_t n[3],
                      unsigned border,
                      core_seg_scratch_t* s) {
  const size_t vox = (size_t) n[0] * n[1] * n[2];
  core_seg_peak_threshold(s->d, n, p->peak_radius, p->k_detect * st->noise_sd,
                          p->edge_fraction, s->s, s->tmp);
  /* Depth inside the structure (thirds of a voxel), capped where a blob
   * core starts. */
  const uint8_t core_depth = (uint8_t) (3 * p->sheet_radius);
  for (size_t i = 0; i < vox; i++) {
    s->t1[i] = s->s[i] ? core_depth : 0;
  }
  /* Outside the volume counts as background, or a membrane cut at a
   * grazing angle by the border would look thick. */
  core_seg_chamfer(s->t1, n, core_depth, border);
  /* Blob cores: as deep as a blob (no sheet is) and curved every way at
   * that scale (two membranes side by side or crossing are flat along
   * some direction), or at the centre of a small blob (curved every way
   * beyond noise at the voxel scale, which sheets and their crossings are
   * not, even where a blob sits in a membrane). Blobs: the voxels of the
   * structure within depth(c) + 1 of a core c (the balls inscribed at the
   * cores, plus the voxel layer discrete depths miss): a transform from
   * 3R - depth(c) at the cores, blob where <= 3R + 3. */
  const uint8_t far = (uint8_t) (core_depth + 4);
  const float curvature = p->k_curvature * st->curvature_sd;
  const float curvature2 = p->k_curvature * st->curvature_sd2;
  const float core_curvature = p->k_curvature * st->core_curvature_sd;
  const uint32_t step = core_seg_core_step(p);
  for (size_t i = 0; i < vox; i++) {
    uint8_t depth = s->t1[i];
    if (!s->s[i]) {
      s->t2[i] = (uint8_t) CORE_SEG_BARRIER;
    } else if (depth == core_depth
                   ? core_seg_curved_all_ways(s->d, n, i, step, core_curvature)
                   : core_seg_curved_all_ways(s->d, n, i, 1, curvature) ||
                         core_seg_curved_all_ways(s->d, n, i, 2, curvature2)) {
      s->t2[i] = (uint8_t) (core_depth - depth);
    } else {
      s->t2[i] = far;
    }
  }
  core_seg_chamfer(s->t2, n, far, 0);
  const float support = p->k_support * st->noise_sd;
  for (size_t i = 0; i < vox; i++) {
    uint8_t lab = s->t2[i] < far ? CORE_SEG_LABEL_PARTICLE
                  : s->s[i]      ? CORE_SEG_LABEL_MEMBRANE
                                 : 0;
    s->t1[i] = lab;
    /* Particles grow into faint voxels, never into membrane. */
    s->s[i] = (uint8_t) (lab == 0 && s->d[i] > 0 && s->d[i] >= support);
  }
  core_seg_grow(s->t1, n, s->s, s->d, CORE_SEG_LABEL_PARTICLE, p->grow_steps,
                s->queue);
}


int core_seg_window(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const core_seg_stats_t* st,
                    const core_seg_plan_t* plan,
                    const core_seg_window_t* w,
                    core_seg_scratch_t* scratch,
                    uint8_t* mask) {
  if (!core_seg_input_ok(in) || core_seg_params_check(p, NULL, 0) != 0 ||
      memcmp(&in->shape, &plan->shape, sizeof(in->shape)) != 0 ||
      p->window != plan->window || !window_ok(plan, w)) {
    return -EINVAL;
  }
  const uint32_t hm = core_seg_halo_morph(p);
  uint32_t lo[3], n[3];
  for (int a = 0; a < 3; a++) {
    lo[a] = w->lo[a] > hm ? w->lo[a] - hm : 0;
    uint64_t hi = (uint64_t) w->hi[a] + hm;
    n[a] = (uint32_t) (hi < plan->shape.d[a] ? hi : plan->shape.d[a]) - lo[a];
    if (n[a] > scratch->cap[a]) {
      return -EINVAL; /* a scratch made for another plan */
    }
  }
  core_seg_kernel_t k;
  core_seg_kernel_init(&k, p->sigma);
  int err = core_seg_smooth_box(in, &k, lo, n, scratch->d, scratch->tmp);
  if (err != 0) {
    return err; /* nothing written: the core is written last */
  }
  const size_t vox = (size_t) n[0] * n[1] * n[2];
  const float bg = st->background;
  for (size_t i = 0; i < vox; i++) {
    float f = scratch->d[i];
    scratch->d[i] = p->dense_is_bright ? f - bg : bg - f;
  }
  unsigned border = 0;
  for (int a = 0; a < 3; a++) {
    border |=
        (lo[a] == 0 ? CORE_SEG_EDGE_Z0 << (2 * a) : 0) |
        (lo[a] + n[a] == plan->shape.d[a] ? CORE_SEG_EDGE_Z1 << (2 * a) : 0);
  }
  label_box(p, st, n, border, scratch);
  const core_shape_t* sh = &plan->shape;
  const size_t wx = w->hi[2] - w->lo[2];
  for (uint32_t z = w->lo[0]; z < w->hi[0]; z++) {
    for (uint32_t y = w->lo[1]; y < w->hi[1]; y++) {
      size_t src = (((size_t) (z - lo[0]) * n[1]) + (y - lo[1])) * n[2] +
                   (w->lo[2] - lo[2]);
      size_t dst = ((size_t) z * sh->d[1] + y) * sh->d[2] + w->lo[2];
      memcpy(mask + dst, scratch->t1 + src, wx);
    }
  }
  return 0;
}


int core_seg_smooth(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const uint32_t lo[3],
                    const uint32_t n[3],
                    float* out) {
  if (!core_seg_input_ok(in) || core_seg_params_check(p, NULL, 0) != 0) {
    return -EINVAL;
  }
  for (int a = 0; a < 3; a++) {
    if (n[a] == 0 || (uint64_t) lo[a] + n[a] > in->shape.d[a]) {
      return -EINVAL;
    }
  }
  core_seg_kernel_t k;
  core_seg_kernel_init(&k, p->sigma);
  float* tmp = malloc(core_seg_smooth_tmp_floats(n, k.r) * sizeof(float));
  if (tmp == NULL) {
    return -ENOMEM;
  }
  int err = core_seg_smooth_box(in, &k, lo, n, out, tmp);
  free(tmp);
  return err;
}


int core_seg_run(const core_seg_input_t* in,
                 const core_seg_params_t* p,
                 uint8_t* mask,
                 core_seg_summary_t* sum) {
  core_seg_stats_t st;
  core_seg_plan_t plan;
  int err = core_seg_stats(in, p, &st);
  if (err == 0) {
    err = core_seg_plan_init(&plan, &in->shape, p);
  }
  core_seg_scratch_t* s = NULL;
  if (err == 0) {
    err = core_seg_scratch_new(&plan, &s);
  }
  for (uint64_t i = 0; err == 0 && i < plan.windows; i++) {
    core_seg_window_t w;
    core_seg_plan_window(&plan, i, &w);
    err = core_seg_window(in, p, &st, &plan, &w, s, mask);
  }
  core_seg_scratch_free(s);
  if (err == 0) {
    err = core_seg_finish(in, p, &st, mask, sum);
  }
  return err;
}
