/* seg_label.c: the classic segmenter's final pass over the whole mask, once
 * every window is done. Per 26-connected component (seg_cc.c): drop it
 * (fewer than min_voxels), make it a particle (mostly blob already; or thin
 * and no wider than blob_extent, then re-read the input around it and grow
 * it as the windows grow blobs), or keep its voxels' labels (a membrane
 * and the particles on it). Serial and deterministic: components are
 * visited in raster order of their first run. Pure. */
#include "core/seg_classic.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/mask.h"
#include "core/seg_internal.h"

enum {
  KEEP,
  DROP,
  PARTICLE,     /* already grown by the windows */
  PARTICLE_GROW /* thin: grow it here */
};


static uint8_t decide(const core_seg_params_t* p, const core_seg_comp_t* c) {
  if (c->voxels < p->min_voxels) {
    return DROP;
  }
  if (2 * c->particle >= c->voxels) {
    return PARTICLE;
  }
  return c->particle == 0 && core_seg_comp_extent(c) <= p->blob_extent
             ? PARTICLE_GROW
             : KEEP;
}


typedef struct {
  uint32_t cap[3];
  float* d;
  float* tmp;
  uint8_t* lab;
  uint8_t* allowed;
  uint32_t* queue;
} grow_scratch_t;


/* Grows thin particle `c`, whose runs are runs[first..last) of `order`,
 * into the faint voxels around it (as the windows grow blobs). 0, or the
 * input's read error (the mask is then untouched). */
static int grow_particle(const core_seg_input_t* in,
                         const core_seg_params_t* p,
                         const core_seg_stats_t* st,
                         const core_seg_cc_t* r,
                         const size_t* order,
                         size_t first,
                         size_t last,
                         const core_seg_comp_t* c,
                         grow_scratch_t* g,
                         uint8_t* mask) {
  const core_shape_t* s = &in->shape;
  uint32_t lo[3], n[3];
  for (int a = 0; a < 3; a++) {
    lo[a] = c->lo[a] > p->grow_steps ? c->lo[a] - p->grow_steps : 0;
    uint64_t hi = (uint64_t) c->hi[a] + p->grow_steps + 1;
    n[a] = (uint32_t) (hi < s->d[a] ? hi : s->d[a]) - lo[a];
    assert(n[a] <= g->cap[a]);
  }
  core_seg_kernel_t k;
  core_seg_kernel_init(&k, p->sigma);
  int err = core_seg_smooth_box(in, &k, lo, n, g->d, g->tmp);
  if (err != 0) {
    return err;
  }
  const float support = p->k_support * st->noise_sd;
  for (uint32_t z = 0; z < n[0]; z++) {
    for (uint32_t y = 0; y < n[1]; y++) {
      size_t b = ((size_t) z * n[1] + y) * n[2];
      const uint8_t* row =
          mask + (((size_t) (lo[0] + z) * s->d[1]) + lo[1] + y) * s->d[2] +
          lo[2];
      for (uint32_t x = 0; x < n[2]; x++) {
        float f = g->d[b + x];
        float d = p->dense_is_bright ? f - st->background : st->background - f;
        g->d[b + x] = d;
        /* Other structures block growth; the component is marked below. */
        g->lab[b + x] = row[x] != 0 ? CORE_SEG_LABEL_MEMBRANE : 0;
        g->allowed[b + x] = (uint8_t) (row[x] == 0 && d > 0 && d >= support);
      }
    }
  }
  for (size_t k2 = first; k2 < last; k2++) {
    const core_seg_run_t* run = &r->runs[order[k2]];
    uint32_t z = run->row / s->d[1] - lo[0], y = run->row % s->d[1] - lo[1];
    memset(g->lab + ((size_t) z * n[1] + y) * n[2] + (run->x0 - lo[2]),
           CORE_SEG_LABEL_PARTICLE, run->x1 - run->x0);
  }
  core_seg_grow(g->lab, n, g->allowed, g->d, CORE_SEG_LABEL_PARTICLE,
                p->grow_steps, g->queue);
  for (uint32_t z = 0; z < n[0]; z++) {
    for (uint32_t y = 0; y < n[1]; y++) {
      size_t b = ((size_t) z * n[1] + y) * n[2];
      uint8_t* row = mask +
                     (((size_t) (lo[0] + z) * s->d[1]) + lo[1] + y) * s->d[2] +
                     lo[2];
      for (uint32_t x = 0; x < n[2]; x++) {
        if (g->allowed[b + x] && g->lab[b + x] == CORE_SEG_LABEL_PARTICLE) {
          row[x] = CORE_SEG_LABEL_PARTICLE;
        }
      }
    }
  }
  return 0;
}


static void grow_scratch_free(grow_scratch_t* g) {
  free(g->d);
  free(g->tmp);
  free(g->lab);
  free(g->allowed);
  free(g->queue);
}


static int grow_scratch_init(grow_scratch_t* g,
                             const core_seg_params_t* p,
                             const core_shape_t* s) {
  memset(g, 0, sizeof(*g));
  core_seg_kernel_t k;
  core_seg_kernel_init(&k, p->sigma);
  /* A grown component's box: its extent (<= blob_extent) plus the growth
   * on both sides. */
  for (int a = 0; a < 3; a++) {
    uint64_t want = (uint64_t) p->blob_extent + 2 * (uint64_t) p->grow_steps;
    g->cap[a] = want < s->d[a] ? (uint32_t) want : s->d[a];
  }
  size_t vox = (size_t) g->cap[0] * g->cap[1] * g->cap[2];
  g->d = malloc(vox * sizeof(float));
  g->tmp = malloc(core_seg_smooth_tmp_floats(g->cap, k.r) * sizeof(float));
  g->lab = malloc(vox);
  g->allowed = malloc(vox);
  g->queue = malloc(vox * sizeof(uint32_t));
  if (g->d == NULL || g->tmp == NULL || g->lab == NULL || g->allowed == NULL ||
      g->queue == NULL) {
    grow_scratch_free(g);
    return -ENOMEM;
  }
  return 0;
}


/* Grows every PARTICLE_GROW component, in component order. 0, -ENOMEM or
 * the input's read error. */
static int grow_all(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const core_seg_stats_t* st,
                    const core_seg_cc_t* r,
                    const core_seg_comp_t* comps,
                    const uint8_t* action,
                    uint8_t* mask) {
  grow_scratch_t g;
  int err = grow_scratch_init(&g, p, &in->shape);
  if (err != 0) {
    return err;
  }
  for (size_t c = 0; err == 0 && c < r->comps; c++) {
    if (action[c] == PARTICLE_GROW) {
      err = grow_particle(in, p, st, r, r->order, r->first[c], r->first[c + 1],
                          &comps[c], &g, mask);
    }
  }
  grow_scratch_free(&g);
  return err;
}


int core_seg_finish(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const core_seg_stats_t* st,
                    uint8_t* mask,
                    core_seg_summary_t* sum) {
  if (!core_seg_input_ok(in) || core_seg_params_check(p, NULL, 0) != 0 ||
      st == NULL || mask == NULL) {
    return -EINVAL;
  }
  const core_shape_t* s = &in->shape;
  core_seg_cc_t r;
  core_seg_comp_t* comps = NULL;
  uint8_t* action = NULL;
  int err = core_seg_cc_build(&r, mask, s);
  if (err == 0) {
    err = core_seg_cc_measure(&r, mask, s, &comps);
  }
  if (err == 0) {
    err = core_seg_cc_group(&r);
  }
  if (err == 0) {
    action = malloc(r.comps ? r.comps : 1);
    err = action == NULL ? -ENOMEM : 0;
  }
  core_seg_summary_t out = {{0}, 0, 0, 0};
  bool any_grow = false;
  if (err == 0) {
    for (size_t c = 0; c < r.comps; c++) {
      action[c] = decide(p, &comps[c]);
      out.dropped += action[c] == DROP;
      out.components += action[c] != DROP;
      out.particles += action[c] == PARTICLE || action[c] == PARTICLE_GROW;
      any_grow |= action[c] == PARTICLE_GROW;
    }
    for (size_t i = 0; i < r.count; i++) {
      const core_seg_run_t* run = &r.runs[i];
      uint8_t a = action[r.comp[i]];
      if (a != KEEP) {
        memset(mask + (size_t) run->row * s->d[2] + run->x0,
               a == DROP ? 0 : CORE_SEG_LABEL_PARTICLE, run->x1 - run->x0);
      }
    }
  }
  if (err == 0 && any_grow) {
    err = grow_all(in, p, st, &r, comps, action, mask);
  }
  if (err == 0 && sum != NULL) {
    core_mask_count_labels(mask, core_shape_voxels(s), out.voxels, 3);
    *sum = out;
  }
  core_seg_cc_free(&r);
  free(comps);
  free(action);
  return err;
}
