/* mask_run.h: the server's side of the mask model, for every engine but
 * sim: the job's full-resolution mask (uint8, C order ZYX) is a file the
 * server creates and sizes (state_dir/artifacts/<id>-mask.u8.tmp); the
 * engine writes labels into it and reports the regions it wrote and its
 * progress; the server makes previews from the mask at preview_hz on the
 * worker pool (only when a region was reported since the last one),
 * publishes them through the hub exactly as sim's (preview_pub.c), and at
 * the end counts the labels, writes the MRC artifact and completes the job.
 * The worker side is mask_render.c. Loop thread only.
 *
 * An engine (exec: engine_exec.c; a built-in such as classic) uses it so:
 *   srv_mask_run_start(job, on_ready, arg, &mr);  mask file on the pool
 *   on_ready(arg): write into srv_mask_run_path(mr) (any thread), then
 *   srv_mask_run_region(mr, &box) / srv_mask_run_progress(mr, p, msg) on
 *   the loop as it goes; srv_mask_run_finish(mr) once every label is
 *   written (the job completes after the final pass, or fails if the mask
 *   is wrong); and in its ops->stop, srv_mask_run_release(mr): from then on
 *   the run publishes nothing and frees itself (removing the mask file)
 *   once no render uses it. */
#ifndef SRV_MASK_RUN_H
#define SRV_MASK_RUN_H

#include <jansson.h>

#include "core/downsample.h"
#include "server/job.h"

typedef struct srv_mask_run_s srv_mask_run_t;

/* The mask file is ready. Not called when it could not be made (the run
 * then fails the job itself) nor after srv_mask_run_release(). */
typedef void (*srv_mask_ready_cb)(void* arg);

/* Starts the job's mask run: the mask file is created and sized on the
 * pool, then cb runs on the loop and previews start ticking. Returns 0
 * (*out set) or -ENOMEM. */
int srv_mask_run_start(srv_job_t* job,
                       srv_mask_ready_cb cb,
                       void* arg,
                       srv_mask_run_t** out);

/* The mask file's absolute or state-dir-relative path (valid until the
 * run is released). */
const char* srv_mask_run_path(const srv_mask_run_t* mr);

/* The engine wrote box `b` (half-open, within the volume): the next tick
 * refreshes that part of the preview. Returns 0 or -EINVAL (not within
 * the volume: the engine's protocol error). */
int srv_mask_run_region(srv_mask_run_t* mr, const core_box_t* b);

/* Progress 0..1 (clamped) and an optional message (NULL: keep the last),
 * published at the next tick if it changed. */
void srv_mask_run_progress(srv_mask_run_t* mr, double p, const char* message);

/* The engine's own statistics (an object, stolen), kept in the job's stats
 * as "engine". */
void srv_mask_run_set_stats(srv_mask_run_t* mr, json_t* stats);

/* The engine is about to change labels it already reported (a final pass
 * of its own over the mask, in place): no preview render starts from now
 * on, so none shows a half-rewritten mask, and cb(arg) runs on the loop
 * once none is in flight (never inside this call, never after
 * srv_mask_run_release()). Progress is still published. Call once, then
 * srv_mask_run_finish() when the mask is final. */
void srv_mask_run_pause(srv_mask_run_t* mr, srv_mask_ready_cb cb, void* arg);

/* The engine is done writing: waits for a preview in flight, then the
 * final pass; the job then completes (srv_job_finish), or fails when the
 * mask file is not the volume's size. */
void srv_mask_run_finish(srv_mask_run_t* mr);

/* The engine lets go (its ops->stop): nothing more is published; the run
 * frees itself, removing the mask file (and an artifact a final pass wrote
 * for a job that did not complete), once no render uses it. */
void srv_mask_run_release(srv_mask_run_t* mr);

/* ops->rebuild_preview of every mask engine: a completed job's final
 * preview made again from its artifact, then srv_topic_wake(). */
void srv_mask_rebuild_preview(srv_job_t* job);

#endif
