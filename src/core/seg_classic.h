/* seg_classic.h: "classic", the built-in CPU segmenter of cryo-ET tomograms:
 * membranes (label 1) and dense particles (label 2), background 0. It works
 * window by window, so the mask grows as it goes and windows can run on
 * several threads; a final pass over the whole mask joins components across
 * windows, drops small ones and reclassifies compact ones. Pure: no I/O, no
 * threads, no globals; every function is re-entrant.
 *
 * Per window (a core plus a halo, so that the core is exactly what the
 * whole volume would give):
 * 1. smooth (separable Gaussian, sigma); darkness d = background - value
 *    (dense matter is dark in cryo-ET; dense_is_bright flips it);
 * 2. structure S: d > k_detect noise sd and d >= edge_fraction of the
 *    darkest d within peak_radius (a half-maximum edge, which puts a
 *    membrane's edge where its leaflets fade, whatever the contrast);
 * 3. blob cores: S voxels deeper than sheet_radius (a chamfer distance
 *    transform; no membrane is that thick) that curve down in every
 *    direction at a step of 2 * sheet_radius (two membranes side by side or
 *    crossing are flat along some direction), or S voxels that curve down
 *    every way by k_curvature noise sd at a step of 1 or 2 voxels (small
 *    blobs, also where they sit in a membrane);
 * 4. blobs: S within depth + 1 of a core (the balls inscribed at the
 *    cores), grown downhill into the fainter voxels around them (d >
 *    k_support noise sd) by up to grow_steps: label 2; the rest of S
 *    (thin, sheet-like): label 1.
 * Final pass: 26-connected components of the non-zero mask: fewer than
 * min_voxels voxels: dropped (noise); at least half blob, or thin (no
 * blob) and no wider than blob_extent: a particle as a whole (thin ones
 * grown as in 4, re-reading the input around them); else kept as labelled.
 *
 * Use: core_seg_params_default(); core_seg_plan_init(); core_seg_stats();
 * one core_seg_scratch_t per thread; core_seg_window() for every window of
 * the plan, in any order, on any threads (windows write disjoint parts of
 * the mask); core_seg_finish() once every window is done. The same input
 * and parameters give the same mask whatever the order and thread count.
 * core_seg_run() does it all on the calling thread. */
#ifndef CORE_SEG_CLASSIC_H
#define CORE_SEG_CLASSIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

#define CORE_SEG_LABEL_MEMBRANE 1
#define CORE_SEG_LABEL_PARTICLE 2

/* Fills `out` with the raw voxels of the box [lo, lo + n) of the volume
 * (inside it; n[0]*n[1]*n[2] voxels of the input's mode, X fastest, no
 * padding): what core_seg_input_t.read does. Returns 0, or a negative errno
 * that the core call which asked returns unchanged. Called on the thread of
 * that call, concurrently from concurrent calls. */
typedef int (*core_seg_read_cb)(void* user,
                                const uint32_t lo[3],
                                const uint32_t n[3],
                                void* out);

/* The volume: voxels in C order ZYX (X fastest), little-endian as MRC
 * stores them. Either all of it in memory (`data`, borrowed), or read box
 * by box through `read` (data NULL), one Z plane of a box at a time, so the
 * caller can read it from a file with pread and a file that changes under
 * it is an error, never a fault. Exactly one of the two is set. */
typedef struct {
  const void* data;
  int32_t mode; /* CORE_MRC_MODE_INT8, _INT16, _FLOAT32, _UINT16, _FLOAT16 */
  core_shape_t shape;
  core_seg_read_cb read; /* when data is NULL */
  void* user;            /* read's first argument */
} core_seg_input_t;

/* Parameters; lengths in voxels, thresholds in units of the smoothed
 * volume's noise sd (core_seg_stats_t). The defaults
 * (core_seg_params_default) suit tomograms like `cryomamba phantom`
 * (leaflets ~1.2 voxels wide, 3 apart; particles 3-20 voxels across). */
typedef struct {
  float sigma;           /* Gaussian smoothing sd, 0..8 (1.25) */
  float k_detect;        /* structure is darker than this (3.5) */
  float edge_fraction;   /* ... and than this fraction of its local peak:
                          * where membranes end, 0..1 (0.55) */
  uint32_t peak_radius;  /* half edge of the local peak's cube, 0..16 (2) */
  uint32_t sheet_radius; /* deeper than this inside the structure is a
                          * blob, never a membrane, 1..60 (5) */
  float k_curvature;     /* blob centres curve down every way by more than
                          * this many sd of the curvature noise (3) */
  uint32_t blob_extent;  /* a thin component this wide at most (bounding
                          * box edge) is a particle (12) */
  float k_support;       /* particles extend while darker than this (2.5) */
  uint32_t grow_steps;   /* ... by at most this many voxels, 0..64 (3) */
  uint32_t min_voxels;   /* smaller components are noise (20) */
  uint32_t window;       /* edge of a window's core, 4..512 (128) */
  bool dense_is_bright;  /* dense matter has high values (false) */
} core_seg_params_t;

/* Robust statistics of the volume, from core_seg_stats(). */
typedef struct {
  double mean, sd;         /* of the raw values sampled (informational) */
  float background;        /* median of the smoothed volume */
  float noise_sd;          /* robust sd of its light (non-dense) half */
  float curvature_sd;      /* robust sd of its second differences along X
                            * (per voxel^2): the curvature noise */
  float curvature_sd2;     /* the same at a step of 2 voxels */
  float core_curvature_sd; /* the same at a step of 2 * sheet_radius */
  uint64_t sampled;        /* voxels sampled */
} core_seg_stats_t;

/* A window: its core [lo, hi) per axis (Z, Y, X), where it writes. It reads
 * the input up to core_seg_plan_t.halo voxels beyond (clamped). */
typedef struct {
  uint32_t lo[3], hi[3];
} core_seg_window_t;

typedef struct {
  core_shape_t shape;
  uint32_t window;        /* core edge */
  uint32_t halo;          /* input context read on each side of a core */
  uint32_t kernel_radius; /* the smoothing's part of the halo */
  uint32_t count[3];      /* windows per axis */
  uint64_t windows;       /* count[0] * count[1] * count[2] */
} core_seg_plan_t;

typedef struct {
  uint64_t voxels[3];  /* per label, after the final pass */
  uint64_t components; /* kept */
  uint64_t dropped;    /* smaller than min_voxels */
  uint64_t particles;  /* components labelled particle as a whole */
} core_seg_summary_t;

/* Per-thread working memory of core_seg_window(); opaque. */
typedef struct core_seg_scratch_s core_seg_scratch_t;

/* The defaults documented in core_seg_params_t. */
void core_seg_params_default(core_seg_params_t* p);

/* 0, or -EINVAL with a sentence in err (when err_len > 0) naming the first
 * parameter out of range. */
int core_seg_params_check(const core_seg_params_t* p,
                          char* err,
                          size_t err_len);

/* Cuts `shape` into windows of p->window voxels (smaller at the far ends).
 * Returns 0 or -EINVAL (invalid shape or parameters). */
int core_seg_plan_init(core_seg_plan_t* plan,
                       const core_shape_t* shape,
                       const core_seg_params_t* p);

/* Window `index` (< plan->windows) in Z, Y, X order. */
void core_seg_plan_window(const core_seg_plan_t* plan,
                          uint64_t index,
                          core_seg_window_t* out);

/* Samples up to ~2M voxels (64 cubes of 32^3 spread over the volume), so it
 * costs a few tens of ms whatever the size. 0, -EINVAL (input or params),
 * -ENOMEM or the input's read error. */
int core_seg_stats(const core_seg_input_t* in,
                   const core_seg_params_t* p,
                   core_seg_stats_t* out);

/* Bytes a scratch for `plan` holds (to budget memory before allocating). */
size_t core_seg_scratch_bytes(const core_seg_plan_t* plan);

/* Allocates a scratch for windows of `plan`: 0 or -ENOMEM. */
int core_seg_scratch_new(const core_seg_plan_t* plan, core_seg_scratch_t** out);

/* NULL-safe. */
void core_seg_scratch_free(core_seg_scratch_t* s);

/* Segments window `w` of `plan`, writing labels 0-2 into the core of `w` in
 * `mask` (the full-resolution ZYX mask, shape plan->shape) and nothing
 * else. Concurrent calls on distinct windows with distinct scratches are
 * safe. 0, -EINVAL (the input's shape is not the plan's, or `w` is not a
 * window of it) or the input's read error (the core is then unwritten). */
int core_seg_window(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const core_seg_stats_t* st,
                    const core_seg_plan_t* plan,
                    const core_seg_window_t* w,
                    core_seg_scratch_t* scratch,
                    uint8_t* mask);

/* The final pass, after every window: connected components over the whole
 * mask, in place (see the top of this file); reads the input again only
 * around compact components. `sum` may be NULL. 0, -EINVAL, -ENOMEM or the
 * input's read error (the mask is then the windows' output, untouched or
 * partly relabelled). */
int core_seg_finish(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const core_seg_stats_t* st,
                    uint8_t* mask,
                    core_seg_summary_t* sum);

/* Stats, every window in order, then the final pass, on this thread. */
int core_seg_run(const core_seg_input_t* in,
                 const core_seg_params_t* p,
                 uint8_t* mask,
                 core_seg_summary_t* sum);

/* The smoothed volume (Gaussian of sd p->sigma, input clamped at the
 * borders) over the box [lo, lo + n) into `out` (n[0]*n[1]*n[2] floats, X
 * fastest): what the windows threshold, exposed for tests and tools. 0,
 * -EINVAL, -ENOMEM or the input's read error. */
int core_seg_smooth(const core_seg_input_t* in,
                    const core_seg_params_t* p,
                    const uint32_t lo[3],
                    const uint32_t n[3],
                    float* out);

#endif
