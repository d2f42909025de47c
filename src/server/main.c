/* main.c: cryomambad, the CryoMamba inference server. Parses the config,
 * restores jobs, listens, runs the loop until SIGINT/SIGTERM, then closes
 * every WebSocket with 1001, waits for renders and the store, and exits 0. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "server/cluster.h"
#include "server/cluster_files.h"
#include "server/conn.h"
#include "server/ctx.h"
#include "server/engine.h"
#include "server/engine_classic.h"
#include "server/engine_exec.h"
#include "server/engines.h"
#include "server/file_sync.h"
#include "server/http_conn.h"
#include "server/jobs.h"
#include "server/store.h"
#include "server/upload_complete.h"
#include "server/uploads.h"
#include "server/volume.h"
#include "server/volumes.h"


int64_t srv_now_us(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}


static int make_dir(const char* path) {
  if (mkdir(path, 0755) != 0) {
    return errno == EEXIST ? 0 : -errno;
  }
  return srv_fsync_parent(path); /* a new directory's name is durable */
}


static void on_signal(uv_signal_t* handle, int signum) {
  srv_ctx_t* ctx = handle->data;
  if (ctx->is_stopping) {
    return;
  }
  ctx->is_stopping = true;
  srv_log(&ctx->log, SRV_LOG_INFO, "server.stopping", "i:signal",
          (int64_t) signum, "i:connections", (int64_t) ctx->conn_count, NULL);
  /* Stop the engines; running jobs stay "running" in the store and are
   * marked interrupted at the next start. */
  for (srv_job_t* job = srv_jobs_next(ctx, NULL); job != NULL;
       job = srv_jobs_next(ctx, job)) {
    job->engine->ops->stop(job);
  }
  srv_cluster_stop(ctx);
  uv_close((uv_handle_t*) &ctx->listener, NULL);
  uv_close((uv_handle_t*) &ctx->sigint, NULL);
  uv_close((uv_handle_t*) &ctx->sigterm, NULL);
  srv_conns_shutdown(ctx);
  /* The sweep timer keeps running until the last connection is gone. */
}


static void on_stop_check(uv_timer_t* timer) {
  srv_ctx_t* ctx = timer->data;
  if (ctx->is_stopping && ctx->conn_count == 0) {
    uv_close((uv_handle_t*) &ctx->sweep_timer, NULL);
    /* Commits what is queued and runs the last callbacks (whose
     * connections are gone), then lets the loop end. */
    srv_store_close(ctx->store);
    ctx->store = NULL;
    return;
  }
  srv_conns_sweep(ctx);
  uint64_t now = uv_now(ctx->loop);
  if (now - ctx->housekeeping_ms >= 1000) {
    ctx->housekeeping_ms = now;
    srv_jobs_housekeeping(ctx);
    srv_uploads_housekeeping(ctx);
    srv_cluster_sweep_tick(ctx);
    srv_cluster_usage_tick(ctx);
    srv_cluster_retain_tick(ctx);
  }
}


/* Temporary artifacts are written, fsynced and renamed; one left over was
 * cut short by a crash. Start-up, before the loop runs. */
static void remove_orphans(srv_ctx_t* ctx, const char* artifacts) {
  DIR* dir = opendir(artifacts);
  if (dir == NULL) {
    return;
  }
  int dfd = dirfd(dir);
  struct dirent* e;
  while ((e = readdir(dir)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0 &&
        unlinkat(dfd, e->d_name, 0) == 0) {
      srv_log(&ctx->log, SRV_LOG_INFO, "artifacts.orphan_removed", "s:file",
              e->d_name, NULL);
    }
  }
  closedir(dir);
}


static int restore_job(void* arg, const json_t* rec) {
  srv_ctx_t* ctx = arg;
  const char* engine = json_string_value(
      json_object_get(json_object_get(rec, "params"), "engine"));
  return srv_job_restore(ctx, rec,
                         srv_engines_for_record(ctx->engines, engine));
}


static int restore_all(srv_ctx_t* ctx) {
  int bad = 0;
  int restored = srv_store_restore_table(ctx->store, SRV_STORE_JOBS,
                                         restore_job, ctx, &bad);
  if (bad > 0) {
    srv_log(&ctx->log, SRV_LOG_WARN, "store.records_unreadable", "i:count",
            (int64_t) bad, NULL);
  }
  return restored;
}


static int resolve_dirs(srv_config_t* cfg) {
  if (make_dir(cfg->state_dir) != 0) {
    fprintf(stderr, "cryomambad: cannot create state directory %s: %s\n",
            cfg->state_dir, strerror(errno));
    return -1;
  }
  char artifacts[1100];
  snprintf(artifacts, sizeof(artifacts), "%s/artifacts", cfg->state_dir);
  if (make_dir(artifacts) != 0) {
    fprintf(stderr, "cryomambad: cannot create %s: %s\n", artifacts,
            strerror(errno));
    return -1;
  }
  const char* subdirs[] = {"uploads", "volumes"};
  for (int i = 0; i < 2; i++) {
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/%s", cfg->state_dir, subdirs[i]);
    if (make_dir(dir) != 0) {
      fprintf(stderr, "cryomambad: cannot create %s: %s\n", dir,
              strerror(errno));
      return -1;
    }
  }
  char state[PATH_MAX];
  /* Absolute: exec engines get paths under it, whatever their cwd. */
  if (realpath(cfg->state_dir, state) == NULL ||
      strlen(state) >= sizeof(cfg->state_dir)) {
    fprintf(stderr, "cryomambad: state directory %s: %s\n", cfg->state_dir,
            strerror(errno));
    return -1;
  }
  memcpy(cfg->state_dir, state, strlen(state) + 1);
  if (cfg->data_root[0] != '\0') {
    char real[PATH_MAX];
    if (realpath(cfg->data_root, real) == NULL) {
      fprintf(stderr, "cryomambad: data root %s: %s\n", cfg->data_root,
              strerror(errno));
      return -1;
    }
    if (strlen(real) >= sizeof(cfg->data_root)) {
      fprintf(stderr, "cryomambad: data root path too long\n");
      return -1;
    }
    memcpy(cfg->data_root, real, strlen(real) + 1);
  }
  return 0;
}


static int start_listening(srv_ctx_t* ctx) {
  struct sockaddr_storage addr;
  int err = strchr(ctx->cfg.bind, ':') != NULL
                ? uv_ip6_addr(ctx->cfg.bind, ctx->cfg.port,
                              (struct sockaddr_in6*) &addr)
                : uv_ip4_addr(ctx->cfg.bind, ctx->cfg.port,
                              (struct sockaddr_in*) &addr);
  if (err != 0) {
    fprintf(stderr, "cryomambad: invalid bind address '%s'\n", ctx->cfg.bind);
    return -1;
  }
  uv_tcp_init(ctx->loop, &ctx->listener);
  ctx->listener.data = ctx;
  err = uv_tcp_bind(&ctx->listener, (struct sockaddr*) &addr, 0);
  if (err == 0) {
    err =
        uv_listen((uv_stream_t*) &ctx->listener, 1024, srv_conn_on_connection);
  }
  if (err != 0) {
    fprintf(stderr, "cryomambad: cannot listen on %s:%d: %s\n", ctx->cfg.bind,
            ctx->cfg.port, uv_strerror(err));
    return -1;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&ctx->listener, (struct sockaddr*) &bound, &len);
  int port = ntohs(bound.ss_family == AF_INET6
                       ? ((struct sockaddr_in6*) &bound)->sin6_port
                       : ((struct sockaddr_in*) &bound)->sin_port);
  const char* fmt =
      bound.ss_family == AF_INET6 ? "http://[%s]:%d" : "http://%s:%d";
  snprintf(ctx->listen_url, sizeof(ctx->listen_url), fmt, ctx->cfg.bind, port);
  return 0;
}


/* Before anything is queued (libuv sizes its pool at the first work): the
 * worker pool gets --classic-workers threads for classic's windows plus 4
 * for everything else (previews, uploads, probes, artifacts), so a busy
 * segmenter never holds up a preview by more than the queue it is in. An
 * operator's UV_THREADPOOL_SIZE wins, and then classic keeps at least one
 * thread free for the rest. */
static void size_pool(srv_ctx_t* ctx) {
  unsigned* workers = &ctx->cfg.engines.classic_workers;
  if (*workers == 0) {
    *workers = srv_classic_default_workers();
  }
  const char* env = getenv("UV_THREADPOOL_SIZE");
  long pool = env != NULL ? strtol(env, NULL, 10) : 0;
  if (pool <= 0) {
    char size[16];
    snprintf(size, sizeof(size), "%u", *workers + 4);
    setenv("UV_THREADPOOL_SIZE", size, 1);
    return;
  }
  if (pool > 1024) {
    pool = 1024; /* libuv's own bound */
  }
  if ((long) *workers >= pool) {
    unsigned capped = pool > 1 ? (unsigned) pool - 1 : 1;
    srv_log(&ctx->log, SRV_LOG_WARN, "server.classic_workers_capped", "i:asked",
            (int64_t) *workers, "i:threadpool", (int64_t) pool, "i:workers",
            (int64_t) capped, NULL);
    *workers = capped;
  }
}


int main(int argc, char** argv) {
  static srv_ctx_t ctx_storage; /* large (read buffer): not on the stack */
  static srv_engines_t engines; /* read-only once the loop runs */
  static srv_devices_t devices; /* exec jobs' device slots */
  static srv_classic_budget_t classic; /* classic's workers */
  srv_ctx_t* ctx = &ctx_storage;
  srv_config_default(&ctx->cfg);
  int rc = srv_config_parse(&ctx->cfg, argc, argv);
  if (rc != 0) {
    return rc > 0 ? 0 : 2;
  }
  if (ctx->cfg.hash_token != NULL) {
    srv_auth_print_line(ctx->cfg.hash_token, "write");
    return 0;
  }
  char err[512];
  if (srv_config_check_role(&ctx->cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "cryomambad: %s\n", err);
    return 2;
  }
  if (ctx->cfg.auth_file[0] != '\0' &&
      srv_auth_load_file(&ctx->auth, ctx->cfg.auth_file, err, sizeof(err)) !=
          0) {
    fprintf(stderr, "cryomambad: %s\n", err);
    return 2;
  }
  const char* env_token = getenv("CRYOMAMBA_TOKEN");
  if (env_token != NULL && env_token[0] == '\0') {
    /* Likely an unset shell variable expanded: running open would be a
     * silent downgrade. */
    fprintf(stderr,
            "cryomambad: CRYOMAMBA_TOKEN is set but empty; give it "
            "a token, or unset it to run without authentication\n");
    return 2;
  }
  if (env_token != NULL &&
      srv_auth_add_token(&ctx->auth, env_token, SRV_SCOPE_WRITE) != 0) {
    fprintf(stderr, "cryomambad: too many tokens\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ctx->log.min_level = ctx->cfg.log_level;
  size_pool(ctx);
  ctx->loop = uv_default_loop();
  core_list_init(&ctx->conns);
  core_list_init(&ctx->jobs);
  core_idmap_init(&ctx->job_index, CORE_UUID_STR_LEN);
  core_list_init(&ctx->uploads);
  core_list_init(&ctx->volumes);
  core_idmap_init(&ctx->upload_index, CORE_UUID_STR_LEN);
  core_idmap_init(&ctx->volume_index, CORE_UUID_STR_LEN);
  core_idmap_init(&ctx->volume_by_sha, 64);
  if (srv_exec_find_shim(&ctx->cfg.engines, err, sizeof(err)) != 0 ||
      srv_engines_init(&engines, &ctx->cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "cryomambad: %s\n", err);
    return 2;
  }
  ctx->engines = &engines;
  srv_devices_init(&devices, &ctx->cfg.engines);
  ctx->devices = &devices;
  srv_classic_budget_init(&classic, ctx->cfg.engines.classic_workers);
  ctx->classic = &classic;
  ctx->on_accept = srv_http_conn_accept;
  ctx->data_root_fd = -1;
  if (resolve_dirs(&ctx->cfg) != 0) {
    return 1;
  }
  if (srv_cluster_files_prepare(ctx, err, sizeof(err)) != 0) {
    fprintf(stderr, "cryomambad: %s\n", err);
    return 1;
  }
  if (ctx->cfg.data_root[0] != '\0') {
    ctx->data_root_fd = srv_volume_open_root(ctx->cfg.data_root);
    if (ctx->data_root_fd < 0) {
      fprintf(stderr, "cryomambad: data root %s: %s\n", ctx->cfg.data_root,
              strerror(-ctx->data_root_fd));
      return 1;
    }
  }
  char artifacts[sizeof(ctx->cfg.state_dir) + 16];
  memcpy(artifacts, ctx->cfg.state_dir, sizeof(ctx->cfg.state_dir));
  strcat(artifacts, "/artifacts");
  remove_orphans(ctx, artifacts);
  if (srv_store_open(ctx->loop, ctx->cfg.state_dir, &ctx->log, &ctx->store, err,
                     sizeof(err)) != 0) {
    srv_log_flush(); /* what the store logged comes before the reason */
    fprintf(stderr, "cryomambad: %s\n", err);
    return 1;
  }
  int restored = restore_all(ctx);
  if (restored >= 0 &&
      (srv_volumes_restore(ctx) < 0 || srv_uploads_restore(ctx) < 0)) {
    restored = -1;
  }
  if (restored >= 0) {
    /* Before the loop runs (the loop never touches the disk), and before
     * any completion resumes and renames. */
    srv_uploads_remove_orphans(ctx);
    srv_volumes_remove_orphans(ctx);
    srv_uploads_resume(ctx); /* on the pool once the loop runs */
  }
  /* Jobs found running were failed as interrupted: serve once that is on
   * disk, so the first client already sees it. */
  while (restored >= 0 && ctx->endings_pending > 0) {
    uv_run(ctx->loop, UV_RUN_ONCE);
  }
  srv_log_flush(); /* what follows may print to stderr directly */
  if (restored < 0 || start_listening(ctx) != 0) {
    if (restored < 0) {
      fprintf(stderr, "cryomambad: cannot read the job store\n");
    }
    srv_store_close(ctx->store);
    uv_run(ctx->loop, UV_RUN_DEFAULT);
    return 1;
  }
  uv_signal_init(ctx->loop, &ctx->sigint);
  uv_signal_init(ctx->loop, &ctx->sigterm);
  ctx->sigint.data = ctx->sigterm.data = ctx;
  uv_signal_start(&ctx->sigint, on_signal, SIGINT);
  uv_signal_start(&ctx->sigterm, on_signal, SIGTERM);
  /* Housekeeping often enough for the shortest configured timeout. */
  double sweep_s = ctx->cfg.ws_ping_interval_s / 4;
  if (ctx->cfg.ws_ping_timeout_s / 4 < sweep_s) {
    sweep_s = ctx->cfg.ws_ping_timeout_s / 4;
  }
  uint64_t sweep_ms = sweep_s < 0.025 ? 25 : (uint64_t) (sweep_s * 1000);
  if (sweep_ms > 1000) {
    sweep_ms = 1000;
  }
  uv_timer_init(ctx->loop, &ctx->sweep_timer);
  ctx->sweep_timer.data = ctx;
  uv_timer_start(&ctx->sweep_timer, on_stop_check, sweep_ms, sweep_ms);
  if (ctx->cfg.role != SRV_ROLE_ALL &&
      srv_cluster_start(ctx, err, sizeof(err)) != 0) {
    fprintf(stderr, "cryomambad: %s\n", err);
    return 2;
  }
  srv_jobs_schedule(ctx);
  printf("listening on %s\n", ctx->listen_url);
  fflush(stdout);
  srv_log(&ctx->log, SRV_LOG_INFO, "server.listening", "s:url", ctx->listen_url,
          "i:jobs_restored", (int64_t) restored, "s:state_dir",
          ctx->cfg.state_dir, "i:auth_tokens", (int64_t) ctx->auth.count, NULL);
  uv_run(ctx->loop, UV_RUN_DEFAULT);
  /* Every connection, render and commit is done; free the rest. */
  srv_store_close(ctx->store); /* NULL unless the loop ended abnormally */
  srv_jobs_free_all(ctx);
  srv_uploads_free_all(ctx);
  srv_volumes_free_all(ctx);
  if (ctx->data_root_fd >= 0) {
    close(ctx->data_root_fd);
  }
  srv_addr_limit_free(&ctx->addr_limit);
  srv_engines_free(&engines);
  uv_run(ctx->loop, UV_RUN_DEFAULT);
  free(ctx->cluster); /* its connections closed with the loop */
  int close_rc = uv_loop_close(ctx->loop);
  srv_log(&ctx->log, SRV_LOG_INFO, "server.stopped", "i:loop_close",
          (int64_t) close_rc, NULL);
  return 0;
}
