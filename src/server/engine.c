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
#include "server/http_api.h"
#include "server/jobs.h"
#include "server/render.h"


static uint64_t period_ns(const srv_job_t* job) {
  return (uint64_t) llround(1e9 / job->params.preview_hz);
}


static uint64_t duration_ns(const srv_job_t* job) {
  return (uint64_t) llround(job->params.duration_s * 1e9);
}


/* Stamps the envelope (seq, timestamp) in front of each encoded payload
 * and seals its WebSocket header. Loop thread. */
static int finish_frames(srv_job_t* job,
                         srv_render_t* r,
                         uint64_t seq,
                         int64_t ts_us) {
  size_t n = (size_t) core_shape_voxels(&r->preview_shape);
  core_preview_layout_t layout;
  if (core_msg_preview_layout(job->id, seq, ts_us, &r->preview_shape, r->scale,
                              n, &layout) != 0) {
    return -EINVAL;
  }
  net_frame_t* text = r->frames[CORE_ENC_BASE64];
  assert(layout.b64_len + layout.suffix_len == text->len);
  memcpy(net_frame_prepend(text, layout.prefix_len), layout.prefix,
         layout.prefix_len);
  net_frame_seal_ws(text, NET_WS_OP_TEXT);
  for (int e = CORE_ENC_RAW; e < CORE_ENC_COUNT; e++) {
    net_frame_t* f = r->frames[e];
    if (f == NULL) {
      continue;
    }
    uint8_t head[CORE_PREVIEW_BIN_HEAD_MAX];
    int head_len =
        core_preview_bin_head(job->id, seq, ts_us, &r->preview_shape, r->scale,
                              (core_encoding_t) e, f->len, head, sizeof(head));
    if (head_len < 0) {
      return -EINVAL;
    }
    memcpy(net_frame_prepend(f, (size_t) head_len), head, (size_t) head_len);
    net_frame_seal_ws(f, NET_WS_OP_BINARY);
  }
  return 0;
}


/* The job takes the render's frames as its latest preview. */
static void take_frames(srv_job_t* job, srv_render_t* r) {
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    net_frame_unref(job->latest[e]);
    job->latest[e] = r->frames[e]; /* the job's reference */
    r->frames[e] = NULL;
  }
}


static void fail_job(srv_job_t* job, const char* what, int err) {
  char message[256];
  snprintf(message, sizeof(message), "internal error while %s: %s", what,
           strerror(-err));
  srv_engine_stop(job);
  srv_log(&job->ctx->log, SRV_LOG_ERROR, "job.failed", "s:job_id", job->id,
          "s:message", message, NULL);
  srv_job_finish(
      job, CORE_JOB_FAILED,
      json_pack("{s:s, s:s, s:s, s:b}", "code", "internal", "message", message,
                "hint", "see the server log; submit the job again", "retryable",
                1));
}


/* Stamps seq and timestamp on r's frames, makes them the job's latest and
 * fans them out. Returns 0, or fails the job and returns -1. */
static int publish_frames(srv_job_t* job,
                          srv_render_t* r,
                          uint64_t* seq_out,
                          int64_t* ts_out) {
  srv_ctx_t* ctx = job->ctx;
  int64_t now_us = srv_now_us();
  uint64_t seq = ++job->seq;
  if (finish_frames(job, r, seq, now_us) != 0) {
    srv_render_release_frames(r);
    fail_job(job, "framing the preview", -EINVAL);
    return -1;
  }
  take_frames(job, r);
  job->previews_sent++;
  ctx->metrics.previews_published++;
  ctx->metrics.preview_bytes_published += job->latest[CORE_ENC_BASE64]->len;
  srv_job_broadcast_preview(job);
  *seq_out = seq;
  *ts_out = now_us;
  return 0;
}


static void publish_preview(srv_job_t* job, srv_render_t* r) {
  uint64_t seq;
  int64_t ts;
  publish_frames(job, r, &seq, &ts);
  srv_render_free(r);
}


static void prerender(srv_job_t* job, uint64_t tick);


static void after_render(uv_work_t* req, int status) {
  srv_render_t* r = req->data;
  srv_job_t* job = r->job;
  srv_ctx_t* ctx = job->ctx;
  job->works_in_flight--;
  if (r->kind == SRV_RENDER_PREVIEW) {
    job->render_busy = false;
  }
  if (r->kind == SRV_RENDER_REBUILD) {
    job->preview_rebuild_pending = false;
  }
  bool wanted =
      status == 0 && !ctx->is_stopping &&
      (r->kind == SRV_RENDER_REBUILD ? job->state == CORE_JOB_COMPLETED
                                     : job->state == CORE_JOB_RUNNING);
  if (!wanted || r->err != 0) {
    if (wanted && r->kind != SRV_RENDER_REBUILD) {
      fail_job(job, r->err_what, r->err);
    } else if (wanted) {
      srv_log(&ctx->log, SRV_LOG_ERROR, "job.preview_rebuild_failed",
              "s:job_id", job->id, NULL);
    }
    if (r->kind == SRV_RENDER_REBUILD) {
      srv_http_preview_ready(job); /* waiters get an error, not silence */
    }
    srv_render_free(r);
    return;
  }
  ctx->metrics.renders_total++;
  ctx->metrics.render_ns_total += r->render_ns;
  if (r->kind == SRV_RENDER_REBUILD) {
    if (finish_frames(job, r, job->final_preview_seq, job->final_preview_us) ==
        0) {
      take_frames(job, r);
      srv_job_broadcast_preview(job);
    }
    if (job->terminal_frame != NULL) {
      srv_job_broadcast(job, job->terminal_frame, NET_WQ_ESSENTIAL);
    }
    srv_http_preview_ready(job);
    srv_render_free(r);
    return;
  }
  if (r->kind == SRV_RENDER_PREVIEW) {
    if (r->tick > job->tick) {
      job->ready = r; /* rendered ahead: published when its tick fires */
      return;
    }
    /* Its tick already fired (the render was slow): publish it now and keep
     * the pipeline full with the next tick's render. */
    publish_preview(job, r);
    prerender(job, job->tick + 1);
    return;
  }
  uint64_t seq = 0;
  int64_t now_us = 0;
  if (publish_frames(job, r, &seq, &now_us) != 0) {
    srv_render_free(r);
    return;
  }
  /* The final preview is out: the job is complete. */
  job->progress = 1.0;
  job->has_stats = true;
  memcpy(job->label_counts, r->counts, sizeof(job->label_counts));
  job->artifact_bytes = r->artifact_bytes;
  job->final_preview_seq = seq;
  job->final_preview_us = now_us;
  job->is_finalizing = false;
  json_t* stats = srv_job_to_json(job);
  json_t* data = json_pack("{s:s, s:o, s:O, s:I}", "state", "completed",
                           "artifacts", srv_job_artifacts_json(job), "stats",
                           json_object_get(stats, "stats"), "previews_sent",
                           (json_int_t) job->previews_sent);
  json_decref(stats);
  srv_job_finish(job, CORE_JOB_COMPLETED, data);
  srv_render_free(r);
}


static srv_render_t* render_new(srv_job_t* job, srv_render_kind_t kind) {
  srv_render_t* r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return NULL;
  }
  r->job = job;
  r->kind = kind;
  r->spec.shape = job->shape;
  r->spec.pattern = job->params.pattern;
  r->spec.seed = job->params.seed;
  r->scale = job->params.preview_scale;
  r->preview_shape = job->preview_shape;
  memcpy(r->voxel_size, job->voxel_size, sizeof(r->voxel_size));
  if (job->preview_pool != NULL) {
    r->pool = net_frame_pool_ref(job->preview_pool);
  }
  /* Encode zstd once per preview, and only while someone wants it. */
  r->want_zstd = job->subscribers_by_enc[CORE_ENC_ZSTD] > 0;
  r->req.data = r;
  return r;
}


static int submit(srv_job_t* job, srv_render_t* r) {
  int err =
      uv_queue_work(job->ctx->loop, &r->req, srv_render_work, after_render);
  if (err != 0) {
    srv_render_free(r);
    return err;
  }
  job->works_in_flight++;
  return 0;
}


static void start_final(srv_job_t* job) {
  srv_render_t* r = render_new(job, SRV_RENDER_FINAL);
  if (r == NULL || srv_job_artifact_path(job, r->artifact_path,
                                         sizeof(r->artifact_path)) != 0) {
    srv_render_free(r);
    fail_job(job, "preparing the final mask", -ENOMEM);
    return;
  }
  r->progress = 1.0;
  job->is_finalizing = true;
  int err = submit(job, r);
  if (err != 0) {
    fail_job(job, "queueing the final mask", err);
  }
}


static void publish_progress(srv_job_t* job, double elapsed_s) {
  double eta = job->params.duration_s - elapsed_s;
  char message[96];
  if (job->params.pattern == CORE_PATTERN_BLOBS) {
    snprintf(message, sizeof(message), "sliding-window inference, %.0f%%",
             job->progress * 100.0);
  } else {
    snprintf(message, sizeof(message), "simulated inference, %.0f%%",
             job->progress * 100.0);
  }
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
static uint64_t deadline_of(const srv_job_t* job, uint64_t tick) {
  uint64_t d = job->start_ns + tick * period_ns(job);
  uint64_t end = job->start_ns + duration_ns(job);
  return d < end ? d : end;
}


/* Hands tick `tick`'s preview to the pool unless one is already there
 * (latest-only at the source) or the job ends first. */
static void prerender(srv_job_t* job, uint64_t tick) {
  if (job->render_busy || job->ready != NULL ||
      tick * period_ns(job) >= duration_ns(job)) {
    return;
  }
  srv_render_t* r = render_new(job, SRV_RENDER_PREVIEW);
  if (r == NULL) {
    return;
  }
  r->progress = progress_at(job, tick);
  r->tick = tick;
  if (submit(job, r) == 0) {
    job->render_busy = true;
  }
}


static void tick(srv_job_t* job);


static void on_tick_timer(uv_timer_t* timer) {
  srv_job_t* job = timer->data;
  job->timer_active = false;
  tick(job);
}


#ifdef __linux__
static void on_tick_fd(uv_poll_t* poll, int status, int events) {
  (void) events;
  srv_job_t* job = poll->data;
  uint64_t expirations = 0;
  if (status < 0 || read(job->tick_fd, &expirations, sizeof(expirations)) !=
                        (ssize_t) sizeof(expirations)) {
    return; /* spurious wake-up: the timer has not expired */
  }
  job->timer_active = false;
  tick(job);
}


static void on_tick_poll_closed(uv_handle_t* handle) {
  srv_job_t* job = handle->data;
  close(job->tick_fd);
  job->tick_fd = -1;
}
#endif


/* Arms the job's ticker for an absolute deadline: a timerfd where there is
 * one (nanosecond deadlines, no rounding to the loop's millisecond clock),
 * else a libuv timer rounded to the nearest millisecond. */
static void arm(srv_job_t* job, uint64_t deadline_ns) {
#ifdef __linux__
  if (job->tick_fd >= 0) {
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t) (deadline_ns / 1000000000u);
    its.it_value.tv_nsec = (long) (deadline_ns % 1000000000u);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) {
      its.it_value.tv_nsec = 1; /* zero would disarm */
    }
    if (timerfd_settime(job->tick_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
      job->timer_active = true;
      return;
    }
  }
#endif
  uv_update_time(job->ctx->loop);
  uint64_t now = uv_hrtime();
  uint64_t delay_ms =
      deadline_ns > now ? (deadline_ns - now + 500000) / 1000000 : 0;
  uv_timer_start(&job->timer, on_tick_timer, delay_ms, 0);
  job->timer_active = true;
}


static void on_render_timer(uv_timer_t* timer) {
  srv_job_t* job = timer->data;
  if (job->state == CORE_JOB_RUNNING && !job->ctx->is_stopping) {
    prerender(job, job->tick + 1);
  }
}


static void tick(srv_job_t* job) {
  if (job->state != CORE_JOB_RUNNING || job->ctx->is_stopping) {
    return;
  }
  uint64_t now = uv_hrtime();
  uint64_t elapsed_ns = now - job->start_ns;
  /* This is the tick we were armed for (a millisecond timer may fire a
   * little early); a late wake-up skips the ticks it missed rather than
   * bunching them. */
  uint64_t due = (elapsed_ns + 1000000) / period_ns(job);
  job->tick = due > job->tick + 1 ? due : job->tick + 1;
  if (elapsed_ns + 1000000 >= duration_ns(job)) {
    job->progress = 1.0;
    publish_progress(job, job->params.duration_s);
    srv_engine_stop(job); /* no more ticks; drops a preview rendered ahead */
    start_final(job);
    return;
  }
  job->progress = progress_at(job, job->tick);
  publish_progress(job, (double) elapsed_ns / 1e9);
  if (job->ready != NULL) {
    /* Rendered ahead for this tick (or, after missed ticks, an earlier
     * one: still the newest there is). */
    srv_render_t* r = job->ready;
    job->ready = NULL;
    publish_preview(job, r);
  }
  /* Render the next preview half a period from now, not at once: right
   * after a tick the loop is busy fanning out, and on a small machine a
   * render on the other core would compete with it for CPU and cache. */
  uv_timer_start(&job->render_timer, on_render_timer,
                 (uint64_t) (500.0 / job->params.preview_hz), 0);
  arm(job, deadline_of(job, job->tick + 1));
}


void srv_engine_start(srv_job_t* job) {
  srv_job_set_running(job);
  job->start_ns = uv_hrtime();
  job->tick = 0;
  /* Two generations of three encodings: the latest and the one ahead. A
   * missing pool only costs speed (frames are then allocated each time). */
  if (net_frame_pool_new(2 * CORE_ENC_COUNT, &job->preview_pool) != 0) {
    job->preview_pool = NULL;
  }
#ifdef __linux__
  job->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (job->tick_fd >= 0) {
    job->tick_poll.data = job;
    if (uv_poll_init(job->ctx->loop, &job->tick_poll, job->tick_fd) != 0) {
      close(job->tick_fd);
      job->tick_fd = -1;
    } else {
      uv_poll_start(&job->tick_poll, UV_READABLE, on_tick_fd);
    }
  }
#endif
  prerender(job, 1);
  arm(job, deadline_of(job, 1));
}


void srv_engine_stop(srv_job_t* job) {
  if (job->timer_active) {
    uv_timer_stop(&job->timer);
    job->timer_active = false;
  }
  uv_timer_stop(&job->render_timer);
  net_frame_pool_release(job->preview_pool); /* frames out stay valid */
  job->preview_pool = NULL;
#ifdef __linux__
  if (job->tick_fd >= 0 && !uv_is_closing((uv_handle_t*) &job->tick_poll)) {
    uv_poll_stop(&job->tick_poll);
    uv_close((uv_handle_t*) &job->tick_poll, on_tick_poll_closed);
  }
#endif
  if (job->ready != NULL) {
    srv_render_free(job->ready);
    job->ready = NULL;
  }
}


void srv_engine_rebuild_preview(srv_job_t* job) {
  if (job->latest[CORE_ENC_BASE64] != NULL || job->preview_rebuild_pending ||
      job->state != CORE_JOB_COMPLETED || job->final_preview_seq == 0) {
    return;
  }
  srv_render_t* r = render_new(job, SRV_RENDER_REBUILD);
  if (r == NULL) {
    return;
  }
  r->progress = 1.0;
  if (submit(job, r) == 0) {
    job->preview_rebuild_pending = true;
  }
}
