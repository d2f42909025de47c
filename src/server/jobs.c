/* jobs.c: the job registry and its records: alloc, find, references,
 * create and restore, scheduling. A job's life after its create (running,
 * its end, delete) is jobs_end.c, over jobs_int.h; housekeeping is
 * jobs_keep.c. See jobs.h. Loop thread only. A job is registered (listed,
 * found, scheduled) only once its first record is committed; its terminal
 * message goes out only once the terminal record is committed. Pending
 * store callbacks hold a job reference, so a job outlives every callback
 * that names it. */
#include "server/jobs.h"

#include <assert.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/chunks.h"
#include "server/job_json.h"
#include "server/jobs_int.h"
#include "server/store.h"


srv_job_t* srv_job_find(srv_ctx_t* ctx, const char* id, size_t len) {
  if (len != CORE_UUID_STR_LEN) {
    return NULL;
  }
  return core_idmap_get(&ctx->job_index, id);
}


static srv_job_t* job_alloc(srv_ctx_t* ctx) {
  srv_job_t* job = calloc(1, sizeof(*job));
  if (job == NULL) {
    return NULL;
  }
  job->ctx = ctx;
  job->refs = 1; /* the creator's, handed to the registry */
  core_list_init(&job->link);
  srv_topic_init(&job->topic, &ctx->held_bytes);
  return job;
}


srv_job_t* srv_job_ref(srv_job_t* job) {
  job->refs++;
  return job;
}


void srv_job_unref(srv_job_t* job) {
  assert(job->refs > 0);
  if (--job->refs > 0) {
    return;
  }
  assert(!job->is_registered && job->run == NULL);
  srv_topic_close(&job->topic);
  srv_chunks_free(job->chunks);
  free(job->volume_path);
  free(job->engine_params);
  json_decref(job->label_counts_json);
  json_decref(job->engine_stats);
  free(job);
}


void srv_jobs_count_state(srv_ctx_t* ctx, core_job_state_t state, int delta) {
  ctx->jobs_by_state[state] =
      (unsigned) ((int) ctx->jobs_by_state[state] + delta);
  if (state == CORE_JOB_QUEUED) {
    ctx->queued_count = (unsigned) ((int) ctx->queued_count + delta);
  } else if (state == CORE_JOB_RUNNING) {
    ctx->running_count = (unsigned) ((int) ctx->running_count + delta);
  }
}


/* Registers keeping ctx->jobs newest first. Restores come oldest first and
 * creates are newest, so the head is nearly always the place: O(1). */
static int job_register(srv_ctx_t* ctx, srv_job_t* job) {
  if (core_idmap_put(&ctx->job_index, job->id, job) != 0) {
    return -ENOMEM;
  }
  core_list_t* at = ctx->jobs.next;
  while (at != &ctx->jobs &&
         CORE_CONTAINER_OF(at, srv_job_t, link)->created_us > job->created_us) {
    at = at->next;
  }
  job->link.next = at;
  job->link.prev = at->prev;
  at->prev->next = &job->link;
  at->prev = &job->link;
  job->is_registered = true;
  ctx->job_count++;
  srv_jobs_count_state(ctx, job->state, +1);
  return 0;
}


void srv_job_unregister(srv_job_t* job) {
  srv_ctx_t* ctx = job->ctx;
  assert(job->is_registered);
  core_idmap_remove(&ctx->job_index, job->id);
  core_list_remove(&job->link);
  job->is_registered = false;
  ctx->job_count--;
  srv_jobs_count_state(ctx, job->state, -1);
}


/* ---- records and their acknowledgements ---- */

typedef struct {
  srv_job_t* job; /* a reference */
  srv_job_ack_cb cb;
  void* arg;
  void (*then)(srv_job_t* job, int status, srv_job_ack_cb cb, void* arg);
} commit_t;


static void on_committed(void* arg, int status) {
  commit_t* c = arg;
  srv_job_t* job = c->job;
  c->then(job, status, c->cb, c->arg);
  free(c);
  srv_job_unref(job);
}


/* Saves the job's record; then(job, status, cb, arg) runs after the commit
 * (or at once, with -ENOMEM, when it cannot even be queued). */
void srv_job_persist_then(srv_job_t* job,
                          void (*then)(srv_job_t*, int, srv_job_ack_cb, void*),
                          srv_job_ack_cb cb,
                          void* arg) {
  if (job->ctx->store == NULL) {
    then(job, -ESHUTDOWN, cb, arg); /* the store closed: nothing is durable */
    return;
  }
  commit_t* c = malloc(sizeof(*c));
  json_t* rec = c != NULL ? srv_job_to_record(job) : NULL;
  int err = rec != NULL ? 0 : -ENOMEM;
  if (err == 0) {
    *c = (commit_t){srv_job_ref(job), cb, arg, then};
    err = srv_store_save(job->ctx->store, job->id, rec, on_committed, c);
    json_decref(rec);
    if (err != 0) {
      srv_job_unref(job);
    }
  }
  if (err != 0) {
    free(c);
    then(job, err, cb, arg);
  }
}


void srv_job_persist(srv_job_t* job) {
  if (job->ctx->store == NULL) {
    return;
  }
  json_t* rec = srv_job_to_record(job);
  if (rec == NULL ||
      srv_store_save(job->ctx->store, job->id, rec, NULL, NULL) != 0) {
    srv_log(&job->ctx->log, SRV_LOG_ERROR, "store.save_failed", "s:job_id",
            job->id, NULL);
  }
  json_decref(rec);
}


/* ---- create ---- */

static void after_create(srv_job_t* job,
                         int status,
                         srv_job_ack_cb cb,
                         void* arg) {
  srv_ctx_t* ctx = job->ctx;
  ctx->creates_pending--;
  if (status == 0 && job_register(ctx, job) != 0) {
    status = -ENOMEM; /* durable but unlisted: it reappears at restart */
  }
  if (status != 0) {
    srv_log(&ctx->log, SRV_LOG_ERROR, "job.create_failed", "s:job_id", job->id,
            "s:error", strerror(-status), NULL);
    cb(arg, job, status);
    srv_job_unref(job); /* never registered: freed */
    return;
  }
  ctx->metrics.jobs_created_total++;
  srv_log(&ctx->log, SRV_LOG_INFO, "job.created", "s:job_id", job->id,
          "s:engine", job->params.engine, "s:pattern",
          core_pattern_name(job->params.pattern), "i:z",
          (int64_t) job->shape.d[0], "i:y", (int64_t) job->shape.d[1], "i:x",
          (int64_t) job->shape.d[2], NULL);
  cb(arg, job, 0);
  srv_jobs_schedule(ctx);
}


srv_job_t* srv_job_new_detached(srv_ctx_t* ctx,
                                const core_job_request_t* req,
                                const srv_engine_t* engine,
                                const core_shape_t* shape,
                                const double voxel_size[3],
                                const char* volume_path) {
  srv_job_t* job = job_alloc(ctx);
  if (job == NULL) {
    return NULL;
  }
  uint8_t random16[16];
  if (RAND_bytes(random16, sizeof(random16)) != 1 ||
      (volume_path != NULL &&
       (job->volume_path = strdup(volume_path)) == NULL) ||
      (req->engine_params[0] != '\0' &&
       (job->engine_params = strdup(req->engine_params)) == NULL)) {
    srv_job_unref(job);
    return NULL;
  }
  core_uuid4_format(random16, job->id);
  job->state = CORE_JOB_QUEUED;
  job->params = req->params;
  job->engine = engine;
  if (req->has_volume_id) {
    memcpy(job->volume_id, req->volume_id, sizeof(job->volume_id));
  }
  job->shape = *shape;
  job->preview_shape = core_shape_downsample(shape, req->params.preview_scale);
  memcpy(job->voxel_size, voxel_size, sizeof(job->voxel_size));
  job->created_us = job->updated_us = srv_now_us();
  return job;
}


srv_job_t* srv_job_mirror(srv_ctx_t* ctx, const json_t* rec) {
  srv_job_t* job = job_alloc(ctx);
  char why[128];
  if (job != NULL && srv_job_from_record(job, rec, why, sizeof(why)) != 0) {
    srv_job_unref(job);
    return NULL;
  }
  return job;
}


int srv_job_create(srv_ctx_t* ctx,
                   const core_job_request_t* req,
                   const srv_engine_t* engine,
                   const core_shape_t* shape,
                   const double voxel_size[3],
                   const char* volume_path,
                   srv_job_ack_cb cb,
                   void* arg) {
  if (ctx->queued_count + ctx->creates_pending >= ctx->cfg.max_queued) {
    return -EAGAIN;
  }
  srv_job_t* job =
      srv_job_new_detached(ctx, req, engine, shape, voxel_size, volume_path);
  if (job == NULL) {
    return -ENOMEM;
  }
  ctx->creates_pending++;
  srv_job_persist_then(job, after_create, cb, arg);
  return 0;
}


/* ---- restore ---- */

int srv_job_restore(srv_ctx_t* ctx,
                    const json_t* rec,
                    const srv_engine_t* engine) {
  srv_job_t* job = job_alloc(ctx);
  if (job == NULL) {
    return -ENOMEM;
  }
  job->engine = engine;
  char why[160];
  if (srv_job_from_record(job, rec, why, sizeof(why)) != 0 ||
      srv_job_find(ctx, job->id, strlen(job->id)) != NULL) {
    srv_log(&ctx->log, SRV_LOG_WARN, "store.record_skipped", "s:job_id",
            job->id[0] != '\0' ? job->id : "?", "s:why",
            job->id[0] != '\0' && srv_job_find(ctx, job->id, strlen(job->id))
                ? "duplicate id"
                : why,
            NULL);
    srv_job_unref(job);
    return -EINVAL;
  }
  if (job_register(ctx, job) != 0) {
    srv_job_unref(job);
    return -ENOMEM;
  }
  if (job->state == CORE_JOB_RUNNING) {
    /* The server stopped while it ran: say so instead of pretending. */
    srv_job_finish(
        job, CORE_JOB_FAILED,
        json_pack("{s:s, s:s, s:s, s:b}", "code", "interrupted", "message",
                  "the server stopped while this job was running", "hint",
                  "submit the job again", "retryable", 1));
  } else if (core_job_state_is_terminal(job->state)) {
    job->topic.terminal = srv_job_terminal_frame(job);
  }
  return 0;
}


void srv_jobs_schedule(srv_ctx_t* ctx) {
  if (ctx->is_stopping) {
    return;
  }
  /* The list is newest first; walk backwards for the oldest queued. */
  for (core_list_t* it = ctx->jobs.prev;
       it != &ctx->jobs && ctx->running_count < ctx->cfg.max_running &&
       ctx->queued_count > 0;
       it = it->prev) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    /* A job waiting for a device does not hold up the jobs behind it. */
    if (job->state == CORE_JOB_QUEUED && (job->engine->ops->can_start == NULL ||
                                          job->engine->ops->can_start(job))) {
      job->engine->ops->start(job);
    }
  }
}


srv_job_t* srv_jobs_next(srv_ctx_t* ctx, srv_job_t* job) {
  core_list_t* next = job == NULL ? ctx->jobs.next : job->link.next;
  return next == &ctx->jobs ? NULL : CORE_CONTAINER_OF(next, srv_job_t, link);
}


void srv_jobs_free_all(srv_ctx_t* ctx) {
  while (!core_list_is_empty(&ctx->jobs)) {
    srv_job_t* job =
        CORE_CONTAINER_OF(core_list_front(&ctx->jobs), srv_job_t, link);
    srv_job_unregister(job);
    srv_job_unref(job);
  }
  core_idmap_free(&ctx->job_index);
}


int srv_job_artifact_path(const srv_job_t* job, char* out, size_t cap) {
  /* On a worker with --shared-dir, where gateways serve it from. */
  int n = snprintf(out, cap, "%s/artifacts/%s-mask.mrc",
                   srv_config_files_dir(&job->ctx->cfg), job->id);
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}
