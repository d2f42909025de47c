/* mask_render.h: the worker side of a mask engine's previews and end
 * (mask_run.c is the loop side). A preview refreshes the part of the
 * run's preview buffer that the regions reported since the last one cover,
 * reading those rows of the mask file with pread (never a mapping: an
 * engine that truncates its file must not crash the server with SIGBUS),
 * then encodes it like any preview. The final pass reads the whole mask
 * once: checks its size, counts the labels, writes the MRC artifact (a
 * temporary file, fsync, rename), folds the final preview. A rebuild makes
 * a completed job's final preview again from its artifact. A render is a
 * snapshot: the worker touches only its srv_mask_render_t. */
#ifndef SRV_MASK_RENDER_H
#define SRV_MASK_RENDER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/downsample.h"
#include "core/preview_bin.h"
#include "net/frame.h"
#include "server/chunks.h"
#include "server/job.h"

typedef enum {
  SRV_MASK_PREVIEW, /* refresh `box` of the run's preview from the mask */
  SRV_MASK_FINAL,   /* the whole mask: stats, artifact, final preview */
  SRV_MASK_REBUILD  /* a completed job's final preview, from its artifact */
} srv_mask_render_kind_t;

typedef struct srv_mask_render_s {
  uv_work_t req;
  srv_job_t* job; /* a reference; loop thread only */
  void* run;      /* the srv_mask_run_t it belongs to; NULL: rebuild */
  srv_mask_render_kind_t kind;
  /* Inputs, copied from the job. */
  char mask_path[1200];     /* the engine's mask (preview, final) */
  char artifact_path[1200]; /* written (final) or read (rebuild) */
  core_shape_t shape;
  core_shape_t preview_shape;
  uint32_t scale;
  core_downsample_t method;
  double voxel_size[3];
  core_box_t box; /* preview: the full-resolution box to refresh */
  /* The preview as made so far: the run's buffer, borrowed while this is
   * the run's one render in flight (preview, final); a rebuild's own. */
  uint8_t* preview;
  bool owns_preview;
  bool want_zstd;
  net_frame_pool_t* pool; /* a reference, or NULL */
  /* The job's chunk pass riding on this render (chunks.h), or NULL: run
   * on the mask file (preview, final). */
  srv_chunk_pass_t* chunk_pass;
  /* Outputs. */
  net_frame_t* frames[CORE_ENC_COUNT];
  uint64_t counts[256];
  uint64_t artifact_bytes;
  int err;              /* 0 or a negative errno */
  bool is_engine_fault; /* the engine's mask is wrong, not the server */
  char why[256];        /* what went wrong, a sentence */
  uint64_t render_ns;
} srv_mask_render_t;

/* A render of `kind` for job (a reference is taken), NULL on ENOMEM. */
srv_mask_render_t* srv_mask_render_new(srv_job_t* job,
                                       srv_mask_render_kind_t kind);

/* The worker side (uv_work_cb). */
void srv_mask_render_work(uv_work_t* req);

/* Frees a render: frames still held, its pool and job references, an owned
 * preview. Loop thread. */
void srv_mask_render_free(srv_mask_render_t* r);

/* Path of the job's working mask file (state_dir/artifacts/<id>-mask.u8.tmp:
 * a *.tmp, so one a crash left behind is removed at start-up). */
int srv_mask_path(const srv_job_t* job, char* out, size_t cap);

#endif
