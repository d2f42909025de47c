/* jobs_end.c: a job's life after its create (jobs.c): it runs, it ends
 * (finish, cancel; the terminal message only once its record is
 * committed), and it is deleted with its files. Loop thread only. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "server/job_json.h"
#include "server/jobs.h"
#include "server/jobs_int.h"
#include "server/store.h"


/* Moves the job to `state`, keeping the per-state counts. */
static void set_state(srv_job_t* job, core_job_state_t state) {
  assert(core_job_transition_is_valid(job->state, state));
  srv_jobs_count_state(job->ctx, job->state, -1);
  job->state = state;
  srv_jobs_count_state(job->ctx, state, +1);
}


/* ---- transitions ---- */

void srv_job_publish(srv_job_t* job,
                     const char* type,
                     json_t* data,
                     net_wq_class_t cls) {
  size_t len = 0;
  char* text =
      core_msg_encode(type, job->id, ++job->seq, srv_now_us(), data, &len);
  net_frame_t* frame = text != NULL ? net_frame_ws_text(text, len) : NULL;
  free(text);
  if (frame == NULL) {
    return;
  }
  job->ctx->metrics.events_published++;
  srv_topic_publish(&job->topic, frame, cls);
  net_frame_unref(frame);
}


void srv_job_set_running(srv_job_t* job) {
  core_job_state_t previous = job->state;
  set_state(job, CORE_JOB_RUNNING);
  job->started_us = job->updated_us = srv_now_us();
  srv_job_publish(job, "state",
                  json_pack("{s:s, s:s}", "state", "running", "previous",
                            core_job_state_name(previous)),
                  NET_WQ_ESSENTIAL);
  srv_log(&job->ctx->log, SRV_LOG_INFO, "job.running", "s:job_id", job->id,
          NULL);
  srv_job_persist(job);
}


static void set_error(srv_job_t* job, const json_t* error) {
  snprintf(job->error_code, sizeof(job->error_code), "%s",
           json_string_value(json_object_get(error, "code")) ?: "failed");
  snprintf(job->error_message, sizeof(job->error_message), "%s",
           json_string_value(json_object_get(error, "message")) ?: "");
  snprintf(job->error_hint, sizeof(job->error_hint), "%s",
           json_string_value(json_object_get(error, "hint")) ?: "");
  const json_t* r = json_object_get(error, "retryable");
  job->error_retryable = r == NULL || json_is_true(r);
}


/* The terminal record is durable (or not): only now may anyone hear of it. */
static void after_finish(srv_job_t* job,
                         int status,
                         srv_job_ack_cb cb,
                         void* arg) {
  srv_ctx_t* ctx = job->ctx;
  job->is_ending = false;
  ctx->endings_pending--;
  if (status != 0) {
    /* Not recorded: what is on disk still says queued or running, which a
     * restart reports as interrupted. Tell subscribers the same now. */
    srv_log(&ctx->log, SRV_LOG_ERROR, "job.finish_not_durable", "s:job_id",
            job->id, "s:state", core_job_state_name(job->state), NULL);
    srv_jobs_count_state(ctx, job->state, -1);
    job->state = CORE_JOB_FAILED;
    srv_jobs_count_state(ctx, job->state, +1);
    snprintf(job->error_code, sizeof(job->error_code), "store_failed");
    snprintf(job->error_message, sizeof(job->error_message),
             "the server could not record this job's end: %s",
             strerror(-status));
    snprintf(job->error_hint, sizeof(job->error_hint),
             "check the server's disk; submit the job again");
    job->error_retryable = true;
    job->seq++;
  }
  net_frame_t* frame = srv_job_terminal_frame(job);
  if (frame != NULL) {
    ctx->metrics.events_published++;
    srv_topic_set_terminal(&job->topic, frame);
  }
  srv_log(&ctx->log, SRV_LOG_INFO, "job.finished", "s:job_id", job->id,
          "s:state", core_job_state_name(job->state), "i:previews",
          (int64_t) job->previews_sent, NULL);
  if (cb != NULL) {
    cb(arg, job, status);
  }
}


static void finish(srv_job_t* job,
                   core_job_state_t state,
                   json_t* error,
                   srv_job_ack_cb cb,
                   void* arg) {
  assert(!job->is_ending && !core_job_state_is_terminal(job->state));
  srv_ctx_t* ctx = job->ctx;
  job->engine->ops->stop(job);
  job->state_before_end = job->state;
  set_state(job, state);
  job->is_ending = true;
  ctx->endings_pending++;
  job->finished_us = job->updated_us = srv_now_us();
  job->seq++; /* the terminal message's */
  if (state == CORE_JOB_FAILED) {
    set_error(job, error);
  }
  json_decref(error);
  srv_job_persist_then(job, after_finish, cb, arg);
  srv_jobs_schedule(ctx); /* the slot is free now */
}


void srv_job_finish(srv_job_t* job, core_job_state_t state, json_t* error) {
  finish(job, state, error, NULL, NULL);
}


int srv_job_cancel(srv_job_t* job, srv_job_ack_cb cb, void* arg) {
  if (core_job_state_is_terminal(job->state) || job->is_ending) {
    return -EALREADY;
  }
  finish(job, CORE_JOB_CANCELLED, NULL, cb, arg);
  return 0;
}


/* ---- delete ---- */

static void on_artifact_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


/* Removes the job's files off the loop: its artifact, a leftover
 * temporary, a mask engine's working mask and its engine log. */
static void unlink_artifacts(srv_job_t* job) {
  static const char* const suffixes[] = {"-mask.mrc", "-mask.mrc.tmp",
                                         "-mask.u8.tmp", "-engine.log"};
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    char path[1200];
    int n = snprintf(path, sizeof(path), "%s/artifacts/%s%s",
                     job->ctx->cfg.state_dir, job->id, suffixes[i]);
    uv_fs_t* req =
        n > 0 && (size_t) n < sizeof(path) ? malloc(sizeof(*req)) : NULL;
    if (req != NULL &&
        uv_fs_unlink(job->ctx->loop, req, path, on_artifact_unlinked) != 0) {
      free(req);
    }
  }
}


typedef struct {
  srv_job_t* job; /* a reference */
  srv_job_ack_cb cb;
  void* arg;
} delete_t;


static void after_delete(void* arg, int status) {
  delete_t* d = arg;
  srv_job_t* job = d->job;
  job->is_deleting = false;
  job->ctx->deletes_pending--;
  if (status == 0 && job->is_registered) {
    srv_job_unregister(job);
    unlink_artifacts(job);
    srv_topic_close(&job->topic); /* subscribers learn the job is gone */
    job->ctx->metrics.jobs_deleted_total++;
    srv_job_unref(job); /* the registry's */
  }
  if (d->cb != NULL) {
    d->cb(d->arg, job, status);
  }
  free(d);
  srv_job_unref(job);
}


int srv_job_delete(srv_job_t* job, srv_job_ack_cb cb, void* arg) {
  if (!core_job_state_is_terminal(job->state) || job->is_ending) {
    return -EBUSY;
  }
  if (job->is_deleting) {
    return -EALREADY;
  }
  delete_t* d = job->ctx->store != NULL ? malloc(sizeof(*d)) : NULL;
  if (d == NULL) {
    return -ENOMEM;
  }
  *d = (delete_t){srv_job_ref(job), cb, arg};
  job->is_deleting = true;
  job->ctx->deletes_pending++;
  if (srv_store_delete(job->ctx->store, job->id, after_delete, d) != 0) {
    job->is_deleting = false;
    job->ctx->deletes_pending--;
    srv_job_unref(job);
    free(d);
    return -ENOMEM;
  }
  return 0;
}
