/* render.h: what a render is and what runs on the worker pool: the mask
 * synthesised straight into a raw frame, its base64 (and zstd) frames, and
 * for the final render the full mask, its statistics and the MRC artifact.
 * A srv_render_t is a snapshot: the worker never touches the job. The loop
 * side (ticks, publishing) is engine.c. */
#ifndef SRV_RENDER_H
#define SRV_RENDER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/mask.h"
#include "core/preview_bin.h"
#include "net/frame.h"
#include "server/job.h"

/* Headroom of every preview frame: the envelope and the WebSocket header
 * are written in front of the payload on the loop thread. */
#define SRV_FRAME_HEADROOM (CORE_PREVIEW_BIN_HEAD_MAX + NET_WS_MAX_HEADER_LEN)

typedef enum {
  SRV_RENDER_PREVIEW, /* a preview at some progress */
  SRV_RENDER_FINAL,   /* final preview + artifact + stats */
  SRV_RENDER_REBUILD  /* final preview of a restored job */
} srv_render_kind_t;

typedef struct srv_render_s {
  uv_work_t req;
  srv_job_t* job; /* a reference; loop thread only */
  void* run;      /* the engine run it belongs to (engine.c's), NULL: rebuild */
  srv_render_kind_t kind;
  /* Inputs, copied from the job so the worker never touches it. */
  core_mask_spec_t spec;
  double progress;
  uint32_t scale;
  uint64_t tick;
  core_shape_t preview_shape;
  double voxel_size[3];
  char artifact_path[1200];
  bool want_zstd;
  net_frame_pool_t* pool; /* a reference, or NULL: frames come from malloc */
  /* The job's chunk pass riding on this render (chunks.h), or NULL: run
   * on the full-resolution mask at the same progress and tick. */
  struct srv_chunk_pass_s* chunk_pass;
  /* Outputs: per encoding, the payload with headroom for the envelope and
   * the WebSocket header (base64: text body + suffix; raw: the voxels;
   * zstd: one zstd frame). NULL for encodings not produced. */
  net_frame_t* frames[CORE_ENC_COUNT];
  uint64_t counts[3];
  uint64_t artifact_bytes;
  int err;
  const char* err_what;
  uint64_t render_ns;
} srv_render_t;

/* The worker side of a render (uv_work_cb): fills r->frames (and, for the
 * final render, r->counts, r->artifact_bytes) or sets r->err/r->err_what. */
void srv_render_work(uv_work_t* req);

/* A preview frame of `len` payload bytes with SRV_FRAME_HEADROOM, from
 * `pool` (NULL: malloc). Any thread. NULL when out of memory. */
net_frame_t* srv_frame_for(net_frame_pool_t* pool, size_t len);

/* From frames[CORE_ENC_RAW] (the preview voxels), encodes the base64 text
 * body (with its suffix) and, when `want_zstd`, one zstd frame, into the
 * other entries. Worker thread. Returns 0, -ENOMEM or -EIO. */
int srv_frames_encode(net_frame_t* frames[CORE_ENC_COUNT],
                      net_frame_pool_t* pool,
                      bool want_zstd);

/* Drops the frames the render still holds. */
void srv_render_release_frames(srv_render_t* r);

/* Frees a render: its frames, if still held, and its pool reference. */
void srv_render_free(srv_render_t* r);

#endif
