/* config_opts.h: cryomambad's options (config.c parses them): each flag's
 * id, environment variable and --help text, and the --help page. Private
 * to the configuration. */
#ifndef SRV_CONFIG_OPTS_H
#define SRV_CONFIG_OPTS_H

#include <stddef.h>

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
  OPT_REDIS_PASSWORD_FILE,
  OPT_SHARED_DIR,
  OPT_REDIS_IN_FLIGHT,
  OPT_REDIS_TIMEOUT,
  OPT_WORKER_LEASE,
  OPT_ON_WORKER_LOST,
  OPT_MAX_ATTEMPTS,
  OPT_REDIS_CHUNK_BYTES,
  OPT_REDIS_CHUNK_READ_COUNT,
  OPT_SWEEP_GRACE,
  OPT_SWEEP_INTERVAL,
  OPT_SWEEP_MAX_FILES,
  OPT_HELP,
  OPT_VERSION
} srv_opt_id_t;

typedef struct {
  const char* flag;
  const char* env;
  srv_opt_id_t id;
  const char* help;
} srv_opt_doc_t;

/* One entry per option before OPT_HELP (checked where the table is). */
#define SRV_OPT_DOCS ((size_t) (OPT_HELP - OPT_BIND))
extern const srv_opt_doc_t srv_opt_docs[SRV_OPT_DOCS];

/* The entry of `id`, NULL for --help and --version. */
const srv_opt_doc_t* srv_opt_doc_of(srv_opt_id_t id);

/* Prints the --help page to stdout. */
void srv_opt_print_help(void);

#endif
