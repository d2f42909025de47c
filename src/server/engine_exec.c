/* engine_exec.c: exec engines' runs. See engine_exec.h; stdout parsing and
 * the stderr log are exec_io.c. A run: device slot -> running -> the mask
 * file (mask_run.c) -> the log file -> spawn (shim, own group) -> request
 * on stdin -> lines on stdout until the process exits and its pipes end ->
 * exit 0: the final pass (the job completes), else failed with the reason
 * and stderr's tail. Stopping (cancel, failure, shutdown) SIGTERMs the
 * group; after the grace the shim kills every descendant (SIGUSR1: also
 * those that left the group), and the group is SIGKILLed if the shim has
 * not exited SHIM_KILL_MS later; the run is freed once the process
 * has exited and every handle and file operation is done. Loop thread. */
#include "server/engine_exec.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine_proto.h"
#include "server/exec_io.h"
#include "server/jobs.h"
#include "server/mask_run.h"

extern char** environ;


void srv_devices_init(srv_devices_t* d, const srv_engine_cfg_t* cfg) {
  memset(d, 0, sizeof(*d));
  d->count = cfg->device_count;
  d->cfg = cfg;
}


static int take_device(srv_devices_t* d) {
  for (unsigned i = 0; i < d->count; i++) {
    if (!d->busy[i]) {
      d->busy[i] = true;
      return (int) i;
    }
  }
  return -1;
}


#define SHIM_NAME "cryomamba-engine-shim"
/* How long the shim has to kill the job's processes when told to (SIGUSR1)
 * before the group is SIGKILLed over its head. */
#define SHIM_KILL_MS 2000


/* `dir`/`rel`/SHIM_NAME into out, `rel` skipped when absolute; false when
 * it does not fit. */
static bool shim_path(char* out, size_t cap, const char* dir, const char* rel) {
  int len = rel[0] == '/' ? snprintf(out, cap, "%s/%s", rel, SHIM_NAME)
            : rel[0] == '\0'
                ? snprintf(out, cap, "%s/%s", dir, SHIM_NAME)
                : snprintf(out, cap, "%s/%s/%s", dir, rel, SHIM_NAME);
  return len >= 0 && (size_t) len < cap;
}


int srv_exec_find_shim(srv_engine_cfg_t* cfg, char* err, size_t err_len) {
  if (cfg->exec_count == 0) {
    return 0;
  }
  if (cfg->shim[0] == '\0') {
    /* Beside the server (the build tree), else where meson installs it
     * (relative to the server's directory, so an unpacked tree works). */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char* slash = n > 0 ? memrchr(self, '/', (size_t) n) : NULL;
    if (slash == NULL) {
      snprintf(err, err_len, "cannot find the exec shim (--engine-shim)");
      return -1;
    }
    *slash = '\0';
    char beside[sizeof(cfg->shim)];
    char installed[sizeof(cfg->shim)];
    if (!shim_path(beside, sizeof(beside), self, "") ||
        !shim_path(installed, sizeof(installed), self, SRV_SHIM_DIR)) {
      snprintf(err, err_len, "the server's path is too long (--engine-shim)");
      return -1;
    }
    const char* found = access(beside, X_OK) == 0      ? beside
                        : access(installed, X_OK) == 0 ? installed
                                                       : NULL;
    if (found == NULL) {
      snprintf(err, err_len,
               "the exec shim is neither beside the server (%s) nor "
               "installed (%s): %s (--engine-shim)",
               beside, installed, strerror(errno));
      return -1;
    }
    memcpy(cfg->shim, found, strlen(found) + 1);
  }
  if (access(cfg->shim, X_OK) != 0) {
    snprintf(err, err_len, "the exec shim %s cannot be run: %s (--engine-shim)",
             cfg->shim, strerror(errno));
    return -1;
  }
  return 0;
}


static const srv_exec_engine_cfg_t* ecfg_of(const srv_job_t* job) {
  return job->engine->data;
}


static bool exec_can_start(const srv_job_t* job) {
  const srv_devices_t* d = job->ctx->devices;
  if (!job->engine->uses_devices || d == NULL) {
    return true;
  }
  for (unsigned i = 0; i < d->count; i++) {
    if (!d->busy[i]) {
      return true;
    }
  }
  return false;
}


/* The run is done with when the job let go of it, its process (if any)
 * exited, and nothing of it is in flight. */
static void run_maybe_free(srv_exec_run_t* run) {
  if (!run->is_abandoned || (run->is_spawned && !run->has_exited)) {
    return;
  }
  srv_exec_io_close(run); /* idempotent: pipes, timers, the log fd */
  if (run->open_handles > 0 || run->fs_pending > 0) {
    return;
  }
  srv_job_t* job = run->job;
  free(run->line);
  free(run);
  srv_job_unref(job);
}


void srv_exec_run_maybe_free(srv_exec_run_t* run) {
  run_maybe_free(run);
}


/* A failure of the job, with the stderr tail appended to `what`. */
void srv_exec_fail(srv_exec_run_t* run,
                   const char* code,
                   bool retryable,
                   const char* what) {
  srv_job_t* job = run->job;
  if (run->is_abandoned || job->state != CORE_JOB_RUNNING || job->is_ending) {
    return;
  }
  char tail[640];
  srv_exec_io_tail(run, tail, sizeof(tail), 600);
  char message[1024];
  snprintf(message, sizeof(message), "%.360s%s%s", what,
           tail[0] != '\0' ? "; stderr: " : "", tail);
  char hint[160];
  snprintf(hint, sizeof(hint),
           "the engine's stderr is in artifacts/%s-engine.log under the "
           "server's state directory",
           job->id);
  srv_log(&job->ctx->log, SRV_LOG_WARN, "job.engine_failed", "s:job_id",
          job->id, "s:engine", job->engine->name, "s:code", code, "s:message",
          message, NULL);
  srv_job_finish(job, CORE_JOB_FAILED,
                 json_pack("{s:s, s:s, s:s, s:b}", "code", code, "message",
                           message, "hint", hint, "retryable", retryable));
}


/* The process exited and its output ended (or stopped ending): the job's
 * outcome. */
void srv_exec_decide(srv_exec_run_t* run) {
  if (run->is_decided || !run->has_exited) {
    return;
  }
  run->is_decided = true;
  if (run->is_abandoned) {
    run_maybe_free(run);
    return;
  }
  char what[256];
  const char* name = run->job->engine->name;
  if (run->term_signal == 0 && run->exit_status == 0) {
    srv_mask_run_finish(run->mask);
    return;
  }
  if (run->term_signal != 0) {
    snprintf(what, sizeof(what), "engine '%s' was killed by signal %d (%s)",
             name, run->term_signal, strsignal(run->term_signal));
  } else if (run->exit_status == 127) {
    snprintf(what, sizeof(what),
             "engine '%s' exited with status 127 (its command was not found "
             "or could not be run)",
             name);
  } else if (run->exit_status > 128 && run->exit_status < 160) {
    int sig = (int) run->exit_status - 128; /* /bin/sh's report of it */
    snprintf(what, sizeof(what),
             "engine '%s' exited with status %lld (its shell's way of "
             "saying signal %d, %s)",
             name, (long long) run->exit_status, sig, strsignal(sig));
  } else {
    snprintf(what, sizeof(what), "engine '%s' exited with status %lld", name,
             (long long) run->exit_status);
  }
  srv_exec_fail(run, "engine_failed", false, what);
}


void srv_exec_on_exit(uv_process_t* proc, int64_t status, int term_signal) {
  srv_exec_run_t* run = proc->data;
  srv_job_t* job = run->job;
  run->has_exited = true;
  run->exit_status = status;
  run->term_signal = term_signal;
  /* Whatever the engine left behind in its group goes now. */
  kill(-proc->pid, SIGKILL);
  uv_close((uv_handle_t*) proc, srv_exec_on_handle_closed);
  uv_timer_stop(&run->wall);
  uv_timer_stop(&run->grace);
  if (run->device >= 0) {
    job->ctx->devices->busy[run->device] = false;
    run->device = -1;
    srv_jobs_schedule(job->ctx); /* a job may be waiting for the slot */
  }
  srv_log(&job->ctx->log, SRV_LOG_INFO, "job.engine_exited", "s:job_id",
          job->id, "i:status", status, "i:signal", (int64_t) term_signal, NULL);
  if (run->out_eof && run->err_eof) {
    srv_exec_decide(run);
  } else {
    /* A descendant that left the group may hold the pipes: decide on
     * what was read by then. */
    uv_timer_start(&run->drain, srv_exec_on_drain, SRV_EXEC_DRAIN_MS, 0);
  }
  run_maybe_free(run);
}


static void on_wall(uv_timer_t* t) {
  srv_exec_run_t* run = t->data;
  char what[160];
  snprintf(what, sizeof(what),
           "engine '%s' ran longer than its wall-time "
           "limit of %g s",
           run->job->engine->name, run->wall_time_s);
  srv_exec_fail(run, "wall_time_exceeded", false, what);
}


/* The grace ended: the shim SIGKILLs every descendant of the job, in the
 * group or not (engine_shim.c), then exits; the group's SIGKILL is the
 * fallback for a shim that cannot (stopped by its engine, say). */
static void on_grace(uv_timer_t* t) {
  srv_exec_run_t* run = t->data;
  if (!run->is_spawned || run->has_exited) {
    return;
  }
  if (!run->is_kill_asked) {
    run->is_kill_asked = true;
    srv_log(&run->job->ctx->log, SRV_LOG_WARN, "job.engine_killed", "s:job_id",
            run->job->id, NULL);
    kill(run->proc.pid, SIGUSR1);
    uv_timer_start(&run->grace, on_grace, SHIM_KILL_MS, 0);
    return;
  }
  kill(-run->proc.pid, SIGKILL);
}


/* The request, one JSON line on stdin. NULL on ENOMEM. */
static char* request_json(const srv_exec_run_t* run) {
  const srv_job_t* job = run->job;
  const srv_ctx_t* ctx = job->ctx;
  char vol[2200] = "";
  if (job->volume_id[0] != '\0') { /* as volumes.c names the file */
    snprintf(vol, sizeof(vol), "%s/volumes/%s.mrc",
             srv_config_files_dir(&ctx->cfg), job->volume_id);
  } else if (job->volume_path != NULL) {
    snprintf(vol, sizeof(vol), "%s/%s", ctx->cfg.data_root, job->volume_path);
  }
  json_t* eparams = job->engine_params != NULL
                        ? json_loads(job->engine_params, 0, NULL)
                        : json_object();
  const core_shape_t* s = &job->shape;
  json_t* req = json_pack(
      "{s:i, s:s, s:s, s:{s:s?, s:[I,I,I], s:[f,f,f]}, s:{s:s, s:s, s:s, "
      "s:[I,I,I]}, s:{s:f, s:I, s:s, s:o}, s:s?}",
      "protocol", CORE_ENGINE_PROTOCOL_VERSION, "job_id", job->id, "engine",
      job->engine->name, "volume", "path", vol[0] != '\0' ? vol : NULL, "shape",
      (json_int_t) s->d[0], (json_int_t) s->d[1], (json_int_t) s->d[2],
      "voxel_size", job->voxel_size[0], job->voxel_size[1], job->voxel_size[2],
      "mask", "path", srv_mask_run_path(run->mask), "dtype", "uint8", "order",
      "C", "shape", (json_int_t) s->d[0], (json_int_t) s->d[1],
      (json_int_t) s->d[2], "params", "preview_hz", job->params.preview_hz,
      "preview_scale", (json_int_t) job->params.preview_scale,
      "preview_downsample",
      core_downsample_name(job->params.preview_downsample), "engine_params",
      eparams != NULL ? eparams : json_object(), "device",
      run->device >= 0 ? ctx->devices->cfg->devices[run->device] : NULL);
  char* text = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  return text;
}


/* The engine's environment: the server's, without its token and variables
 * of ours, plus the protocol version, the job id and the device. The
 * strings in `extra` are the caller's; the array is malloc'd. */
static char** make_env(const srv_exec_run_t* run, char extra[3][160]) {
  size_t n = 0;
  while (environ[n] != NULL) {
    n++;
  }
  char** env = calloc(n + 4, sizeof(*env));
  if (env == NULL) {
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "CRYOMAMBA_TOKEN=", 16) != 0 &&
        strncmp(environ[i], "CRYOMAMBA_ENGINE_", 17) != 0 &&
        strncmp(environ[i], "CRYOMAMBA_JOB_ID=", 17) != 0 &&
        (run->device < 0 ||
         strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21) != 0)) {
      env[k++] = environ[i];
    }
  }
  snprintf(extra[0], 160, "CRYOMAMBA_ENGINE_PROTOCOL=%d",
           CORE_ENGINE_PROTOCOL_VERSION);
  snprintf(extra[1], 160, "CRYOMAMBA_JOB_ID=%s", run->job->id);
  env[k++] = extra[0];
  env[k++] = extra[1];
  if (run->device >= 0) {
    snprintf(extra[2], 160, "CUDA_VISIBLE_DEVICES=%s",
             run->job->ctx->devices->cfg->devices[run->device]);
    env[k++] = extra[2];
  }
  env[k] = NULL;
  return env;
}


/* The log file is open: start the process. */
void srv_exec_spawn(srv_exec_run_t* run) {
  srv_job_t* job = run->job;
  srv_ctx_t* ctx = job->ctx;
  const srv_engine_cfg_t* c = &ctx->cfg.engines;
  char pid[24];
  snprintf(pid, sizeof(pid), "%d", (int) getpid());
  char* args[] = {(char*) c->shim,       pid, "--", "/bin/sh", "-c",
                  ecfg_of(job)->command, NULL};
  char extra[3][160];
  char** env = make_env(run, extra);
  char* request = request_json(run);
  int err = env != NULL && request != NULL ? 0 : -ENOMEM;
  if (err == 0) {
    err = srv_exec_io_spawn(run, args, env, request);
  }
  free(env);
  if (err != 0) {
    free(request);
    char what[256];
    snprintf(what, sizeof(what), "engine '%s' could not be started: %s",
             job->engine->name, uv_strerror(err));
    srv_exec_fail(run, "engine_failed", true, what);
    return;
  }
  run->is_spawned = true;
  srv_log(&ctx->log, SRV_LOG_INFO, "job.engine_started", "s:job_id", job->id,
          "s:engine", job->engine->name, "i:pid", (int64_t) run->proc.pid,
          "i:device", (int64_t) run->device, NULL);
  if (run->wall_time_s > 0) {
    uv_timer_start(&run->wall, on_wall, (uint64_t) (run->wall_time_s * 1000),
                   0);
  }
}


static void on_mask_ready(void* arg) {
  srv_exec_run_t* run = arg;
  if (srv_exec_io_open_log(run) != 0) {
    srv_exec_fail(run, "internal", true, "could not open the engine's log");
  }
}


static void exec_start(srv_job_t* job) {
  srv_ctx_t* ctx = job->ctx;
  srv_exec_run_t* run = calloc(1, sizeof(*run));
  if (run != NULL &&
      (run->line = malloc(ctx->cfg.engines.max_line_bytes)) == NULL) {
    free(run);
    run = NULL;
  }
  if (run == NULL) {
    srv_job_set_running(job);
    srv_job_finish(job, CORE_JOB_FAILED,
                   json_pack("{s:s, s:s, s:s, s:b}", "code", "internal",
                             "message", "out of memory starting the engine",
                             "hint", "submit the job again", "retryable", 1));
    return;
  }
  run->job = srv_job_ref(job);
  run->device = job->engine->uses_devices ? take_device(ctx->devices) : -1;
  double wall = ecfg_of(job)->wall_time_s;
  run->wall_time_s = wall > 0 ? wall : ctx->cfg.engines.wall_time_s;
  srv_exec_io_init(run);
  job->run = run;
  srv_job_set_running(job);
  if (srv_mask_run_start(job, on_mask_ready, run, &run->mask) != 0) {
    run->mask = NULL;
    srv_exec_fail(run, "internal", true, "out of memory starting the engine");
  }
}


static void exec_stop(srv_job_t* job) {
  srv_exec_run_t* run = job->run;
  if (run == NULL) {
    return;
  }
  job->run = NULL;
  run->is_abandoned = true;
  srv_mask_run_release(run->mask);
  run->mask = NULL;
  uv_timer_stop(&run->wall);
  if (run->is_spawned && !run->has_exited && !run->is_killing) {
    run->is_killing = true;
    srv_exec_io_stop_reading(run); /* nothing it says matters now */
    double grace = job->ctx->cfg.engines.kill_grace_s;
    if (grace > 0) {
      kill(-run->proc.pid, SIGTERM);
    }
    uv_timer_start(&run->grace, on_grace, (uint64_t) (grace * 1000), 0);
  }
  if (run->device >= 0 && !run->is_spawned) {
    job->ctx->devices->busy[run->device] = false; /* never used */
    run->device = -1;
  }
  run_maybe_free(run);
}


const srv_engine_ops_t srv_exec_engine = {
    .start = exec_start,
    .stop = exec_stop,
    .rebuild_preview = srv_mask_rebuild_preview,
    .can_start = exec_can_start,
};
