/* config_opts.c: the option table and --help page (config_opts.h). */
#include "server/config_opts.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

const srv_opt_doc_t srv_opt_docs[SRV_OPT_DOCS] = {
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
     "URL    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] for --role\n"
     "             gateway|worker (USER, PASSWORD %-escaped: AUTH on connect)"},
    {"redis-password-file", "CRYOMAMBA_REDIS_PASSWORD_FILE",
     OPT_REDIS_PASSWORD_FILE,
     "FILE   Redis's password: the file's first line (not in the URL,\n"
     "             where ps shows it; replaces one given there)"},
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
    {"redis-chunk-read-count", "CRYOMAMBA_REDIS_CHUNK_READ_COUNT",
     OPT_REDIS_CHUNK_READ_COUNT,
     "N      chunks a gateway asks Redis for per HSCAN page when it reads\n"
     "             a job's chunk table (no reply of a whole table, and Redis\n"
     "             is never busy with one read for long) (default 512;\n"
     "             1..65536)"},
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

static_assert(sizeof(srv_opt_docs) / sizeof(srv_opt_docs[0]) == SRV_OPT_DOCS,
              "one entry per option");


/* One option: the flag and its argument, then the description (its lines
 * re-indented alike, which help2man needs for cryomambad(8)) and the
 * variable. */
static void print_option(const srv_opt_doc_t* d) {
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


void srv_opt_print_help(void) {
  printf(
      "Usage: cryomambad [OPTION]...\n"
      "CryoMamba inference server: jobs over REST, live segmentation previews "
      "over WebSocket.\n\nOptions (each also read from the environment "
      "variable shown; flags win):\n");
  for (size_t i = 0; i < SRV_OPT_DOCS; i++) {
    print_option(&srv_opt_docs[i]);
  }
  printf(
      "  --help\n        this text\n  --version\n        print the version\n");
}


const srv_opt_doc_t* srv_opt_doc_of(srv_opt_id_t id) {
  for (size_t i = 0; i < SRV_OPT_DOCS; i++) {
    if (srv_opt_docs[i].id == id) {
      return &srv_opt_docs[i];
    }
  }
  return NULL;
}
