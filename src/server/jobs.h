/* jobs.h: the job registry and job events. Creating, finding, cancelling and
 * describing jobs; assigning each event its seq and fanning its one shared
 * frame out to every subscriber. Not here: the simulated inference that
 * moves jobs along (engine.c), storage (store.c). Loop thread only. */
#ifndef SRV_JOBS_H
#define SRV_JOBS_H

#include <jansson.h>

#include "core/job_request.h"
#include "server/ctx.h"

/* Finds a job by its id (`len` bytes). NULL when unknown. */
srv_job_t* srv_job_find(srv_ctx_t* ctx, const char* id, size_t len);

/* Creates a queued job for a validated request whose volume is resolved
 * (`shape`, `voxel_size`, `volume_path` may be NULL), persists it and
 * starts it when a slot is free. Returns 0 or -ENOMEM. */
int srv_job_create(srv_ctx_t* ctx,
                   const core_job_request_t* req,
                   const core_shape_t* shape,
                   const double voxel_size[3],
                   const char* volume_path,
                   srv_job_t** out);

/* Restores a job from its stored JSON (store.c at start-up); a job that was
 * running is marked failed ("interrupted"), a queued one queues again.
 * Returns 0 or -EINVAL. */
int srv_job_restore(srv_ctx_t* ctx, const json_t* stored);

/* Cancels a queued or running job: subscribers get `cancelled`. Returns 0
 * or -EALREADY when the job already finished. */
int srv_job_cancel(srv_job_t* job);

/* Moves the job along a legal edge, stamps times, tells subscribers
 * (`state` event for queued->running) and persists. Terminal edges are
 * taken by srv_job_finish(). */
void srv_job_set_running(srv_job_t* job);

/* Ends the job in a terminal state and publishes its terminal message
 * (`data` stolen: completed {...}, cancelled {...} or the error object);
 * frees its running slot and starts queued jobs. */
void srv_job_finish(srv_job_t* job, core_job_state_t state, json_t* data);

/* The job object of the REST API (new reference, NULL on ENOMEM). */
json_t* srv_job_to_json(const srv_job_t* job);

/* Full persisted record: the job object plus internal fields. */
json_t* srv_job_to_record(const srv_job_t* job);

/* Encodes an event with the job's next seq into a sealed text frame (refs
 * 1, the caller's). Steals `data`. NULL on ENOMEM. */
net_frame_t* srv_job_event_frame(srv_job_t* job,
                                 const char* type,
                                 json_t* data);

/* Queues `frame` to every subscriber; the frame is shared, never copied. */
void srv_job_broadcast(srv_job_t* job, net_frame_t* frame, net_wq_class_t cls);

/* The latest preview frame for a subscriber's encoding, or NULL. */
net_frame_t* srv_job_preview_for(const srv_job_t* job, core_encoding_t enc);

/* Queues the latest preview to every subscriber in its own encoding. */
void srv_job_broadcast_preview(srv_job_t* job);

/* Convenience: event_frame + broadcast + unref. */
void srv_job_publish(srv_job_t* job,
                     const char* type,
                     json_t* data,
                     net_wq_class_t cls);

/* Starts queued jobs, oldest first, while running slots are free. */
void srv_jobs_schedule(srv_ctx_t* ctx);

/* Saves the job's record (asynchronously, in order). */
void srv_job_persist(srv_job_t* job);

/* Keeps the final previews of completed jobs nobody watches within
 * cfg.preview_cache_bytes, dropping the oldest first; they are rendered
 * again when asked for (engine.c). */
void srv_jobs_trim_previews(srv_ctx_t* ctx);

/* Frees every job (server exit, after the loop stopped). */
void srv_jobs_free_all(srv_ctx_t* ctx);

/* The artifacts array: the mask once written, else empty (new ref). */
json_t* srv_job_artifacts_json(const srv_job_t* job);

/* Path of the job's mask artifact under the state directory, into `out`. */
int srv_job_artifact_path(const srv_job_t* job, char* out, size_t cap);

#endif
