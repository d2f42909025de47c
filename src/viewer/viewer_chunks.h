/* viewer_chunks.h: the viewer's own copy of a chunked delta subscription's
 * masks (docs/protocol.md 11) and the overlay it gives the slice views: a
 * coarse level for the whole volume, and, below it, the plane levels the
 * server sends for the view, each with a flag per chunk "received". A
 * voxel shows the plane level's label where its chunk was received, the
 * coarse label (upsampled with the server's alignment) elsewhere: max
 * downsampling makes a coarse 0 a full-resolution 0, so a chunk never sent
 * at the plane level is either all 0 or not sent yet. Also the choice of
 * the coarse level and the coalescing of view messages. No GTK; the viewer
 * calls these on the main thread. */
#ifndef VIEWER_CHUNKS_H
#define VIEWER_CHUNKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/chunk.h"
#include "core/shape.h"
#include "viewer/viewer_render.h"

/* The coarse level's mask is at most this many bytes when a scale <= 16
 * allows it. */
#define VIEWER_CHUNKS_COARSE_BYTES (16u << 20)

typedef struct {
  core_shape_t vol; /* full resolution */
  unsigned level;   /* the coarse level (scale 2^level) */
  /* Per level: the mask (the level's shape, C order; NULL until a chunk
   * of it arrives, zeroed pages until written) and, below the coarse
   * level, one byte per chunk: 1 once received since the last keyframe. */
  uint8_t* mask[CORE_CHUNK_LEVELS];
  core_chunk_grid_t grid[CORE_CHUNK_LEVELS];
  uint8_t* known[CORE_CHUNK_LEVELS];
  int plane_level;   /* the level shown where known; -1: coarse only */
  uint64_t labelled; /* non-zero voxels of the coarse level */
} viewer_chunks_t;

/* The coarse scale to subscribe at for volume `vol`: the smallest power of
 * two whose mask fits VIEWER_CHUNKS_COARSE_BYTES, and at least the largest
 * power of two <= preview_scale (0: unknown). 1..16. */
uint32_t viewer_chunks_pick_scale(const core_shape_t* vol,
                                  uint32_t preview_scale);

/* Sets up `c` for `vol` at coarse `scale` (1, 2, 4, 8, 16) with the coarse
 * mask allocated (zero). Returns 0, -EINVAL or -ENOMEM. */
int viewer_chunks_init(viewer_chunks_t* c,
                       const core_shape_t* vol,
                       uint32_t scale);

/* Frees every mask (zeroed `c` too). */
void viewer_chunks_free(viewer_chunks_t* c);

/* A keyframe: every mask zero, no plane-level chunk received. */
void viewer_chunks_clear(viewer_chunks_t* c);

/* Copies the box [lo, hi) of level `scale` (its voxels) from `src`, that
 * level's dense mask of shape `src_shape` (the library's), into ours, and
 * marks its chunks received below the coarse level. Returns 0, -EINVAL (a
 * level other than the coarse one or one below it, a box or shape that is
 * not the level's) or -ENOMEM. */
int viewer_chunks_copy(viewer_chunks_t* c,
                       uint32_t scale,
                       const uint32_t lo[3],
                       const uint32_t hi[3],
                       const uint8_t* src,
                       const uint32_t src_shape[3]);

/* The label shown at full-resolution voxel (z, y, x). */
uint8_t viewer_chunks_label(const viewer_chunks_t* c,
                            uint32_t z,
                            uint32_t y,
                            uint32_t x);

/* The labels of rectangle rect = {col, row, width, height} of slice
 * `index` along `axis` into `out` (a whole slice image, `stride` bytes a
 * row; the rectangle's pixels only are written). */
void viewer_chunks_slice(const viewer_chunks_t* c,
                         viewer_axis_t axis,
                         uint32_t index,
                         const uint32_t rect[4],
                         uint8_t* out,
                         uint32_t stride);

/* The rectangle of slice `index` along `axis` that the box [lo, hi) of
 * level `scale` covers at full resolution; false when the slice does not
 * cut it. */
bool viewer_chunks_rect(const core_shape_t* vol,
                        uint32_t scale,
                        const uint32_t lo[3],
                        const uint32_t hi[3],
                        viewer_axis_t axis,
                        uint32_t index,
                        uint32_t rect[4]);

/* The whole overlay at full resolution into `out` (vol voxels). */
void viewer_chunks_compose(const viewer_chunks_t* c, uint8_t* out);

/* ---- view messages: at most one per interval, the last always sent ---- */

typedef struct {
  int64_t interval_us;
  bool has_sent;
  int64_t sent_at_us;
  int64_t sent[3];
  double sent_zoom;
  bool is_pending; /* `want` waits for the interval to pass */
  int64_t want[3];
  double want_zoom;
} viewer_throttle_t;

void viewer_throttle_init(viewer_throttle_t* t, int64_t interval_us);

/* The view wanted at `now_us`. Returns true when it is to be sent now
 * (recorded as sent); else, when it differs from the last sent one, it is
 * kept pending and *wait_us says when viewer_throttle_due may send it
 * (0: nothing to send). */
bool viewer_throttle_want(viewer_throttle_t* t,
                          const int64_t view[3],
                          double zoom,
                          int64_t now_us,
                          int64_t* wait_us);

/* The timer fired: true (view, zoom set, recorded as sent) when the pending
 * view is due; false with *wait_us > 0 when it is not yet, 0 when none. */
bool viewer_throttle_due(viewer_throttle_t* t,
                         int64_t now_us,
                         int64_t view[3],
                         double* zoom,
                         int64_t* wait_us);

#endif
