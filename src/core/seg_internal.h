/* seg_internal.h: what the files of the classic segmenter share
 * (seg_classic.c: parameters, plan, windows; seg_filter.c: input, Gaussian,
 * local-peak and curvature tests; seg_morph.c: distance transforms and
 * growth; seg_stats.c: robust statistics; seg_cc.c: components of the
 * whole mask; seg_label.c: the final pass). Boxes are dense float or byte
 * arrays of n[0] x n[1] x n[2] voxels, X fastest. */
#ifndef CORE_SEG_INTERNAL_H
#define CORE_SEG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/seg_classic.h"

/* Largest smoothing sd accepted, hence the kernel radius ceil(3 * 8). */
#define CORE_SEG_SIGMA_MAX 8.0f
#define CORE_SEG_KERNEL_MAX 24u

typedef struct {
  uint32_t r;                           /* taps -r..r */
  float w[2 * CORE_SEG_KERNEL_MAX + 1]; /* w[r + i], sums to 1 */
} core_seg_kernel_t;

/* A normalised Gaussian of sd `sigma` (0: the identity), radius
 * ceil(3 sigma). */
void core_seg_kernel_init(core_seg_kernel_t* k, float sigma);

/* True when the input names a supported mode, has exactly one of data and
 * read, and a valid shape. */
bool core_seg_input_ok(const core_seg_input_t* in);

/* Floats of `tmp` that core_seg_smooth_box() needs for a box of `n`. */
size_t core_seg_smooth_tmp_floats(const uint32_t n[3], uint32_t r);

/* Smooths the input over the box [lo, lo + n) (inside the volume) into
 * `out`; voxels beyond the volume read as the nearest border voxel, and
 * non-finite values as 0. Each output voxel is a fixed sum over its own
 * neighbourhood, so any box gives the same value bit for bit. An input
 * without data is read plane by plane into `tmp`. 0, or the input's read
 * error (`out` is then partly written). */
int core_seg_smooth_box(const core_seg_input_t* in,
                        const core_seg_kernel_t* k,
                        const uint32_t lo[3],
                        const uint32_t n[3],
                        float* out,
                        float* tmp);

/* s[v] = 1 where d[v] > 0, d[v] >= floor and d[v] >= fraction * (the
 * largest d in the cube of half edge r around v, clipped to the box), else
 * 0. `tmp` holds 2 * n[0]*n[1]*n[2] floats. */
void core_seg_peak_threshold(const float* d,
                             const uint32_t n[3],
                             uint32_t r,
                             float floor,
                             float fraction,
                             uint8_t* s,
                             float* tmp);

/* True when the field d curves down in every direction at voxel i of the
 * box by more than c per voxel^2 (every eigenvalue of its Hessian at step
 * h, coordinates clamped into the box, < -c): a blob's centre, not a sheet
 * (flat along it), two sheets side by side or a crossing of sheets (flat
 * along the line). */
bool core_seg_curved_all_ways(const float* d,
                              const uint32_t n[3],
                              size_t i,
                              uint32_t h,
                              float c);

/* A value no voxel reaches or passes through in core_seg_chamfer(). */
#define CORE_SEG_BARRIER 255u

/* Faces of a box, for core_seg_chamfer(). */
enum {
  CORE_SEG_EDGE_Z0 = 1,
  CORE_SEG_EDGE_Z1 = 2,
  CORE_SEG_EDGE_Y0 = 4,
  CORE_SEG_EDGE_Y1 = 8,
  CORE_SEG_EDGE_X0 = 16,
  CORE_SEG_EDGE_X1 = 32
};

/* Two-pass 3-4-5 chamfer transform in place: each voxel valued 1..cap
 * becomes min(cap, its distance to the nearest 0 voxel through voxels that
 * are not CORE_SEG_BARRIER), in thirds of a voxel; 0 and barrier voxels
 * stay. Beyond the faces in `edges` lie 0 voxels (the volume's border:
 * structures end there), beyond the others nothing. cap <= 250. */
void core_seg_chamfer(uint8_t* v,
                      const uint32_t n[3],
                      uint8_t cap,
                      unsigned edges);

/* Grows `label` from the voxels of lab that hold it into voxels where
 * allowed[v] != 0 and lab[v] == 0, by up to `steps` 6-connected layers,
 * only downhill in d (a voxel joins from a neighbour at least as dark), so
 * a blob stops at its foot instead of flowing along a membrane it sits on.
 * `queue` holds n[0]*n[1]*n[2] entries. Returns the voxels added. */
uint64_t core_seg_grow(uint8_t* lab,
                       const uint32_t n[3],
                       const uint8_t* allowed,
                       const float* d,
                       uint8_t label,
                       uint32_t steps,
                       uint32_t* queue);

/* The step of the curvature test at blob cores found by their depth. */
uint32_t core_seg_core_step(const core_seg_params_t* p);

/* Voxels of context each side of a window core the morphology needs (the
 * smoothing needs its kernel radius more). */
uint32_t core_seg_halo_morph(const core_seg_params_t* p);

/* Runs and components of the final pass (seg_cc.c). */
typedef struct {
  uint32_t row;    /* z * ny + y */
  uint32_t x0, x1; /* [x0, x1) */
} core_seg_run_t;

typedef struct {
  core_seg_run_t* runs; /* in raster order */
  size_t count, cap;
  size_t* row_start; /* nz * ny + 1 entries: first run of each row */
  size_t* comp;      /* per run: its component id, 0..comps-1 */
  size_t comps;
  size_t* first; /* after core_seg_cc_group(): comps + 1 entries */
  size_t* order; /* runs of component c: order[first[c] .. first[c + 1]) */
} core_seg_cc_t;

typedef struct {
  uint64_t voxels, particle; /* size, and how many are label 2 */
  uint32_t lo[3], hi[3];     /* bounding box, inclusive */
} core_seg_comp_t;

/* Components of the non-zero voxels of `mask`. 0 or -ENOMEM;
 * core_seg_cc_free() either way. */
int core_seg_cc_build(core_seg_cc_t* r,
                      const uint8_t* mask,
                      const core_shape_t* s);

/* Allocates *out (r->comps entries, the caller frees) and measures each
 * component. 0 or -ENOMEM. */
int core_seg_cc_measure(const core_seg_cc_t* r,
                        const uint8_t* mask,
                        const core_shape_t* s,
                        core_seg_comp_t** out);

/* Fills r->first and r->order. 0 or -ENOMEM. */
int core_seg_cc_group(core_seg_cc_t* r);

/* The longest edge of a component's bounding box. */
uint32_t core_seg_comp_extent(const core_seg_comp_t* c);

void core_seg_cc_free(core_seg_cc_t* r);

#endif
