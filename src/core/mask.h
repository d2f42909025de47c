/* mask.h: the simulated inference engine's masks. Deterministic for a given
 * (spec, progress, tick), so previews, the final mask and tests agree. Pure
 * and re-entrant: renders run on worker threads. */
#ifndef CORE_MASK_H
#define CORE_MASK_H

#include <stdint.h>

#include "core/downsample.h"
#include "core/job.h"
#include "core/shape.h"

/* Edge of the cubic sliding windows that `blobs` reveals one at a time, in
 * volume voxels; windows are visited in Z, Y, X order. */
#define CORE_MASK_WINDOW 32u

typedef struct {
  core_shape_t shape; /* full-resolution volume shape */
  core_pattern_t pattern;
  uint64_t seed;
} core_mask_spec_t;

/* Renders the mask as inference sees it at `progress` (0..1), downsampled by
 * `scale` (nearest-origin, see shape.h), into `out`, which holds
 * core_shape_voxels(core_shape_downsample(shape, scale)) bytes.
 * random: i.i.d. 0/1 from (seed, tick), fresh for each tick, whatever the
 * progress. blobs: the structures of the phantom of (shape, seed) (label 1
 * its vesicle membranes, 2 its particles) inside the first
 * floor(progress * windows) windows, 0 elsewhere; at progress 1 the
 * complete mask, which segments `cryomamba phantom --seed` exactly. */
void core_mask_render(const core_mask_spec_t* spec,
                      double progress,
                      uint32_t scale,
                      uint64_t tick,
                      uint8_t* out);

/* Full-resolution planes [z0, z1) of the mask core_mask_render() draws at
 * scale 1 for (spec, progress, tick), into `out` ((z1 - z0) planes), so a
 * caller needing part of the mask does not hold all of it. */
void core_mask_render_planes(const core_mask_spec_t* spec,
                             double progress,
                             uint64_t tick,
                             uint32_t z0,
                             uint32_t z1,
                             uint8_t* out);

/* The full-resolution box outside which the masks at (pa, ta) and (pb, tb)
 * are equal (empty when they are): random, everything unless the ticks are
 * the same; blobs, the windows shown at one progress and not the other. */
core_box_t core_mask_changed_box(const core_mask_spec_t* spec,
                                 double pa,
                                 uint64_t ta,
                                 double pb,
                                 uint64_t tb);

/* Tick value used for the final (completed) mask of a random job. */
#define CORE_MASK_FINAL_TICK UINT64_MAX

/* Adds to counts[v] the number of bytes equal to v, for v < n_labels.
 * Returns the number of bytes >= n_labels (0 for a well-formed mask). */
uint64_t core_mask_count_labels(const uint8_t* mask,
                                uint64_t len,
                                uint64_t* counts,
                                unsigned n_labels);

#endif
