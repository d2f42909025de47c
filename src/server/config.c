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
#include "server/config_opts.h"


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
  cfg->redis_chunk_read_count = 512;
  cfg->sweep_grace_s = 3600;
  cfg->sweep_interval_s = 600;
  cfg->sweep_max_files = 10000;
  srv_engine_cfg_default(&cfg->engines);
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
static int apply(srv_config_t* cfg, srv_opt_id_t id, const char* v) {
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
  case OPT_REDIS_PASSWORD_FILE:
    return copy_str(cfg->redis_password_file, sizeof(cfg->redis_password_file),
                    v);
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
  case OPT_REDIS_CHUNK_READ_COUNT:
    if (parse_uint(v, 65536, &u) != 0 || u == 0) {
      return -1;
    }
    cfg->redis_chunk_read_count = (unsigned) u;
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
  if (!cluster && (cfg->redis_url[0] != '\0' || cfg->shared_dir[0] != '\0' ||
                   cfg->redis_password_file[0] != '\0')) {
    snprintf(why, why_len,
             "--redis, --redis-password-file and --shared-dir are for --role "
             "gateway|worker; the "
             "default role (all) keeps everything in one process");
    return -1;
  }
  return 0;
}


const char* srv_config_files_dir(const srv_config_t* cfg) {
  /* Only a cluster role may have one (srv_config_check_role). */
  return cfg->shared_dir[0] != '\0' ? cfg->shared_dir : cfg->state_dir;
}


int srv_config_parse(srv_config_t* cfg, int argc, char** argv) {
  for (size_t i = 0; i < SRV_OPT_DOCS; i++) {
    if (srv_opt_docs[i].id == OPT_HASH_TOKEN) {
      continue; /* a flag only */
    }
    const char* v = getenv(srv_opt_docs[i].env);
    if (v != NULL && apply(cfg, srv_opt_docs[i].id, v) != 0) {
      fprintf(stderr, "cryomambad: invalid value '%s' for %s\n", v,
              srv_opt_docs[i].env);
      return -1;
    }
  }
  enum {
    N_DOCS = SRV_OPT_DOCS
  };
  struct option longopts[N_DOCS + 3];
  for (size_t i = 0; i < N_DOCS; i++) {
    longopts[i] = (struct option){srv_opt_docs[i].flag, required_argument, NULL,
                                  (int) srv_opt_docs[i].id};
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
      srv_opt_print_help();
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
    if (apply(cfg, (srv_opt_id_t) c, optarg) != 0) {
      const srv_opt_doc_t* d = srv_opt_doc_of((srv_opt_id_t) c);
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
