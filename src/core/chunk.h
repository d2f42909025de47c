/* chunk.h: the chunked mask of docs/protocol.md §11: a label pyramid of
 * CORE_CHUNK_LEVELS levels (scale 2^level, max downsampling), each cut into
 * cubic chunks of CORE_CHUNK_EDGE voxels; the grid arithmetic, the 28-byte
 * chunk message header, and the voxel moves both sides need (a chunk cut
 * from a dense box, placed into a dense level mask, a level folded 2x into
 * the next). Pure: shared by the server and the client library. */
#ifndef CORE_CHUNK_H
#define CORE_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/downsample.h"
#include "core/shape.h"

#define CORE_CHUNK_EDGE 32u
#define CORE_CHUNK_VOXELS (CORE_CHUNK_EDGE * CORE_CHUNK_EDGE * CORE_CHUNK_EDGE)
#define CORE_CHUNK_LEVELS 5u
#define CORE_CHUNK_HEAD_LEN 28u
#define CORE_CHUNK_MAGIC 0x434D4B31u /* "CMK1" */
#define CORE_CHUNK_FLAG_ZERO 1u

/* One level's chunk grid. */
typedef struct {
  unsigned level;
  core_shape_t shape; /* the level's voxels: ceil(volume / 2^level) */
  uint32_t n[3];      /* chunks per axis */
  uint64_t count;     /* n[0] * n[1] * n[2] */
} core_chunk_grid_t;

typedef struct {
  uint8_t level;
  uint8_t flags;
  uint32_t c[3]; /* cz, cy, cx */
  uint32_t version;
  uint32_t payload_len;
} core_chunk_head_t;

/* The grid of `level` (< CORE_CHUNK_LEVELS) for a volume of shape `vol`. */
core_chunk_grid_t core_chunk_grid(const core_shape_t* vol, unsigned level);

/* Chunk coordinates <-> its index in the grid (C order). */
uint64_t core_chunk_index(const core_chunk_grid_t* g, const uint32_t c[3]);
void core_chunk_coords(const core_chunk_grid_t* g, uint64_t i, uint32_t c[3]);

/* The level voxels chunk `c` holds (half-open; edge chunks are smaller). */
core_box_t core_chunk_box(const core_chunk_grid_t* g, const uint32_t c[3]);

/* Voxels in a box. */
uint64_t core_box_voxels(const core_box_t* b);

/* The level of a scale: 1 -> 0, 2 -> 1, ... 16 -> 4; -1 for any other. */
int core_chunk_level_of_scale(uint32_t scale);

/* Writes the header (big-endian) into out[0..CORE_CHUNK_HEAD_LEN). */
void core_chunk_head_write(const core_chunk_head_t* h, uint8_t* out);

/* Parses a whole chunk message of `len` bytes: the header, and checks that
 * the payload is exactly `len` - 28 bytes, that a zero chunk has none and
 * the level is valid. Returns 0 or -1. */
int core_chunk_head_parse(const uint8_t* msg, size_t len, core_chunk_head_t* h);

/* True when every byte is 0. */
bool core_bytes_all_zero(const uint8_t* p, size_t n);

/* Copies box `b` out of `src`, a dense region `src_box` of some level
 * (C order, src_box's own extents), into `out` (b's extents, C order).
 * `b` lies within `src_box`. */
void core_chunk_cut(const uint8_t* src,
                    const core_box_t* src_box,
                    const core_box_t* b,
                    uint8_t* out);

/* Places `voxels` (box b's extents, C order) into the dense level mask
 * `dst` of shape `s`. `b` lies within `s`. */
void core_chunk_place(uint8_t* dst,
                      const core_shape_t* s,
                      const core_box_t* b,
                      const uint8_t* voxels);

/* Folds `src`, a dense box `src_box` of level l, into the box `dst_box` of
 * level l + 1 (dst = max over each 2x2x2 block, clipped to `src_shape`, the
 * level-l shape). src_box must cover every level-l voxel of dst_box's
 * blocks: [2 lo, min(2 hi, src_shape)). */
void core_chunk_fold2(const uint8_t* src,
                      const core_box_t* src_box,
                      const core_shape_t* src_shape,
                      const core_box_t* dst_box,
                      uint8_t* dst);

#endif
