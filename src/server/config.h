/* config.h: cryomambad settings from defaults, CRYOMAMBA_* environment
 * variables and command-line flags (flags win). */
#ifndef SRV_CONFIG_H
#define SRV_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/ipnet.h"
#include "server/engine_cfg.h"

#define SRV_TRUSTED_PROXIES_MAX 64 /* --trusted-proxy networks */

/* --role: one process with SQLite (all), or a cluster over Redis. */
typedef enum {
  SRV_ROLE_ALL = 0,
  SRV_ROLE_GATEWAY, /* REST and WebSocket; jobs go to Redis */
  SRV_ROLE_WORKER   /* runs the jobs of the Redis stream */
} srv_role_t;

typedef struct {
  char bind[64];
  int port;
  char data_root[1024]; /* resolved absolute path; "" = no server paths */
  char state_dir[1024]; /* SQLite database and artifacts */
  unsigned max_running;
  double preview_hz; /* default when a job gives none */
  unsigned max_connections;
  unsigned max_subscribers_per_job;
  unsigned max_connections_per_ip; /* 0: no limit */
  /* Peers whose X-Forwarded-For names the client (--trusted-proxy). */
  core_ipnet_t trusted_proxies[SRV_TRUSTED_PROXIES_MAX];
  size_t trusted_proxy_count;
  size_t max_body_bytes;
  size_t max_header_bytes;
  size_t max_ws_message_bytes;
  uint64_t max_volume_voxels;   /* bounds mask memory per job */
  uint64_t preview_cache_bytes; /* final previews of finished jobs kept */
  double ws_ping_interval_s;
  double ws_ping_timeout_s;
  double http_idle_timeout_s;
  double http_header_timeout_s;   /* request line + headers, total */
  double http_body_timeout_s;     /* request body after its headers, total */
  double http_write_timeout_s;    /* a response making no progress */
  unsigned max_queued;            /* queued jobs; more get 429 */
  unsigned retention_max_jobs;    /* finished jobs kept; 0: no limit */
  double retention_max_age_s;     /* finished jobs kept this long; 0: forever */
  uint64_t max_held_bytes;        /* preview bytes held for slow readers */
  uint64_t max_upload_bytes;      /* largest upload (Tus-Max-Size) */
  uint64_t storage_quota_bytes;   /* volumes + artifacts + uploads; 0: none */
  unsigned max_uploads_per_token; /* incomplete uploads; 0: no limit */
  unsigned max_uploads_per_ip;    /* incomplete uploads; 0: no limit */
  double upload_expiry_s;         /* incomplete uploads are removed after */
  int log_level;                  /* 0 debug, 1 info, 2 warn, 3 error */
  char auth_file[1024];           /* "" = none */
  const char* hash_token;   /* --hash-token: print its auth line and exit */
  srv_engine_cfg_t engines; /* built-ins enabled, exec engines, devices */
  srv_role_t role;
  char redis_url[512];            /* --redis; "" = none */
  char redis_password_file[1024]; /* --redis-password-file; "" = none */
  char shared_dir[1024];          /* --shared-dir; "" = none */
  unsigned redis_max_in_flight; /* commands awaiting replies, per connection */
  unsigned redis_timeout_ms;    /* a command unanswered this long: reconnect */
  unsigned worker_lease_ms;     /* a job entry not renewed this long is lost */
  bool fail_on_worker_lost;     /* --on-worker-lost fail (else requeue) */
  unsigned max_attempts;        /* runs before a lost job fails */
  uint64_t redis_chunk_message_bytes; /* a worker's chunk batch, at most */
  unsigned redis_chunk_read_count;    /* a gateway's HSCAN COUNT (fills) */
  unsigned sweep_grace_s;    /* shared dir: an orphan volume this old goes */
  unsigned sweep_interval_s; /* between two sweeps of the shared dir */
  unsigned sweep_max_files;  /* entries one sweep examines */
} srv_config_t;

/* Refuses combinations of --role, --redis and --shared-dir that cannot
 * work: 0, or -1 with a sentence in `why`. */
int srv_config_check_role(const srv_config_t* cfg, char* why, size_t why_len);

/* Where volumes/ and artifacts/ live: --shared-dir when given (a cluster
 * role), else --state-dir. */
const char* srv_config_files_dir(const srv_config_t* cfg);

/* Fills the defaults. */
void srv_config_default(srv_config_t* cfg);

/* Applies the environment, then argv. Returns 0, 1 when --help or --version
 * printed and the program should exit 0, or -1 after printing an error to
 * stderr (exit 2). */
int srv_config_parse(srv_config_t* cfg, int argc, char** argv);

#endif
