/* engine_classic.c: a classic run's life. See engine_classic.h. Running ->
 * the mask file (mask_run.c) -> open (pool: the volume opened, the mask
 * mapped, statistics, plan) -> the windows on the budget's workers
 * (classic_windows.c) -> once every window landed, the final pass and the
 * close (pool) -> the job's final pass (mask_run.c) -> completed. Stopping
 * (cancel, failure, shutdown) hands out no more windows; those in flight
 * finish (a queued one sees the stop flag and skips), every slot frees its
 * scratch, the files are closed on the pool, and the run is freed once no
 * work of it is in flight, so each resource is released exactly once.
 * Loop thread, except the *_work functions (pool). */
#include "server/engine_classic.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/seg_params_json.h"
#include "server/classic_run.h"
#include "server/jobs.h"
#include "server/mask_run.h"


int srv_classic_check_params(const char* engine_params,
                             char* why,
                             size_t why_len) {
  core_seg_params_t p;
  return core_seg_params_from_text(engine_params, &p, why, why_len);
}


json_t* srv_classic_params_info(void) {
  json_t* seg = core_seg_params_describe();
  return json_pack(
      "{s:{s:s, s:[s,s], s:s, s:s}, s:{s:s, s:o?, s:s}}", "preview_downsample",
      "type", "string", "enum", "nearest", "max", "default", "nearest",
      "description",
      "how previews are made from the mask: the label of each block's first "
      "voxel, or its largest label (thin membranes survive)",
      "engine_params", "type", "object", "properties", seg, "description",
      "the segmenter's parameters (docs/engines.md, classic); each optional");
}


/* ---- the run's end ---- */

static void io_close_work(uv_work_t* req) {
  srv_classic_run_t* run = req->data;
  srv_classic_io_close(&run->io);
}


static void after_io_close(uv_work_t* req, int status);


void srv_classic_run_maybe_free(srv_classic_run_t* run) {
  if (!run->is_stopped || run->works > 0) {
    return;
  }
  assert(run->held == 0);
  if (srv_classic_io_is_open(&run->io)) {
    if (!run->is_closing) {
      run->is_closing = true;
      run->works++;
      int rc = uv_queue_work(run->job->ctx->loop, &run->io_req, io_close_work,
                             after_io_close);
      assert(rc == 0);
      (void) rc;
    }
    return;
  }
  srv_job_t* job = run->job;
  free(run);
  srv_job_unref(job);
}


static void after_io_close(uv_work_t* req, int status) {
  (void) status;
  srv_classic_run_t* run = req->data;
  run->works--;
  run->is_closing = false;
  srv_classic_run_maybe_free(run);
}


bool srv_classic_run_is_live(const srv_classic_run_t* run) {
  const srv_job_t* job = run->job;
  return !run->is_stopped && !job->ctx->is_stopping &&
         job->state == CORE_JOB_RUNNING && !job->is_ending;
}


void srv_classic_run_fail(srv_classic_run_t* run,
                          const char* code,
                          bool retryable,
                          const char* message,
                          const char* hint) {
  srv_job_t* job = run->job;
  if (!srv_classic_run_is_live(run)) {
    return;
  }
  srv_log(&job->ctx->log, SRV_LOG_WARN, "job.classic_failed", "s:job_id",
          job->id, "s:code", code, "s:message", message, NULL);
  srv_job_finish(job, CORE_JOB_FAILED,
                 json_pack("{s:s, s:s, s:s?, s:b}", "code", code, "message",
                           message, "hint", hint, "retryable", retryable));
}


void srv_classic_run_fail_with(srv_classic_run_t* run,
                               int err,
                               const char* why) {
  char msg[sizeof(run->io.why)];
  if (why == NULL) {
    srv_classic_io_describe(&run->io, err, msg, sizeof(msg));
    why = msg;
  }
  srv_classic_failure_t f = srv_classic_io_failure(err);
  srv_classic_run_fail(run, f.code, f.retryable, why, f.hint);
}


/* ---- open, final pass ---- */

static void after_final(uv_work_t* req, int status);


static void final_work(uv_work_t* req) {
  srv_classic_run_t* run = req->data;
  srv_classic_io_t* io = &run->io;
  uint64_t t0 = uv_hrtime();
  run->io_err =
      core_seg_finish(&io->in, &io->params, &io->stats, io->mask, &run->sum);
  if (run->io_err == 0) {
    /* The windows read a volume_path file that someone may have rewritten
     * in place meanwhile: its mask would mix two files. */
    run->io_err = srv_classic_io_check_unchanged(io);
  }
  srv_classic_io_close(io); /* the mask's pages stay in the page cache */
  run->finish_s = (double) (uv_hrtime() - t0) / 1e9;
}


/* No preview render is in flight (mask_run.c): the final pass may rewrite
 * the mask. Never called once the run is stopped (the mask run is released
 * first), so `run` is alive. */
static void on_previews_paused(void* arg) {
  srv_classic_run_t* run = arg;
  run->works++;
  int err =
      uv_queue_work(run->job->ctx->loop, &run->io_req, final_work, after_final);
  assert(err == 0);
  (void) err;
}


void srv_classic_run_windows_done(srv_classic_run_t* run) {
  run->windows_s = (double) (uv_hrtime() - run->windows_start_ns) / 1e9;
  srv_mask_run_progress(run->mask, 0.95, "final pass: joining components");
  /* The final pass relabels in place: a preview read meanwhile would show
   * a half-relabelled mask. */
  srv_mask_run_pause(run->mask, on_previews_paused, run);
}


static json_t* summary_json(const srv_classic_run_t* run) {
  const srv_classic_io_t* io = &run->io;
  const core_seg_summary_t* s = &run->sum;
  return json_pack(
      "{s:I, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f}, "
      "s:{s:f, s:f, s:f}, s:o?}",
      "windows", (json_int_t) io->plan.windows, "window", (int) io->plan.window,
      "halo", (int) io->plan.halo, "workers", (int) run->held_max,
      "scratch_bytes_per_worker", (json_int_t) io->scratch_bytes, "components",
      (json_int_t) s->components, "dropped", (json_int_t) s->dropped,
      "particles", (json_int_t) s->particles, "sampled_voxels",
      (json_int_t) io->stats.sampled, "volume", "background",
      (double) io->stats.background, "noise_sd", (double) io->stats.noise_sd,
      "seconds", "open", io->open_s, "windows", run->windows_s, "final_pass",
      run->finish_s, "params", core_seg_params_to_json(&io->params));
}


static void after_final(uv_work_t* req, int status) {
  (void) status;
  srv_classic_run_t* run = req->data;
  run->is_open = false;
  if (run->io_err != 0) {
    srv_classic_run_fail_with(run, run->io_err, NULL);
  } else if (srv_classic_run_is_live(run)) {
    srv_job_t* job = run->job;
    srv_log(&job->ctx->log, SRV_LOG_INFO, "job.classic_done", "s:job_id",
            job->id, "i:windows", (int64_t) run->io.plan.windows, "i:workers",
            (int64_t) run->held_max, "f:open_s", run->io.open_s, "f:windows_s",
            run->windows_s, "f:final_pass_s", run->finish_s, NULL);
    srv_mask_run_set_stats(run->mask, summary_json(run));
    srv_mask_run_finish(run->mask);
  }
  run->works--;
  srv_classic_run_maybe_free(run);
}


static void open_work(uv_work_t* req) {
  srv_classic_run_t* run = req->data;
  run->io_err = srv_classic_io_open(&run->io);
}


static void after_open(uv_work_t* req, int status) {
  (void) status;
  srv_classic_run_t* run = req->data;
  srv_job_t* job = run->job;
  if (run->io_err != 0) {
    srv_classic_run_fail_with(run, run->io_err, run->io.why);
  } else if (srv_classic_run_is_live(run)) {
    run->is_open = true;
    uint64_t windows = run->io.plan.windows;
    run->cap = windows < run->slot_count ? (unsigned) windows : run->slot_count;
    run->windows_start_ns = uv_hrtime();
    srv_log(&job->ctx->log, SRV_LOG_INFO, "job.classic_started", "s:job_id",
            job->id, "i:windows", (int64_t) windows, "i:window",
            (int64_t) run->io.plan.window, "i:scratch_bytes",
            (int64_t) run->io.scratch_bytes, "f:open_s", run->io.open_s, NULL);
    char message[96];
    snprintf(message, sizeof(message), "window 0 of %llu",
             (unsigned long long) windows);
    srv_mask_run_progress(run->mask, 0, message);
    srv_classic_claim(run);
  }
  run->works--;
  srv_classic_run_maybe_free(run);
}


static void on_mask_ready(void* arg) {
  srv_classic_run_t* run = arg;
  srv_job_t* job = run->job;
  const srv_ctx_t* ctx = job->ctx;
  srv_classic_io_t* io = &run->io;
  if (job->volume_id[0] != '\0') { /* as volumes.c names the file */
    snprintf(io->path, sizeof(io->path), "%s/volumes/%s.mrc",
             srv_config_files_dir(&ctx->cfg), job->volume_id);
    snprintf(io->name, sizeof(io->name), "volume %s", job->volume_id);
  } else {
    io->is_beneath = true;
    io->root_fd = ctx->data_root_fd;
    snprintf(io->path, sizeof(io->path), "%s", job->volume_path);
    snprintf(io->name, sizeof(io->name), "volume_path '%.1000s'",
             job->volume_path);
  }
  snprintf(io->mask_path, sizeof(io->mask_path), "%s",
           srv_mask_run_path(run->mask));
  srv_mask_run_progress(run->mask, 0, "reading the volume");
  run->works++;
  int err = uv_queue_work(ctx->loop, &run->io_req, open_work, after_open);
  assert(err == 0);
  (void) err;
}


/* ---- ops ---- */

static void classic_start(srv_job_t* job) {
  srv_classic_budget_t* b = job->ctx->classic;
  srv_classic_run_t* run =
      calloc(1, sizeof(*run) + b->workers * sizeof(run->slots[0]));
  srv_job_set_running(job);
  if (run == NULL) {
    srv_job_finish(job, CORE_JOB_FAILED,
                   json_pack("{s:s, s:s, s:s, s:b}", "code", "internal",
                             "message", "out of memory starting the engine",
                             "hint", "submit the job again", "retryable", 1));
    return;
  }
  run->job = srv_job_ref(job);
  run->budget = b;
  run->slot_count = b->workers;
  for (unsigned i = 0; i < run->slot_count; i++) {
    run->slots[i].run = run;
    run->slots[i].req.data = &run->slots[i];
  }
  run->io_req.data = run;
  atomic_init(&run->stop, false);
  core_list_init(&run->wait_link);
  srv_classic_io_init(&run->io);
  run->io.shape = job->shape;
  job->run = run;
  char why[512];
  if (job->volume_id[0] == '\0' && job->volume_path == NULL) {
    srv_classic_run_fail(run, "engine_failed", false, "classic needs a volume",
                         NULL);
  } else if (core_seg_params_from_text(job->engine_params, &run->io.params, why,
                                       sizeof(why)) != 0) {
    srv_classic_run_fail(run, "engine_failed", false, why,
                         "submit it with valid params");
  } else if (srv_mask_run_start(job, on_mask_ready, run, &run->mask) != 0) {
    run->mask = NULL;
    srv_classic_run_fail(run, "internal", true,
                         "out of memory starting the engine", NULL);
  }
}


static void classic_stop(srv_job_t* job) {
  srv_classic_run_t* run = job->run;
  if (run == NULL) {
    return;
  }
  job->run = NULL;
  run->is_stopped = true;
  atomic_store(&run->stop, true);
  srv_mask_run_release(run->mask);
  run->mask = NULL;
  srv_classic_release_idle(run);
  srv_classic_run_maybe_free(run);
}


const srv_engine_ops_t srv_classic_engine = {
    .start = classic_start,
    .stop = classic_stop,
    .rebuild_preview = srv_mask_rebuild_preview,
};
