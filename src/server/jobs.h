/* jobs.h: the job registry and each job's state machine. Creating, finding,
 * listing, cancelling, deleting and retiring jobs; their seq-numbered events
 * and terminal messages, published through the job's hub topic. Every
 * acknowledgement (create, cancel, delete, and the terminal message) waits
 * for the store's commit. This file knows neither connections nor engines:
 * engines implement srv_engine_ops_t and post their results here; sinks
 * register on job->topic. Loop thread only. */
#ifndef SRV_JOBS_H
#define SRV_JOBS_H

#include <jansson.h>

#include "core/job_request.h"
#include "server/job.h"

/* An acknowledgement's outcome: status 0 once durable, else negative (the
 * job then does not exist, for a create). */
typedef void (*srv_job_ack_cb)(void* arg, srv_job_t* job, int status);

/* Finds a registered job by its id (`len` bytes), O(1). NULL when unknown. */
srv_job_t* srv_job_find(srv_ctx_t* ctx, const char* id, size_t len);

/* Creates a queued job for a validated request whose volume and engine
 * are resolved (`volume_path` may be NULL). The job is registered, scheduled
 * and cb'd with status 0 once its record is committed, or cb'd with a negative
 * status and freed. Returns 0 (cb will run), -EAGAIN (queue full: cb will
 * not run) or -ENOMEM. */
int srv_job_create(srv_ctx_t* ctx,
                   const core_job_request_t* req,
                   const srv_engine_t* engine,
                   const core_shape_t* shape,
                   const double voxel_size[3],
                   const char* volume_path,
                   srv_job_ack_cb cb,
                   void* arg);

/* A queued job built from a request as srv_job_create() builds it (a new
 * id, now as created_us), neither registered nor stored: a cluster
 * gateway's, for its record (srv_job_to_record). The caller unrefs it.
 * NULL when out of memory. */
srv_job_t* srv_job_new_detached(srv_ctx_t* ctx,
                                const core_job_request_t* req,
                                const srv_engine_t* engine,
                                const core_shape_t* shape,
                                const double voxel_size[3],
                                const char* volume_path);

/* A job built from its stored record, neither registered nor run: a
 * cluster gateway's mirror, whose topic fans out the events Redis
 * publishes (cluster_sub.c). NULL when out of memory or a bad record. */
srv_job_t* srv_job_mirror(srv_ctx_t* ctx, const json_t* rec);

/* Restores a job from its stored record at start-up (the store's query is
 * closed by then), run by `engine` (the registry's for the record's
 * params.engine); a job that was running is failed ("interrupted"), a
 * queued one queues again. Returns 0 or -EINVAL (the record is skipped). */
int srv_job_restore(srv_ctx_t* ctx,
                    const json_t* rec,
                    const srv_engine_t* engine);

/* Cancels a queued or running job; cb once the cancellation is durable.
 * Returns 0, or -EALREADY when the job already finished or is finishing. */
int srv_job_cancel(srv_job_t* job, srv_job_ack_cb cb, void* arg);

/* Deletes a finished job (record, previews, artifact); its sinks are told
 * the job is gone once the removal is durable. Returns 0, or -EBUSY when
 * the job has not finished. */
int srv_job_delete(srv_job_t* job, srv_job_ack_cb cb, void* arg);

/* Engine side: queued -> running (a `state` event, persisted). */
void srv_job_set_running(srv_job_t* job);

/* Engine side: ends the job in a terminal state. For FAILED, `error` gives
 * code, message, hint and retryable (stolen; may be NULL otherwise). The
 * terminal message goes to sinks once the record is committed. */
void srv_job_finish(srv_job_t* job, core_job_state_t state, json_t* error);

/* Publishes a job event with the job's next seq (`data` stolen). */
void srv_job_publish(srv_job_t* job,
                     const char* type,
                     json_t* data,
                     net_wq_class_t cls);

/* Saves the job's record (no acknowledgement waits for it). */
void srv_job_persist(srv_job_t* job);

/* Starts queued jobs, oldest first, while running slots are free. */
void srv_jobs_schedule(srv_ctx_t* ctx);

/* Periodic: final previews beyond cfg.preview_cache_bytes leave memory
 * (oldest first; re-rendered on demand), and finished jobs beyond the
 * retention limits (age, count) are deleted. */
void srv_jobs_housekeeping(srv_ctx_t* ctx);

/* References for whoever keeps a job pointer across callbacks. */
srv_job_t* srv_job_ref(srv_job_t* job);
void srv_job_unref(srv_job_t* job);

/* Iteration, newest first: the job after `job` (NULL: the first), or NULL
 * at the end. */
srv_job_t* srv_jobs_next(srv_ctx_t* ctx, srv_job_t* job);

/* Frees every job (server exit, after the loop stopped). */
void srv_jobs_free_all(srv_ctx_t* ctx);

/* Path of the job's mask artifact under the state directory, into `out`. */
int srv_job_artifact_path(const srv_job_t* job, char* out, size_t cap);

#endif
