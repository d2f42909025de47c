/* mask_run.c: the loop side of the mask model. See mask_run.h. Loop
 * thread only; the file work and the renders run on the worker pool
 * (mask_render.c). */
#include "server/mask_run.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/chunks.h"
#include "server/jobs.h"
#include "server/mask_render.h"
#include "server/preview_pub.h"

/* Owned by the engine that started it until srv_mask_run_release(), then
 * by itself; holds a job reference until freed. */
struct srv_mask_run_s {
  srv_job_t* job;
  srv_mask_ready_cb ready_cb;
  void* ready_arg;
  uv_work_t prepare; /* creates and sizes the mask file */
  int prepare_err;
  uv_timer_t tick; /* previews and progress, every 1 / preview_hz */
  bool is_ticking;
  bool is_tick_open; /* the timer handle is open (closed on release) */
  bool is_released;  /* the engine let go: publish nothing more */
  bool is_finishing; /* the engine finished writing */
  bool is_final_started;
  bool is_completed; /* the final pass succeeded: keep the artifact */
  bool render_busy;  /* a render owns `preview` */
  bool is_paused;    /* no preview render starts (srv_mask_run_pause) */
  srv_mask_ready_cb pause_cb; /* due once no render is in flight */
  void* pause_arg;
  uv_work_t pause_req; /* a pool round trip when none was in flight */
  unsigned works_in_flight;
  core_box_t dirty; /* reported since the last preview render */
  double progress;
  double published_progress;
  char message[256];
  bool message_changed;
  uint64_t start_ns;
  uint8_t* preview; /* the preview as rendered so far; only the one render
                       in flight touches it (render_busy) */
  net_frame_pool_t* pool;
  char path[1200];
};


const char* srv_mask_run_path(const srv_mask_run_t* mr) {
  return mr->path;
}


static void on_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


static void unlink_async(uv_loop_t* loop, const char* path) {
  uv_fs_t* req = malloc(sizeof(*req));
  if (req != NULL && uv_fs_unlink(loop, req, path, on_unlinked) != 0) {
    free(req);
  }
}


static void maybe_free(srv_mask_run_t* mr) {
  if (!mr->is_released || mr->works_in_flight > 0 || mr->is_tick_open) {
    return;
  }
  srv_job_t* job = mr->job;
  if (!mr->is_completed) {
    unlink_async(job->ctx->loop, mr->path);
  }
  net_frame_pool_release(mr->pool);
  free(mr->preview);
  free(mr);
  srv_job_unref(job);
}


static void on_tick_closed(uv_handle_t* h) {
  srv_mask_run_t* mr = h->data;
  mr->is_tick_open = false;
  maybe_free(mr);
}


static void stop_ticking(srv_mask_run_t* mr) {
  if (mr->is_ticking) {
    mr->is_ticking = false;
    uv_timer_stop(&mr->tick);
  }
}


/* Whether what lands is still wanted: the job runs and the engine holds
 * on (a released run may still complete the job with its final pass). */
static bool is_live(const srv_mask_run_t* mr) {
  const srv_job_t* job = mr->job;
  return !mr->is_released && !job->ctx->is_stopping &&
         job->state == CORE_JOB_RUNNING && !job->is_ending;
}


static void fail_job(srv_mask_run_t* mr, const srv_mask_render_t* r) {
  char message[320];
  snprintf(message, sizeof(message), "%s", r->why);
  srv_log(&mr->job->ctx->log, SRV_LOG_ERROR, "job.mask_failed", "s:job_id",
          mr->job->id, "s:message", message, NULL);
  /* A full disk (the artifact, the previews' reads) is the operator's to
   * fix, as for uploads: say so rather than "internal". */
  bool full = !r->is_engine_fault && (r->err == -ENOSPC || r->err == -EDQUOT);
  srv_job_finish(
      mr->job, CORE_JOB_FAILED,
      json_pack("{s:s, s:s, s:s, s:b}", "code",
                r->is_engine_fault ? "engine_protocol"
                : full             ? "insufficient_storage"
                                   : "internal",
                "message", message, "hint",
                r->is_engine_fault
                    ? "the engine must write exactly z*y*x bytes into the "
                      "mask file, in place (docs/engines.md)"
                : full ? "the server's disk is full: delete volumes or jobs, "
                         "then submit the job again"
                       : "see the server log; submit the job again",
                "retryable", !r->is_engine_fault && !full));
}


static void publish_progress(srv_mask_run_t* mr) {
  srv_job_t* job = mr->job;
  if (!mr->message_changed && mr->progress == mr->published_progress) {
    return;
  }
  mr->message_changed = false;
  mr->published_progress = mr->progress;
  job->progress = mr->progress;
  char fallback[32];
  snprintf(fallback, sizeof(fallback), "%.0f%%", mr->progress * 100.0);
  double elapsed_s = (double) (uv_hrtime() - mr->start_ns) / 1e9;
  srv_job_publish(job, "progress",
                  json_pack("{s:f, s:s, s:s, s:n, s:f, s:I}", "progress",
                            mr->progress, "state", "running", "message",
                            mr->message[0] != '\0' ? mr->message : fallback,
                            "eta_s", "elapsed_s", elapsed_s, "previews_sent",
                            (json_int_t) job->previews_sent),
                  NET_WQ_LATEST_PROGRESS);
}


static void after_render(uv_work_t* req, int status);


/* The engine asked to pause and no render is in flight any more. */
static void fire_pause(srv_mask_run_t* mr) {
  srv_mask_ready_cb cb = mr->pause_cb;
  mr->pause_cb = NULL;
  if (cb != NULL && is_live(mr)) {
    cb(mr->pause_arg);
  }
}


static int submit(srv_mask_run_t* mr, srv_mask_render_kind_t kind) {
  srv_mask_render_t* r = srv_mask_render_new(mr->job, kind);
  if (r == NULL) {
    return -ENOMEM;
  }
  r->run = mr;
  r->preview = mr->preview;
  r->box = mr->dirty;
  if (mr->job->chunks != NULL) {
    if (kind == SRV_MASK_FINAL) {
      /* The final chunks come from the whole mask, as the artifact does: an
       * engine's own final pass (classic) rewrites labels in place without
       * reporting regions, and an exec engine may have left a write
       * unreported. Unchanged chunks cost a compression, no message. */
      srv_chunks_mark_all(mr->job->chunks);
    }
    r->chunk_pass = srv_chunks_pass_begin(mr->job->chunks); /* or NULL */
  }
  if (mr->pool != NULL) {
    r->pool = net_frame_pool_ref(mr->pool);
  }
  int err = uv_queue_work(mr->job->ctx->loop, &r->req, srv_mask_render_work,
                          after_render);
  if (err != 0) {
    srv_mask_render_free(r);
    return err;
  }
  mr->dirty = core_box_empty();
  mr->render_busy = true;
  mr->works_in_flight++;
  return 0;
}


static void start_final(srv_mask_run_t* mr) {
  if (mr->render_busy || mr->is_final_started) {
    return; /* after the preview in flight lands */
  }
  mr->is_final_started = true;
  stop_ticking(mr);
  if (submit(mr, SRV_MASK_FINAL) != 0) {
    srv_mask_render_t oom = {.why = "out of memory queueing the final pass"};
    fail_job(mr, &oom);
  }
}


static void after_final(srv_mask_run_t* mr, srv_mask_render_t* r) {
  srv_job_t* job = mr->job;
  mr->is_completed = true; /* the artifact is the job's from now on */
  mr->progress = 1.0;
  publish_progress(mr);
  if (srv_preview_publish(job, r->frames, &r->preview_shape, r->scale,
                          &r->chunk_pass) != 0) {
    srv_mask_render_t bad = {.why = "framing the final preview"};
    fail_job(mr, &bad);
    return;
  }
  json_t* counts = json_object();
  for (int l = 0; l < 256; l++) {
    if (r->counts[l] > 0) {
      char key[4];
      snprintf(key, sizeof(key), "%d", l);
      json_object_set_new(counts, key, json_integer((json_int_t) r->counts[l]));
    }
  }
  json_decref(job->label_counts_json);
  job->label_counts_json = counts;
  job->has_stats = counts != NULL;
  job->artifact_bytes = r->artifact_bytes;
  job->progress = 1.0;
  srv_job_finish(job, CORE_JOB_COMPLETED, NULL);
}


static void after_render(uv_work_t* req, int status) {
  srv_mask_render_t* r = req->data;
  srv_mask_run_t* mr = r->run;
  srv_ctx_t* ctx = mr->job->ctx;
  mr->render_busy = false;
  bool live = status == 0 && is_live(mr);
  if (live && r->err != 0) {
    fail_job(mr, r);
  } else if (live) {
    ctx->metrics.renders_total++;
    ctx->metrics.render_ns_total += r->render_ns;
    if (r->kind == SRV_MASK_FINAL) {
      after_final(mr, r);
    } else if (srv_preview_publish(mr->job, r->frames, &r->preview_shape,
                                   r->scale, &r->chunk_pass) != 0) {
      srv_mask_render_t bad = {.why = "framing the preview"};
      fail_job(mr, &bad);
    } else if (mr->is_finishing) {
      start_final(mr);
    }
    if (r->kind == SRV_MASK_PREVIEW && mr->is_paused) {
      fire_pause(mr);
    }
  } else if (r->kind == SRV_MASK_FINAL && r->err == 0) {
    unlink_async(ctx->loop, r->artifact_path); /* not the job's after all */
  }
  srv_mask_render_free(r);
  mr->works_in_flight--;
  maybe_free(mr);
}


static void on_tick(uv_timer_t* t) {
  srv_mask_run_t* mr = t->data;
  if (!is_live(mr)) {
    return;
  }
  publish_progress(mr);
  bool chunks_due =
      mr->job->chunks != NULL && srv_chunks_wants_pass(mr->job->chunks);
  if ((!core_box_is_empty(&mr->dirty) || chunks_due) && !mr->render_busy &&
      !mr->is_final_started && !mr->is_paused) {
    submit(mr, SRV_MASK_PREVIEW); /* on failure: tried again next tick */
  }
}


static void prepare_work(uv_work_t* req) {
  srv_mask_run_t* mr = req->data;
  int fd = open(mr->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    mr->prepare_err = -errno;
    return;
  }
  off_t len = (off_t) core_shape_voxels(&mr->job->shape);
  mr->prepare_err = ftruncate(fd, len) == 0 ? 0 : -errno; /* zeros: label 0 */
  close(fd);
}


static void after_prepare(uv_work_t* req, int status) {
  srv_mask_run_t* mr = req->data;
  mr->works_in_flight--;
  int err = status != 0 ? status : mr->prepare_err;
  if (!is_live(mr)) {
    maybe_free(mr);
    return;
  }
  if (err != 0) {
    srv_mask_render_t r = {0};
    snprintf(r.why, sizeof(r.why), "creating the mask file: %s",
             strerror(-err));
    fail_job(mr, &r); /* the engine's stop releases the run */
    return;
  }
  uint64_t period_ms = (uint64_t) llround(1000.0 / mr->job->params.preview_hz);
  mr->start_ns = uv_hrtime();
  mr->is_ticking = true;
  uv_timer_start(&mr->tick, on_tick, period_ms, period_ms);
  mr->ready_cb(mr->ready_arg);
}


int srv_mask_run_start(srv_job_t* job,
                       srv_mask_ready_cb cb,
                       void* arg,
                       srv_mask_run_t** out) {
  srv_mask_run_t* mr = calloc(1, sizeof(*mr));
  if (mr == NULL) {
    return -ENOMEM;
  }
  mr->preview = calloc(1, (size_t) core_shape_voxels(&job->preview_shape));
  if (mr->preview == NULL || srv_mask_path(job, mr->path, sizeof(mr->path))) {
    free(mr->preview);
    free(mr);
    return -ENOMEM;
  }
  mr->job = srv_job_ref(job);
  mr->ready_cb = cb;
  mr->ready_arg = arg;
  mr->dirty = core_box_empty();
  /* The latest and the one being rendered; no pool only costs speed. */
  if (net_frame_pool_new(2 * CORE_ENC_COUNT, &mr->pool) != 0) {
    mr->pool = NULL;
  }
  uv_timer_init(job->ctx->loop, &mr->tick);
  mr->tick.data = mr;
  mr->is_tick_open = true;
  mr->prepare.data = mr;
  int err =
      uv_queue_work(job->ctx->loop, &mr->prepare, prepare_work, after_prepare);
  if (err != 0) {
    mr->is_released = true;
    uv_close((uv_handle_t*) &mr->tick, on_tick_closed);
    return err;
  }
  mr->works_in_flight++;
  *out = mr;
  return 0;
}


int srv_mask_run_region(srv_mask_run_t* mr, const core_box_t* b) {
  if (!core_box_is_valid(b, &mr->job->shape)) {
    return -EINVAL;
  }
  core_box_union(&mr->dirty, b);
  if (mr->job->chunks != NULL) {
    srv_chunks_mark(mr->job->chunks, b);
  }
  return 0;
}


void srv_mask_run_progress(srv_mask_run_t* mr, double p, const char* message) {
  mr->progress = isfinite(p) ? (p < 0 ? 0 : p > 1 ? 1 : p) : mr->progress;
  if (message != NULL && strcmp(message, mr->message) != 0) {
    snprintf(mr->message, sizeof(mr->message), "%s", message);
    mr->message_changed = true;
  }
}


void srv_mask_run_set_stats(srv_mask_run_t* mr, json_t* stats) {
  json_decref(mr->job->engine_stats);
  mr->job->engine_stats = stats;
}


static void pause_work(uv_work_t* req) {
  (void) req; /* only the round trip: the callback must not run inside
                 srv_mask_run_pause() */
}


static void after_pause_work(uv_work_t* req, int status) {
  (void) status;
  srv_mask_run_t* mr = req->data;
  mr->works_in_flight--;
  fire_pause(mr);
  maybe_free(mr);
}


void srv_mask_run_pause(srv_mask_run_t* mr, srv_mask_ready_cb cb, void* arg) {
  assert(!mr->is_released && !mr->is_paused);
  mr->is_paused = true;
  mr->pause_cb = cb;
  mr->pause_arg = arg;
  if (mr->render_busy) {
    return; /* after_render fires it */
  }
  mr->pause_req.data = mr;
  int err = uv_queue_work(mr->job->ctx->loop, &mr->pause_req, pause_work,
                          after_pause_work);
  assert(err == 0); /* fails only for a NULL work callback */
  (void) err;
  mr->works_in_flight++;
}


void srv_mask_run_finish(srv_mask_run_t* mr) {
  assert(!mr->is_released);
  mr->is_finishing = true;
  start_final(mr);
}


void srv_mask_run_release(srv_mask_run_t* mr) {
  if (mr == NULL || mr->is_released) {
    return;
  }
  mr->is_released = true;
  stop_ticking(mr);
  uv_close((uv_handle_t*) &mr->tick, on_tick_closed);
}


/* ---- rebuild ---- */

static void after_rebuild(uv_work_t* req, int status) {
  srv_mask_render_t* r = req->data;
  srv_job_t* job = r->job;
  job->is_rebuilding = false;
  if (status == 0 && r->err == 0 && job->state == CORE_JOB_COMPLETED &&
      srv_preview_seal(job, r->frames, &r->preview_shape, r->scale,
                       job->final_preview_seq, job->final_preview_us) == 0) {
    job->ctx->metrics.renders_total++;
    job->ctx->metrics.render_ns_total += r->render_ns;
    srv_topic_set_preview(&job->topic, r->frames, true);
  } else {
    srv_log(&job->ctx->log, SRV_LOG_ERROR, "job.preview_rebuild_failed",
            "s:job_id", job->id, "s:why", r->why, NULL);
  }
  srv_topic_wake(&job->topic); /* waiters learn either way */
  srv_mask_render_free(r);
}


void srv_mask_rebuild_preview(srv_job_t* job) {
  if (job->is_rebuilding) {
    return; /* its waiters are woken when it lands */
  }
  srv_mask_render_t* r =
      job->state == CORE_JOB_COMPLETED && job->final_preview_seq != 0
          ? srv_mask_render_new(job, SRV_MASK_REBUILD)
          : NULL;
  if (r == NULL || uv_queue_work(job->ctx->loop, &r->req, srv_mask_render_work,
                                 after_rebuild) != 0) {
    if (r != NULL) {
      srv_mask_render_free(r);
    }
    srv_topic_wake(&job->topic); /* nothing will come: answer waiters */
    return;
  }
  job->is_rebuilding = true;
}
