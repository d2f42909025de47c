/* engine.c: the loop side of the simulated inference: ticks on absolute
 * deadlines, renders handed to the worker pool and published when they land
 * or when their tick fires, the final artifact's completion. See engine.h.
 * What runs on the workers is render.c. Loop thread only. */
#include "server/engine.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/timerfd.h>
#endif
#include <time.h>
#include <unistd.h>

#include "core/mask.h"
#include "core/msg.h"
#include "core/preview_bin.h"
#include "server/jobs.h"
#include "server/preview_pub.h"
#include "server/chunks.h"
#include "server/render.h"

/* One running job's engine state. Owned by the engine: created at start,
 * freed once its handles have closed and no render of it is in flight; it
 * holds a job reference until then. job->run points here while the run is
 * the job's current one. */
typedef struct srv_engine_run_s {
  srv_job_t* job;
  uv_timer_t timer;        /* ticks where timerfd is unavailable */
  uv_poll_t tick_poll;     /* Linux: watches tick_fd, a timerfd armed with
                              absolute CLOCK_MONOTONIC deadlines */
  int tick_fd;             /* -1 when not in use */
  uv_timer_t render_timer; /* starts the next tick's render mid-period */
  unsigned open_handles;
  unsigned works_in_flight; /* renders on the pool for this run */
  bool is_ticking;          /* handles open, ticks armed */
  bool is_abandoned;        /* stopped: renders landing are discarded */
  bool render_busy;         /* a preview render is on the pool */
  uint64_t start_ns;        /* uv_hrtime() at start: deadlines are absolute */
  uint64_t tick;            /* ticks done */
  srv_render_t* ready;      /* rendered ahead, for tick ready->tick */
  net_frame_pool_t* preview_pool; /* recycled preview frames */
  /* What the job's chunk table was last brought to (a pass began). */
  bool chunks_known;
  double chunk_progress;
  uint64_t chunk_tick;
} srv_engine_run_t;


static uint64_t period_ns(const srv_job_t* job) {
  return (uint64_t) llround(1e9 / job->params.preview_hz);
}


static uint64_t duration_ns(const srv_job_t* job) {
  return (uint64_t) llround(job->params.duration_s * 1e9);
}


static void run_stop(srv_engine_run_t* run);


static void fail_job(srv_job_t* job, const char* what, int err) {
  char message[256];
  snprintf(message, sizeof(message), "internal error while %s: %s", what,
           strerror(-err));
  srv_log(&job->ctx->log, SRV_LOG_ERROR, "job.failed", "s:job_id", job->id,
          "s:message", message, NULL);
  srv_job_finish(
      job, CORE_JOB_FAILED,
      json_pack("{s:s, s:s, s:s, s:b}", "code", "internal", "message", message,
                "hint", "see the server log; submit the job again", "retryable",
                1));
}


/* Stamps seq and timestamp on r's frames and makes them the job's latest
 * preview (handed to every sink). Returns 0, or fails the job. */
static int publish_frames(srv_job_t* job, srv_render_t* r) {
  if (srv_preview_publish(job, r->frames, &r->preview_shape, r->scale,
                          &r->chunk_pass) != 0) {
    srv_render_release_frames(r);
    fail_job(job, "framing the preview", -EINVAL);
    return -1;
  }
  return 0;
}


static void prerender(srv_engine_run_t* run, uint64_t tick);


/* Frees the run once nothing refers to it any more. */
static void run_maybe_free(srv_engine_run_t* run) {
  if (run->open_handles > 0 || run->works_in_flight > 0 || run->is_ticking) {
    return;
  }
  srv_job_t* job = run->job;
  if (job->run == run) {
    job->run = NULL;
  }
  net_frame_pool_release(run->preview_pool); /* frames out stay valid */
  free(run);
  srv_job_unref(job);
}


static void on_artifact_removed(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


/* A final render landed for a job that no longer wants it (cancelled while
 * the mask was written): its artifact must not outlive the decision. */
static void remove_artifact(srv_render_t* r) {
  uv_fs_t* req = malloc(sizeof(*req));
  if (req != NULL && uv_fs_unlink(r->job->ctx->loop, req, r->artifact_path,
                                  on_artifact_removed) != 0) {
    free(req);
  }
}


static void after_rebuild(srv_render_t* r, int status) {
  srv_job_t* job = r->job;
  srv_ctx_t* ctx = job->ctx;
  job->is_rebuilding = false;
  if (status == 0 && r->err == 0 && job->state == CORE_JOB_COMPLETED &&
      srv_preview_seal(job, r->frames, &r->preview_shape, r->scale,
                       job->final_preview_seq, job->final_preview_us) == 0) {
    ctx->metrics.renders_total++;
    ctx->metrics.render_ns_total += r->render_ns;
    srv_topic_set_preview(&job->topic, r->frames, true);
  } else {
    srv_log(&ctx->log, SRV_LOG_ERROR, "job.preview_rebuild_failed", "s:job_id",
            job->id, NULL);
  }
  srv_topic_wake(&job->topic); /* waiters learn either way */
  srv_render_free(r);
  srv_job_unref(job);
}


static void after_final(srv_engine_run_t* run, srv_render_t* r) {
  srv_job_t* job = run->job;
  if (publish_frames(job, r) != 0) {
    return;
  }
  job->progress = 1.0;
  job->has_stats = true;
  memcpy(job->label_counts, r->counts, sizeof(job->label_counts));
  job->artifact_bytes = r->artifact_bytes;
  srv_job_finish(job, CORE_JOB_COMPLETED, NULL);
}


static void after_render(uv_work_t* req, int status) {
  srv_render_t* r = req->data;
  if (r->kind == SRV_RENDER_REBUILD) {
    after_rebuild(r, status);
    return;
  }
  srv_engine_run_t* run = r->run;
  srv_job_t* job = run->job;
  srv_ctx_t* ctx = job->ctx;
  /* works_in_flight drops only at the end: finishing the job below stops
   * the run, which must not be freed under us. */
  if (r->kind == SRV_RENDER_PREVIEW) {
    run->render_busy = false;
  }
  bool wanted = status == 0 && !run->is_abandoned && !ctx->is_stopping &&
                job->state == CORE_JOB_RUNNING && !job->is_ending;
  if (!wanted || r->err != 0) {
    if (wanted) {
      fail_job(job, r->err_what, r->err);
    }
    if (r->kind == SRV_RENDER_FINAL && r->err == 0) {
      remove_artifact(r);
    }
    srv_render_free(r);
    run->works_in_flight--;
    run_maybe_free(run);
    return;
  }
  ctx->metrics.renders_total++;
  ctx->metrics.render_ns_total += r->render_ns;
  if (r->kind == SRV_RENDER_FINAL) {
    after_final(run, r);
  } else if (r->tick > run->tick) {
    run->ready = r; /* rendered ahead: published when its tick fires */
    run->works_in_flight--;
    return;
  } else {
    /* Its tick already fired (the render was slow): publish it now and
     * keep the pipeline full with the next tick's render. */
    publish_frames(job, r);
    prerender(run, run->tick + 1);
  }
  srv_render_free(r);
  run->works_in_flight--;
  run_maybe_free(run);
}


static srv_render_t* render_new(srv_job_t* job,
                                srv_engine_run_t* run,
                                srv_render_kind_t kind) {
  srv_render_t* r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return NULL;
  }
  r->job = job;
  r->run = run;
  r->kind = kind;
  r->spec.shape = job->shape;
  r->spec.pattern = job->params.pattern;
  r->spec.seed = job->params.seed;
  r->scale = job->params.preview_scale;
  r->preview_shape = job->preview_shape;
  memcpy(r->voxel_size, job->voxel_size, sizeof(r->voxel_size));
  if (run != NULL && run->preview_pool != NULL) {
    r->pool = net_frame_pool_ref(run->preview_pool);
  }
  /* Encode zstd once per preview, and only while someone wants it. */
  r->want_zstd = job->topic.sinks_by_enc[CORE_ENC_ZSTD] > 0;
  r->req.data = r;
  return r;
}


/* When the job has a chunk table: marks what changed since the last pass
 * (the windows shown since, or all of a random mask) and lets the render
 * carry the next pass if none is in flight. */
static void attach_chunks(srv_engine_run_t* run, srv_render_t* r) {
  srv_chunks_t* t = r->job->chunks;
  if (t == NULL) {
    return;
  }
  uint64_t tick = r->kind == SRV_RENDER_FINAL ? CORE_MASK_FINAL_TICK : r->tick;
  if (!run->chunks_known) {
    srv_chunks_mark_all(t);
  } else {
    core_box_t b = core_mask_changed_box(&r->spec, run->chunk_progress,
                                         run->chunk_tick, r->progress, tick);
    srv_chunks_mark(t, &b);
  }
  run->chunks_known = true;
  run->chunk_progress = r->progress;
  run->chunk_tick = tick;
  r->chunk_pass = srv_chunks_pass_begin(t); /* NULL: one is in flight */
}


static int submit(srv_engine_run_t* run, srv_render_t* r) {
  if (run != NULL) {
    attach_chunks(run, r);
  }
  int err =
      uv_queue_work(r->job->ctx->loop, &r->req, srv_render_work, after_render);
  if (err != 0) {
    srv_render_free(r);
    return err;
  }
  if (run != NULL) {
    run->works_in_flight++;
  }
  return 0;
}


static void start_final(srv_engine_run_t* run) {
  srv_job_t* job = run->job;
  srv_render_t* r = render_new(job, run, SRV_RENDER_FINAL);
  if (r == NULL || srv_job_artifact_path(job, r->artifact_path,
                                         sizeof(r->artifact_path)) != 0) {
    if (r != NULL) {
      srv_render_free(r);
    }
    fail_job(job, "preparing the final mask", -ENOMEM);
    return;
  }
  r->progress = 1.0;
  int err = submit(run, r);
  if (err != 0) {
    fail_job(job, "queueing the final mask", err);
  }
}


static void publish_progress(srv_job_t* job, double elapsed_s) {
  double eta = job->params.duration_s - elapsed_s;
  char message[96];
  snprintf(message, sizeof(message), "%s, %.0f%%",
           job->params.pattern == CORE_PATTERN_BLOBS
               ? "sliding-window inference"
               : "simulated inference",
           job->progress * 100.0);
  srv_job_publish(
      job, "progress",
      json_pack("{s:f, s:s, s:s, s:f, s:f, s:I}", "progress", job->progress,
                "state", "running", "message", message, "eta_s",
                eta > 0 ? eta : 0.0, "elapsed_s", elapsed_s, "previews_sent",
                (json_int_t) job->previews_sent),
      NET_WQ_LATEST_PROGRESS);
}


/* Progress at tick k: where inference is at that tick's deadline. */
static double progress_at(const srv_job_t* job, uint64_t tick) {
  uint64_t total = duration_ns(job);
  uint64_t t = tick * period_ns(job);
  return total == 0 || t >= total ? 1.0 : (double) t / (double) total;
}


/* Absolute deadline of tick k (CLOCK_MONOTONIC ns, as uv_hrtime()), never
 * past the end of the job. */
static uint64_t deadline_of(const srv_engine_run_t* run, uint64_t tick) {
  uint64_t d = run->start_ns + tick * period_ns(run->job);
  uint64_t end = run->start_ns + duration_ns(run->job);
  return d < end ? d : end;
}


/* Hands tick `tick`'s preview to the pool unless one is already there
 * (latest-only at the source) or the job ends first. */
static void prerender(srv_engine_run_t* run, uint64_t tick) {
  srv_job_t* job = run->job;
  if (run->render_busy || run->ready != NULL || !run->is_ticking ||
      tick * period_ns(job) >= duration_ns(job)) {
    return;
  }
  srv_render_t* r = render_new(job, run, SRV_RENDER_PREVIEW);
  if (r == NULL) {
    return;
  }
  r->progress = progress_at(job, tick);
  r->tick = tick;
  if (submit(run, r) == 0) {
    run->render_busy = true;
  }
}


static void tick(srv_engine_run_t* run);


static void on_tick_timer(uv_timer_t* timer) {
  tick(timer->data);
}


#ifdef __linux__
static void on_tick_fd(uv_poll_t* poll, int status, int events) {
  (void) events;
  srv_engine_run_t* run = poll->data;
  uint64_t expirations = 0;
  if (status < 0 || read(run->tick_fd, &expirations, sizeof(expirations)) !=
                        (ssize_t) sizeof(expirations)) {
    return; /* spurious wake-up: the timer has not expired */
  }
  tick(run);
}
#endif


/* Arms the run's ticker for an absolute deadline: a timerfd where there is
 * one (nanosecond deadlines, no rounding to the loop's millisecond clock),
 * else a libuv timer rounded to the nearest millisecond. */
static void arm(srv_engine_run_t* run, uint64_t deadline_ns) {
#ifdef __linux__
  if (run->tick_fd >= 0) {
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t) (deadline_ns / 1000000000u);
    its.it_value.tv_nsec = (long) (deadline_ns % 1000000000u);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
      its.it_value.tv_nsec = 1; /* zero would disarm */
    }
    if (timerfd_settime(run->tick_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
      return;
    }
  }
#endif
  uv_update_time(run->job->ctx->loop);
  uint64_t now = uv_hrtime();
  uint64_t delay_ms =
      deadline_ns > now ? (deadline_ns - now + 500000) / 1000000 : 0;
  uv_timer_start(&run->timer, on_tick_timer, delay_ms, 0);
}


static void on_render_timer(uv_timer_t* timer) {
  srv_engine_run_t* run = timer->data;
  prerender(run, run->tick + 1);
}


static void tick(srv_engine_run_t* run) {
  srv_job_t* job = run->job;
  if (!run->is_ticking || job->ctx->is_stopping) {
    return;
  }
  uint64_t now = uv_hrtime();
  uint64_t elapsed_ns = now - run->start_ns;
  /* This is the tick we were armed for (a millisecond timer may fire a
   * little early); a late wake-up skips the ticks it missed rather than
   * bunching them. */
  uint64_t due = (elapsed_ns + 1000000) / period_ns(job);
  run->tick = due > run->tick + 1 ? due : run->tick + 1;
  if (elapsed_ns + 1000000 >= duration_ns(job)) {
    job->progress = 1.0;
    publish_progress(job, job->params.duration_s);
    run_stop(run); /* no more ticks; drops a preview rendered ahead */
    start_final(run);
    return;
  }
  job->progress = progress_at(job, run->tick);
  publish_progress(job, (double) elapsed_ns / 1e9);
  if (run->ready != NULL) {
    /* Rendered ahead for this tick (or, after missed ticks, an earlier
     * one: still the newest there is). */
    srv_render_t* r = run->ready;
    run->ready = NULL;
    publish_frames(job, r);
    srv_render_free(r);
    if (job->run != run || !run->is_ticking) {
      return; /* publishing failed the job */
    }
  }
  /* Render the next preview half a period from now, not at once: right
   * after a tick the loop is busy fanning out, and on a small machine a
   * render on the other core would compete with it for CPU and cache. */
  uv_timer_start(&run->render_timer, on_render_timer,
                 (uint64_t) (500.0 / job->params.preview_hz), 0);
  arm(run, deadline_of(run, run->tick + 1));
}


static void on_run_handle_closed(uv_handle_t* handle) {
  srv_engine_run_t* run = handle->data;
  run->open_handles--;
  run_maybe_free(run);
}


#ifdef __linux__
static void on_tick_poll_closed(uv_handle_t* handle) {
  srv_engine_run_t* run = handle->data;
  close(run->tick_fd);
  run->tick_fd = -1;
  on_run_handle_closed(handle);
}
#endif


/* Stops ticking for good: closes the run's handles and drops a preview
 * rendered ahead. Renders in flight still land (the final one completes
 * the job unless the run was abandoned). */
static void run_stop(srv_engine_run_t* run) {
  if (!run->is_ticking) {
    return;
  }
  run->is_ticking = false;
  uv_close((uv_handle_t*) &run->timer, on_run_handle_closed);
  uv_close((uv_handle_t*) &run->render_timer, on_run_handle_closed);
#ifdef __linux__
  if (run->tick_fd >= 0) {
    uv_close((uv_handle_t*) &run->tick_poll, on_tick_poll_closed);
  }
#endif
  if (run->ready != NULL) {
    srv_render_free(run->ready);
    run->ready = NULL;
  }
}


static void sim_start(srv_job_t* job) {
  srv_engine_run_t* run = calloc(1, sizeof(*run));
  if (run == NULL) {
    srv_job_set_running(job);
    fail_job(job, "starting the engine", -ENOMEM);
    return;
  }
  srv_ctx_t* ctx = job->ctx;
  run->job = srv_job_ref(job);
  run->tick_fd = -1;
  uv_timer_init(ctx->loop, &run->timer);
  uv_timer_init(ctx->loop, &run->render_timer);
  run->timer.data = run->render_timer.data = run;
  run->open_handles = 2;
  run->is_ticking = true;
  /* Two generations of three encodings: the latest and the one ahead. A
   * missing pool only costs speed (frames are then allocated each time). */
  if (net_frame_pool_new(2 * CORE_ENC_COUNT, &run->preview_pool) != 0) {
    run->preview_pool = NULL;
  }
#ifdef __linux__
  run->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (run->tick_fd >= 0) {
    run->tick_poll.data = run;
    if (uv_poll_init(ctx->loop, &run->tick_poll, run->tick_fd) != 0) {
      close(run->tick_fd);
      run->tick_fd = -1;
    } else {
      run->open_handles++;
      uv_poll_start(&run->tick_poll, UV_READABLE, on_tick_fd);
    }
  }
#endif
  job->run = run;
  srv_job_set_running(job);
  run->start_ns = uv_hrtime();
  prerender(run, 1);
  arm(run, deadline_of(run, 1));
}


static void sim_stop(srv_job_t* job) {
  srv_engine_run_t* run = job->run;
  if (run == NULL) {
    return;
  }
  run->is_abandoned = true;
  job->run = NULL;
  run_stop(run);
  run_maybe_free(run);
}


static void sim_rebuild_preview(srv_job_t* job) {
  if (job->is_rebuilding) {
    return; /* its waiters are woken when it lands */
  }
  if (job->state != CORE_JOB_COMPLETED || job->final_preview_seq == 0) {
    srv_topic_wake(&job->topic); /* nothing will come: answer waiters */
    return;
  }
  srv_render_t* r = render_new(job, NULL, SRV_RENDER_REBUILD);
  if (r == NULL) {
    srv_topic_wake(&job->topic);
    return;
  }
  r->progress = 1.0;
  srv_job_ref(job);
  if (submit(NULL, r) != 0) {
    srv_job_unref(job);
    srv_topic_wake(&job->topic);
    return;
  }
  job->is_rebuilding = true;
}


const srv_engine_ops_t srv_sim_engine = {
    .start = sim_start,
    .stop = sim_stop,
    .rebuild_preview = sim_rebuild_preview,
};
