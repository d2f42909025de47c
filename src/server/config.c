/* config.c: flags and environment for cryomambad. See config.h. */
#include "server/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/job.h"


typedef enum {
  OPT_BIND = 1000,
  OPT_PORT,
  OPT_DATA_ROOT,
  OPT_STATE_DIR,
  OPT_MAX_RUNNING,
  OPT_PREVIEW_HZ,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_SUBSCRIBERS,
  OPT_MAX_PER_IP,
  OPT_TRUSTED_PROXY,
  OPT_MAX_BODY,
  OPT_MAX_VOXELS,
  OPT_PREVIEW_CACHE,
  OPT_PING_INTERVAL,
  OPT_PING_TIMEOUT,
  OPT_IDLE_TIMEOUT,
  OPT_HEADER_TIMEOUT,
  OPT_BODY_TIMEOUT,
  OPT_WRITE_TIMEOUT,
  OPT_MAX_QUEUED,
  OPT_RETENTION_JOBS,
  OPT_RETENTION_AGE,
  OPT_MAX_HELD,
  OPT_MAX_UPLOAD,
  OPT_QUOTA,
  OPT_UPLOADS_PER_TOKEN,
  OPT_UPLOADS_PER_IP,
  OPT_UPLOAD_EXPIRY,
  OPT_LOG_LEVEL,
  OPT_AUTH_FILE,
  OPT_HASH_TOKEN,
  OPT_BUILTIN_ENGINES,
  OPT_ENGINE,
  OPT_ENGINES_FILE,
  OPT_DEVICES,
  OPT_ENGINE_KILL_GRACE,
  OPT_ENGINE_WALL_TIME,
  OPT_ENGINE_MAX_LINE,
  OPT_ENGINE_MAX_LINES,
  OPT_ENGINE_LOG_BYTES,
  OPT_ENGINE_SHIM,
  OPT_CLASSIC_WORKERS,
  OPT_ROLE,
  OPT_REDIS,
  OPT_SHARED_DIR,
  OPT_REDIS_IN_FLIGHT,
  OPT_REDIS_TIMEOUT,
  OPT_WORKER_LEASE,
  OPT_ON_WORKER_LOST,
  OPT_MAX_ATTEMPTS,
  OPT_REDIS_CHUNK_BYTES,
  OPT_SWEEP_GRACE,
  OPT_SWEEP_INTERVAL,
  OPT_SWEEP_MAX_FILES,
  OPT_HELP,
  OPT_VERSION
} opt_id_t;

typedef struct {
  const char* flag;
  const char* env;
  opt_id_t id;
  const char* help;
} opt_doc_t;

static const opt_doc_t opt_docs[] = {
    {"bind", "CRYOMAMBA_BIND", OPT_BIND,
     "ADDR   address to listen on (default 127.0.0.1)"},
    {"port", "CRYOMAMBA_PORT", OPT_PORT,
     "N      TCP port (default 8000; 0 = ephemeral, printed on stdout)"},
    {"data-root", "CRYOMAMBA_DATA_ROOT", OPT_DATA_ROOT,
     "DIR    directory that volume_path in jobs is relative to"},
    {"state-dir", "CRYOMAMBA_STATE_DIR", OPT_STATE_DIR,
     "DIR    job database and artifacts (default ./cryomamba-state)"},
    {"max-running", "CRYOMAMBA_MAX_RUNNING", OPT_MAX_RUNNING,
     "N      jobs running at once; the rest queue (default 1)"},
    {"preview-hz", "CRYOMAMBA_PREVIEW_HZ", OPT_PREVIEW_HZ,
     "HZ     default preview rate, 0.1..30 (default 1)"},
    {"max-connections", "CRYOMAMBA_MAX_CONNECTIONS", OPT_MAX_CONNECTIONS,
     "N      open connections in all (default 20000)"},
    {"max-subscribers-per-job", "CRYOMAMBA_MAX_SUBSCRIBERS_PER_JOB",
     OPT_MAX_SUBSCRIBERS,
     "N      WebSocket subscribers per job (default 5000)"},
    {"max-connections-per-ip", "CRYOMAMBA_MAX_CONNECTIONS_PER_IP",
     OPT_MAX_PER_IP,
     "N      open connections per client address (default 256; 0: no\n"
     "             limit)"},
    {"trusted-proxy", "CRYOMAMBA_TRUSTED_PROXY", OPT_TRUSTED_PROXY,
     "ADDR[/PREFIX]  a reverse proxy whose X-Forwarded-For names the\n"
     "             client, for per-address limits and logs (repeatable;\n"
     "             a comma-separated list; default none)"},
    {"max-body-bytes", "CRYOMAMBA_MAX_BODY_BYTES", OPT_MAX_BODY,
     "N      largest request body (default 1048576)"},
    {"max-volume-voxels", "CRYOMAMBA_MAX_VOLUME_VOXELS", OPT_MAX_VOXELS,
     "N      largest job volume in voxels (default 1073741824)"},
    {"preview-cache-bytes", "CRYOMAMBA_PREVIEW_CACHE_BYTES", OPT_PREVIEW_CACHE,
     "N      final previews of completed jobs kept in memory; older ones\n"
     "             are re-rendered on demand (default 268435456)"},
    {"ws-ping-interval", "CRYOMAMBA_WS_PING_INTERVAL", OPT_PING_INTERVAL,
     "S      seconds of client silence before a ping (default 25)"},
    {"ws-ping-timeout", "CRYOMAMBA_WS_PING_TIMEOUT", OPT_PING_TIMEOUT,
     "S      seconds to wait for any answer to a ping (default 20)"},
    {"http-idle-timeout", "CRYOMAMBA_HTTP_IDLE_TIMEOUT", OPT_IDLE_TIMEOUT,
     "S      idle keep-alive HTTP connections are closed (default 60)"},
    {"http-header-timeout", "CRYOMAMBA_HTTP_HEADER_TIMEOUT", OPT_HEADER_TIMEOUT,
     "S      total time for a request's line and headers; then 408\n"
     "             (default 10)"},
    {"http-body-timeout", "CRYOMAMBA_HTTP_BODY_TIMEOUT", OPT_BODY_TIMEOUT,
     "S      total time for a request body after its headers; then 408\n"
     "             (default 60)"},
    {"http-write-timeout", "CRYOMAMBA_HTTP_WRITE_TIMEOUT", OPT_WRITE_TIMEOUT,
     "S      a response the client stops reading for this long is\n"
     "             dropped (default 30)"},
    {"max-queued", "CRYOMAMBA_MAX_QUEUED", OPT_MAX_QUEUED,
     "N      jobs waiting to run; more get 429 (default 1000)"},
    {"retention-max-jobs", "CRYOMAMBA_RETENTION_MAX_JOBS", OPT_RETENTION_JOBS,
     "N      finished jobs kept, oldest deleted first (default 10000;\n"
     "             0: no limit)"},
    {"retention-max-age", "CRYOMAMBA_RETENTION_MAX_AGE", OPT_RETENTION_AGE,
     "S      finished jobs are deleted this long after they end\n"
     "             (default 604800, a week; 0: never)"},
    {"max-held-bytes", "CRYOMAMBA_MAX_HELD_BYTES", OPT_MAX_HELD,
     "N      preview bytes kept only for slow readers; past it the\n"
     "             longest-stalled connections are dropped (default\n"
     "             268435456)"},
    {"max-upload-bytes", "CRYOMAMBA_MAX_UPLOAD_BYTES", OPT_MAX_UPLOAD,
     "N      largest upload, Tus-Max-Size (default 34359738368, 32 GiB)"},
    {"storage-quota-bytes", "CRYOMAMBA_STORAGE_QUOTA_BYTES", OPT_QUOTA,
     "N      bytes of volumes, artifacts and incomplete uploads; a new\n"
     "             upload past it gets 507 (default 0: no quota)"},
    {"max-uploads-per-token", "CRYOMAMBA_MAX_UPLOADS_PER_TOKEN",
     OPT_UPLOADS_PER_TOKEN,
     "N      incomplete uploads per bearer token (default 16; 0: no\n"
     "             limit)"},
    {"max-uploads-per-ip", "CRYOMAMBA_MAX_UPLOADS_PER_IP", OPT_UPLOADS_PER_IP,
     "N      incomplete uploads per client address (default 16; 0: no\n"
     "             limit)"},
    {"upload-expiry", "CRYOMAMBA_UPLOAD_EXPIRY", OPT_UPLOAD_EXPIRY,
     "S      incomplete uploads are removed this long after creation\n"
     "             (default 86400)"},
    {"log-level", "CRYOMAMBA_LOG_LEVEL", OPT_LOG_LEVEL,
     "L      debug, info, warn or error (default info)"},
    {"auth-file", "CRYOMAMBA_AUTH_FILE", OPT_AUTH_FILE,
     "FILE   bearer tokens, one '<sha256 hex> <read|write>' per line;\n"
     "             CRYOMAMBA_TOKEN=<token> adds one write token. With any\n"
     "             token set, every route but /v1/healthz needs one"},
    {"hash-token", "CRYOMAMBA_HASH_TOKEN_UNUSED", OPT_HASH_TOKEN,
     "TOKEN  print the auth-file line for TOKEN and exit"},
    {"builtin-engines", "CRYOMAMBA_BUILTIN_ENGINES", OPT_BUILTIN_ENGINES,
     "LIST   built-in engines jobs may use, comma-separated, or 'all'\n"
     "             (default all: sim, classic)"},
    {"engine", "CRYOMAMBA_ENGINE", OPT_ENGINE,
     "NAME=COMMAND  declare an exec engine (repeatable): each job of it\n"
     "             runs /bin/sh -c COMMAND (docs/engines.md)"},
    {"engines-file", "CRYOMAMBA_ENGINES_FILE", OPT_ENGINES_FILE,
     "FILE   exec engines from a JSON file (docs/engines.md)"},
    {"devices", "CRYOMAMBA_DEVICES", OPT_DEVICES,
     "N|LIST device slots for exec jobs, one job per device, exported as\n"
     "             CUDA_VISIBLE_DEVICES (default none)"},
    {"engine-kill-grace", "CRYOMAMBA_ENGINE_KILL_GRACE", OPT_ENGINE_KILL_GRACE,
     "S      after SIGTERM an engine's processes get SIGKILL this long\n"
     "             later (default 10)"},
    {"engine-wall-time", "CRYOMAMBA_ENGINE_WALL_TIME", OPT_ENGINE_WALL_TIME,
     "S      an exec job running longer fails (default 0: no limit;\n"
     "             an engines file may set one per engine)"},
    {"engine-max-line-bytes", "CRYOMAMBA_ENGINE_MAX_LINE_BYTES",
     OPT_ENGINE_MAX_LINE,
     "N      longest stdout line of an engine (default 16384)"},
    {"engine-max-lines-per-s", "CRYOMAMBA_ENGINE_MAX_LINES_PER_S",
     OPT_ENGINE_MAX_LINES,
     "N      stdout lines per second an engine may print (default 1000)"},
    {"engine-log-bytes", "CRYOMAMBA_ENGINE_LOG_BYTES", OPT_ENGINE_LOG_BYTES,
     "N      an engine's stderr kept in the job's log (default 1048576)"},
    {"engine-shim", "CRYOMAMBA_ENGINE_SHIM", OPT_ENGINE_SHIM,
     "PATH   the exec shim (default: cryomamba-engine-shim beside\n"
     "             cryomambad, else " SRV_SHIM_DIR " from it)"},
    {"classic-workers", "CRYOMAMBA_CLASSIC_WORKERS", OPT_CLASSIC_WORKERS,
     "N      windows the classic engine runs at once, server-wide, on the\n"
     "             worker pool; each holds ~85 MiB of scratch at the default\n"
     "             window (default: one per CPU, at most 16; 1..256)"},
    {"role", "CRYOMAMBA_ROLE", OPT_ROLE,
     "R      all (one process, SQLite; the default), gateway (REST and\n"
     "             WebSocket over Redis) or worker (runs Redis's jobs)"},
    {"redis", "CRYOMAMBA_REDIS", OPT_REDIS,
     "URL    redis://HOST[:PORT][/DB] for --role gateway|worker"},
    {"shared-dir", "CRYOMAMBA_SHARED_DIR", OPT_SHARED_DIR,
     "DIR    volumes and artifacts on a directory every gateway and\n"
     "             worker mounts (--role gateway|worker)"},
    {"redis-max-in-flight", "CRYOMAMBA_REDIS_MAX_IN_FLIGHT",
     OPT_REDIS_IN_FLIGHT,
     "N      Redis commands awaiting replies per connection; more are\n"
     "             refused (503) (default 1024)"},
    {"redis-timeout-ms", "CRYOMAMBA_REDIS_TIMEOUT_MS", OPT_REDIS_TIMEOUT,
     "MS     a Redis command unanswered this long drops the connection\n"
     "             (the request: 503 redis_unavailable) and reconnects\n"
     "             (default 5000; 100..600000)"},
    {"worker-lease-ms", "CRYOMAMBA_WORKER_LEASE_MS", OPT_WORKER_LEASE,
     "MS     a worker renews its jobs' stream entries; one not renewed\n"
     "             this long is taken over by another worker (default 10000;\n"
     "             100..3600000)"},
    {"on-worker-lost", "CRYOMAMBA_ON_WORKER_LOST", OPT_ON_WORKER_LOST,
     "WHAT   a job whose worker was lost: requeue (run again from the\n"
     "             start; the default) or fail (failed worker_lost, "
     "retryable)"},
    {"max-attempts", "CRYOMAMBA_MAX_ATTEMPTS", OPT_MAX_ATTEMPTS,
     "N      runs of a job whose workers are lost before it fails\n"
     "             worker_lost (default 3; 1..100)"},
    {"redis-chunk-message-bytes", "CRYOMAMBA_REDIS_CHUNK_MESSAGE_BYTES",
     OPT_REDIS_CHUNK_BYTES,
     "N      bytes of a worker's chunk batch published on Redis, at\n"
     "             most; a pass's chunks are split into batches\n"
     "             (65536..268435456, default 4194304)"},
    {"shared-sweep-grace-s", "CRYOMAMBA_SHARED_SWEEP_GRACE_S", OPT_SWEEP_GRACE,
     "S      a gateway's sweep of the shared directory removes a volume\n"
     "             file without a record only once it is this old (default\n"
     "             3600; 1..604800)"},
    {"shared-sweep-interval-s", "CRYOMAMBA_SHARED_SWEEP_INTERVAL_S",
     OPT_SWEEP_INTERVAL,
     "S      time between two sweeps of the shared directory (default\n"
     "             600; 1..86400; the first runs once Redis is reachable)"},
    {"shared-sweep-max-files", "CRYOMAMBA_SHARED_SWEEP_MAX_FILES",
     OPT_SWEEP_MAX_FILES,
     "N      directory entries one sweep examines, at most (default\n"
     "             10000; 1..1000000)"},
};


void srv_config_default(srv_config_t* cfg) {
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->bind, sizeof(cfg->bind), "127.0.0.1");
  cfg->port = 8000;
  snprintf(cfg->state_dir, sizeof(cfg->state_dir), "cryomamba-state");
  cfg->max_running = 1;
  cfg->preview_hz = CORE_PREVIEW_HZ_DEFAULT;
  cfg->max_connections = 20000;
  cfg->max_subscribers_per_job = 5000;
  cfg->max_body_bytes = 1u << 20;
  cfg->max_header_bytes = 16u << 10;
  cfg->max_ws_message_bytes = 64u << 10;
  cfg->max_volume_voxels = 1ull << 30;
  cfg->preview_cache_bytes = 256ull << 20;
  cfg->ws_ping_interval_s = 25.0;
  cfg->ws_ping_timeout_s = 20.0;
  cfg->http_idle_timeout_s = 60.0;
  cfg->http_header_timeout_s = 10.0;
  cfg->http_body_timeout_s = 60.0;
  cfg->http_write_timeout_s = 30.0;
  cfg->max_queued = 1000;
  cfg->retention_max_jobs = 10000;
  cfg->retention_max_age_s = 7 * 86400.0;
  cfg->max_held_bytes = 256ull << 20;
  cfg->max_connections_per_ip = 256;
  cfg->log_level = 1;
  cfg->max_upload_bytes = 32ull << 30;
  cfg->max_uploads_per_token = 16;
  cfg->max_uploads_per_ip = 16;
  cfg->upload_expiry_s = 86400.0;
  cfg->redis_max_in_flight = 1024;
  cfg->redis_timeout_ms = 5000;
  cfg->worker_lease_ms = 10000;
  cfg->max_attempts = 3;
  cfg->redis_chunk_message_bytes = 4u << 20;
  cfg->sweep_grace_s = 3600;
  cfg->sweep_interval_s = 600;
  cfg->sweep_max_files = 10000;
  srv_engine_cfg_default(&cfg->engines);
}


/* One option: the flag and its argument, then the description (its lines
 * re-indented alike, which help2man needs for cryomambad(8)) and the
 * variable. */
static void print_option(const opt_doc_t* d) {
  const char* h = d->help;
  size_t arg_len = strcspn(h, " ");
  printf("  --%s %.*s\n", d->flag, (int) arg_len, h);
  h += arg_len;
  while (*h != '\0') {
    h += strspn(h, " ");
    size_t line = strcspn(h, "\n");
    printf("        %.*s\n", (int) line, h);
    h += line;
    h += *h == '\n' ? 1 : 0;
  }
  if (d->id != OPT_HASH_TOKEN) {
    printf("        [%s]\n", d->env);
  }
}


static void print_help(void) {
  printf(
      "Usage: cryomambad [OPTION]...\n"
      "CryoMamba inference server: jobs over REST, live segmentation previews "
      "over WebSocket.\n\nOptions (each also read from the environment "
      "variable shown; flags win):\n");
  for (size_t i = 0; i < sizeof(opt_docs) / sizeof(opt_docs[0]); i++) {
    print_option(&opt_docs[i]);
  }
  printf(
      "  --help\n        this text\n  --version\n        print the version\n");
}


static int parse_uint(const char* s,
                      unsigned long long max,
                      unsigned long long* out) {
  if (s == NULL || *s == '\0' || *s == '-') {
    return -1;
  }
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) {
    return -1;
  }
  *out = v;
  return 0;
}


static int parse_double(const char* s, double min, double max, double* out) {
  if (s == NULL || *s == '\0') {
    return -1;
  }
  char* end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !(v >= min && v <= max)) {
    return -1;
  }
  *out = v;
  return 0;
}


static int copy_str(char* dst, size_t cap, const char* s) {
  if (strlen(s) >= cap || *s == '\0') {
    return -1;
  }
  memcpy(dst, s, strlen(s) + 1);
  return 0;
}


/* Appends the networks of a comma-separated ADDR[/PREFIX] list. */
static int add_trusted_proxies(srv_config_t* cfg, const char* list) {
  char item[CORE_IPNET_TEXT_MAX + 1];
  for (const char* p = list;;) {
    size_t len = strcspn(p, ",");
    while (len > 0 && (*p == ' ' || *p == '\t')) {
      p++;
      len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
      len--;
    }
    if (len == 0 || len >= sizeof(item) ||
        cfg->trusted_proxy_count >= SRV_TRUSTED_PROXIES_MAX) {
      return -1;
    }
    memcpy(item, p, len);
    item[len] = '\0';
    if (core_ipnet_parse(
            item, &cfg->trusted_proxies[cfg->trusted_proxy_count]) != 0) {
      return -1;
    }
    cfg->trusted_proxy_count++;
    p = strchr(p, ',');
    if (p == NULL) {
      return 0;
    }
    p++;
  }
}


/* Applies one option; returns 0 or -1 (bad value). */
static int apply(srv_config_t* cfg, opt_id_t id, const char* v) {
  unsigned long long u = 0;
  switch (id) {
  case OPT_BIND:
    return copy_str(cfg->bind, sizeof(cfg->bind), v);
  case OPT_PORT:
    if (parse_uint(v, 65535, &u) != 0) {
      return -1;
    }
    cfg->port = (int) u;
    return 0;
  case OPT_DATA_ROOT:
    return copy_str(cfg->data_root, sizeof(cfg->data_root), v);
  case OPT_STATE_DIR:
    return copy_str(cfg->state_dir, sizeof(cfg->state_dir), v);
  case OPT_MAX_RUNNING:
    if (parse_uint(v, 1024, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_running = (unsigned) u;
    return 0;
  case OPT_PREVIEW_HZ:
    return parse_double(v, CORE_PREVIEW_HZ_MIN, CORE_PREVIEW_HZ_MAX,
                        &cfg->preview_hz);
  case OPT_MAX_CONNECTIONS:
    if (parse_uint(v, 1000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_connections = (unsigned) u;
    return 0;
  case OPT_MAX_SUBSCRIBERS:
    if (parse_uint(v, 1000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_subscribers_per_job = (unsigned) u;
    return 0;
  case OPT_MAX_PER_IP:
    if (parse_uint(v, 1000000, &u) != 0) {
      return -1;
    }
    cfg->max_connections_per_ip = (unsigned) u;
    return 0;
  case OPT_TRUSTED_PROXY:
    return add_trusted_proxies(cfg, v);
  case OPT_MAX_BODY:
    if (parse_uint(v, 1ull << 30, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_body_bytes = (size_t) u;
    return 0;
  case OPT_MAX_VOXELS:
    if (parse_uint(v, 1ull << 36, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_volume_voxels = u;
    return 0;
  case OPT_PREVIEW_CACHE:
    if (parse_uint(v, 1ull << 40, &u) != 0) {
      return -1;
    }
    cfg->preview_cache_bytes = u;
    return 0;
  case OPT_PING_INTERVAL:
    return parse_double(v, 0.05, 3600, &cfg->ws_ping_interval_s);
  case OPT_PING_TIMEOUT:
    return parse_double(v, 0.05, 3600, &cfg->ws_ping_timeout_s);
  case OPT_IDLE_TIMEOUT:
    return parse_double(v, 0.05, 86400, &cfg->http_idle_timeout_s);
  case OPT_HEADER_TIMEOUT:
    return parse_double(v, 0.05, 86400, &cfg->http_header_timeout_s);
  case OPT_BODY_TIMEOUT:
    return parse_double(v, 0.05, 86400, &cfg->http_body_timeout_s);
  case OPT_WRITE_TIMEOUT:
    return parse_double(v, 0.05, 86400, &cfg->http_write_timeout_s);
  case OPT_MAX_QUEUED:
    if (parse_uint(v, 10000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_queued = (unsigned) u;
    return 0;
  case OPT_RETENTION_JOBS:
    if (parse_uint(v, 100000000, &u) != 0) {
      return -1;
    }
    cfg->retention_max_jobs = (unsigned) u;
    return 0;
  case OPT_RETENTION_AGE:
    return parse_double(v, 0, 1e10, &cfg->retention_max_age_s);
  case OPT_MAX_HELD:
    if (parse_uint(v, 1ull << 44, &u) != 0) {
      return -1;
    }
    cfg->max_held_bytes = u;
    return 0;
  case OPT_MAX_UPLOAD:
    if (parse_uint(v, 1ull << 50, &u) != 0) {
      return -1;
    }
    cfg->max_upload_bytes = u;
    return 0;
  case OPT_QUOTA:
    if (parse_uint(v, 1ull << 60, &u) != 0) {
      return -1;
    }
    cfg->storage_quota_bytes = u;
    return 0;
  case OPT_UPLOADS_PER_TOKEN:
    if (parse_uint(v, 1000000, &u) != 0) {
      return -1;
    }
    cfg->max_uploads_per_token = (unsigned) u;
    return 0;
  case OPT_UPLOADS_PER_IP:
    if (parse_uint(v, 1000000, &u) != 0) {
      return -1;
    }
    cfg->max_uploads_per_ip = (unsigned) u;
    return 0;
  case OPT_UPLOAD_EXPIRY:
    return parse_double(v, 0.05, 1e9, &cfg->upload_expiry_s);
  case OPT_LOG_LEVEL: {
    static const char* names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
      if (strcmp(v, names[i]) == 0) {
        cfg->log_level = i;
        return 0;
      }
    }
    return -1;
  }
  case OPT_AUTH_FILE:
    return copy_str(cfg->auth_file, sizeof(cfg->auth_file), v);
  case OPT_HASH_TOKEN:
    cfg->hash_token = v;
    return 0;
  case OPT_BUILTIN_ENGINES:
    return copy_str(cfg->engines.builtin, sizeof(cfg->engines.builtin), v);
  case OPT_ENGINE:
  case OPT_ENGINES_FILE: {
    char err[512];
    int rc = id == OPT_ENGINE
                 ? srv_engine_cfg_add(&cfg->engines, v, err, sizeof(err))
                 : srv_engine_cfg_load_file(&cfg->engines, v, err, sizeof(err));
    if (rc != 0) {
      fprintf(stderr, "cryomambad: %s\n", err);
    }
    return rc;
  }
  case OPT_DEVICES:
    return srv_engine_cfg_set_devices(&cfg->engines, v);
  case OPT_ENGINE_KILL_GRACE:
    return parse_double(v, 0, 3600, &cfg->engines.kill_grace_s);
  case OPT_ENGINE_WALL_TIME:
    return parse_double(v, 0, 1e7, &cfg->engines.wall_time_s);
  case OPT_ENGINE_MAX_LINE:
    if (parse_uint(v, 1u << 24, &u) != 0 || u < 256) {
      return -1;
    }
    cfg->engines.max_line_bytes = (size_t) u;
    return 0;
  case OPT_ENGINE_MAX_LINES:
    if (parse_uint(v, 1000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->engines.max_lines_per_s = (unsigned) u;
    return 0;
  case OPT_ENGINE_LOG_BYTES:
    if (parse_uint(v, 1ull << 40, &u) != 0) {
      return -1;
    }
    cfg->engines.log_bytes = u;
    return 0;
  case OPT_ENGINE_SHIM:
    return copy_str(cfg->engines.shim, sizeof(cfg->engines.shim), v);
  case OPT_CLASSIC_WORKERS:
    if (parse_uint(v, 256, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->engines.classic_workers = (unsigned) u;
    return 0;
  case OPT_ROLE: {
    static const char* roles[] = {"all", "gateway", "worker"};
    for (int i = 0; i < 3; i++) {
      if (strcmp(v, roles[i]) == 0) {
        cfg->role = (srv_role_t) i;
        return 0;
      }
    }
    return -1;
  }
  case OPT_REDIS:
    return copy_str(cfg->redis_url, sizeof(cfg->redis_url), v);
  case OPT_SHARED_DIR:
    return copy_str(cfg->shared_dir, sizeof(cfg->shared_dir), v);
  case OPT_REDIS_IN_FLIGHT:
    if (parse_uint(v, 1000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->redis_max_in_flight = (unsigned) u;
    return 0;
  case OPT_REDIS_TIMEOUT:
    if (parse_uint(v, 600000, &u) != 0 || u < 100) {
      return -1;
    }
    cfg->redis_timeout_ms = (unsigned) u;
    return 0;
  case OPT_WORKER_LEASE:
    if (parse_uint(v, 3600000, &u) != 0 || u < 100) {
      return -1;
    }
    cfg->worker_lease_ms = (unsigned) u;
    return 0;
  case OPT_ON_WORKER_LOST:
    if (strcmp(v, "requeue") != 0 && strcmp(v, "fail") != 0) {
      return -1;
    }
    cfg->fail_on_worker_lost = strcmp(v, "fail") == 0;
    return 0;
  case OPT_MAX_ATTEMPTS:
    if (parse_uint(v, 100, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->max_attempts = (unsigned) u;
    return 0;
  case OPT_REDIS_CHUNK_BYTES:
    /* One chunk message (32^3 voxels compressed, and its header) must fit. */
    if (parse_uint(v, 256u << 20, &u) != 0 || u < (64u << 10)) {
      return -1;
    }
    cfg->redis_chunk_message_bytes = u;
    return 0;
  case OPT_SWEEP_GRACE:
    if (parse_uint(v, 604800, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->sweep_grace_s = (unsigned) u;
    return 0;
  case OPT_SWEEP_INTERVAL:
    if (parse_uint(v, 86400, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->sweep_interval_s = (unsigned) u;
    return 0;
  case OPT_SWEEP_MAX_FILES:
    if (parse_uint(v, 1000000, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->sweep_max_files = (unsigned) u;
    return 0;
  case OPT_HELP:
  case OPT_VERSION:
    return 0;
  }
  return -1;
}


int srv_config_check_role(const srv_config_t* cfg, char* why, size_t why_len) {
  bool cluster = cfg->role != SRV_ROLE_ALL;
  if (cluster && cfg->redis_url[0] == '\0') {
    snprintf(why, why_len, "--role %s needs --redis redis://HOST[:PORT]",
             cfg->role == SRV_ROLE_GATEWAY ? "gateway" : "worker");
    return -1;
  }
  if (!cluster && (cfg->redis_url[0] != '\0' || cfg->shared_dir[0] != '\0')) {
    snprintf(why, why_len,
             "--redis and --shared-dir are for --role gateway|worker; the "
             "default role (all) keeps everything in one process");
    return -1;
  }
  return 0;
}


const char* srv_config_files_dir(const srv_config_t* cfg) {
  /* Only a cluster role may have one (srv_config_check_role). */
  return cfg->shared_dir[0] != '\0' ? cfg->shared_dir : cfg->state_dir;
}


static const opt_doc_t* doc_of(opt_id_t id) {
  for (size_t i = 0; i < sizeof(opt_docs) / sizeof(opt_docs[0]); i++) {
    if (opt_docs[i].id == id) {
      return &opt_docs[i];
    }
  }
  return NULL;
}


int srv_config_parse(srv_config_t* cfg, int argc, char** argv) {
  for (size_t i = 0; i < sizeof(opt_docs) / sizeof(opt_docs[0]); i++) {
    if (opt_docs[i].id == OPT_HASH_TOKEN) {
      continue; /* a flag only */
    }
    const char* v = getenv(opt_docs[i].env);
    if (v != NULL && apply(cfg, opt_docs[i].id, v) != 0) {
      fprintf(stderr, "cryomambad: invalid value '%s' for %s\n", v,
              opt_docs[i].env);
      return -1;
    }
  }
  enum {
    N_DOCS = sizeof(opt_docs) / sizeof(opt_docs[0])
  };
  struct option longopts[N_DOCS + 3];
  for (size_t i = 0; i < N_DOCS; i++) {
    longopts[i] = (struct option){opt_docs[i].flag, required_argument, NULL,
                                  (int) opt_docs[i].id};
  }
  longopts[N_DOCS] = (struct option){"help", no_argument, NULL, OPT_HELP};
  longopts[N_DOCS + 1] =
      (struct option){"version", no_argument, NULL, OPT_VERSION};
  longopts[N_DOCS + 2] = (struct option){NULL, 0, NULL, 0};
  optind = 1;
  int c;
  bool has_proxy_flag = false; /* flags replace the environment's list */
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == OPT_TRUSTED_PROXY && !has_proxy_flag) {
      cfg->trusted_proxy_count = 0;
      has_proxy_flag = true;
    }
    if (c == OPT_HELP || c == 'h') {
      print_help();
      return 1;
    }
    if (c == OPT_VERSION) {
      printf("cryomambad %s\n", CM_VERSION);
      return 1;
    }
    if (c == '?' || c == ':') {
      fprintf(stderr, "Try 'cryomambad --help'.\n");
      return -1;
    }
    if (apply(cfg, (opt_id_t) c, optarg) != 0) {
      const opt_doc_t* d = doc_of((opt_id_t) c);
      fprintf(stderr, "cryomambad: invalid value '%s' for --%s (%s)\n", optarg,
              d != NULL ? d->flag : "?", d != NULL ? d->help : "");
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cryomambad: unexpected argument '%s'\n", argv[optind]);
    return -1;
  }
  return 0;
}
