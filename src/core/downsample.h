/* downsample.h: an engine's label mask downsampled into its preview, one
 * full-resolution plane (or a band of its rows) at a time, so the server
 * can refresh only the part of a preview an engine reported writing.
 * Nearest-origin (a preview voxel is its block's first voxel, as
 * core_shape_downsample_u8) or max (its block's largest label: thin
 * membranes survive). Boxes are half-open [lo, hi) per axis, Z, Y, X.
 * Pure. */
#ifndef CORE_DOWNSAMPLE_H
#define CORE_DOWNSAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/job.h"
#include "core/shape.h"

typedef struct {
  uint32_t lo[3];
  uint32_t hi[3];
} core_box_t;

/* True when lo < hi <= shape on every axis. */
bool core_box_is_valid(const core_box_t* b, const core_shape_t* s);

/* True for the empty box (any hi <= lo). */
bool core_box_is_empty(const core_box_t* b);

/* The empty box. */
core_box_t core_box_empty(void);

/* Grows `acc` to also cover `b` (the smallest box holding both). */
void core_box_union(core_box_t* acc, const core_box_t* b);

/* The box of preview voxels whose blocks meet full-resolution box `b`:
 * lo / scale .. ceil(hi / scale). */
core_box_t core_box_to_preview(const core_box_t* b, uint32_t scale);

/* The rows of full-resolution plane `z` that preview box `pb` needs,
 * [*y_lo, *y_hi). False when the plane contributes nothing (nearest: z is
 * not the first plane of a block; either: z is outside pb's blocks). */
bool core_downsample_rows_needed(core_downsample_t m,
                                 const core_box_t* pb,
                                 uint32_t z,
                                 uint32_t scale,
                                 const core_shape_t* s,
                                 uint32_t* y_lo,
                                 uint32_t* y_hi);

/* Folds rows [y_lo, y_hi) of full-resolution plane `z` (`rows`: (y_hi -
 * y_lo) rows of s->d[2] voxels) into the preview `dst` (shape ceil(s /
 * scale)), within preview box `pb`. Nearest: block-origin voxels are
 * copied. Max: dst = max(dst, voxel); at the first plane of each block the
 * box's part of that preview plane is zeroed first, so a caller folds the
 * planes of a block in increasing z. */
void core_downsample_fold(core_downsample_t m,
                          const uint8_t* rows,
                          uint32_t z,
                          uint32_t y_lo,
                          uint32_t y_hi,
                          const core_shape_t* s,
                          uint32_t scale,
                          const core_box_t* pb,
                          uint8_t* dst);

#endif
