/* ctx.h: the server's context: every piece of mutable server state hangs
 * off it (configuration, the connection list, the job registry, the store,
 * metrics). Loop thread only unless a field says otherwise. What a job or a
 * connection is lives in jobs.h and conn.h; only the files that need wslay
 * or http-parser include them. */
#ifndef SRV_CTX_H
#define SRV_CTX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/idmap.h"
#include "core/job.h"
#include "core/list.h"
#include "core/preview_bin.h"
#include "core/shape.h"
#include "core/uuid.h"
#include "net/frame.h"
#include "net/wqueue.h"
#include "server/addr_limit.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/log.h"

typedef struct srv_ctx_s srv_ctx_t;
typedef struct srv_store_s srv_store_t;
typedef struct srv_download_s srv_download_t;
typedef struct srv_job_s srv_job_t;
typedef struct srv_engine_ops_s srv_engine_ops_t;
struct srv_conn_s;

typedef struct {
  uint64_t connections_total;
  uint64_t http_requests_total;
  uint64_t http_responses_by_class[6]; /* index status / 100 */
  uint64_t ws_upgrades_total;
  uint64_t ws_closes_total;
  uint64_t previews_published;
  uint64_t preview_bytes_published;
  uint64_t events_published;
  uint64_t jobs_created_total;
  uint64_t renders_total;
  uint64_t jobs_deleted_total;
  uint64_t jobs_retired_total;
  uint64_t slow_readers_dropped; /* closed: over the held-bytes budget */
  uint64_t previews_evicted;     /* final previews dropped from memory */
  uint64_t chunk_deltas_sent;    /* delta messages to chunks subscribers */
  uint64_t chunk_deltas_shared;  /* of which composed once for several */
  uint64_t render_ns_total;      /* worker time spent producing previews */
} srv_metrics_t;

struct srv_ctx_s {
  uv_loop_t* loop;
  srv_config_t cfg;
  srv_logger_t log;
  srv_auth_t auth; /* read-only after start-up */
  uv_tcp_t listener;
  /* The first protocol of every accepted connection (http_conn.c); the
   * refusal, if any, is what it must answer before ending. */
  void (*on_accept)(struct srv_conn_s* conn, const char* refusal);
  uv_signal_t sigint, sigterm;
  uv_timer_t sweep_timer;   /* keepalive pings and idle timeouts */
  uint64_t stop_started_ms; /* uv_now() at SIGINT/SIGTERM */
  uint64_t housekeeping_ms; /* uv_now() at the last job housekeeping */
  core_list_t conns;
  unsigned conn_count;
  srv_addr_limit_t addr_limit;   /* per-address counts (when limited) */
  core_list_t jobs;              /* srv_job_t.link, newest first */
  core_idmap_t job_index;        /* id -> srv_job_t*, registered jobs */
  unsigned job_count;            /* registered */
  unsigned queued_count;         /* registered and queued */
  unsigned running_count;        /* registered and running */
  unsigned jobs_by_state[5];     /* registered, by core_job_state_t */
  unsigned creates_pending;      /* created, record not yet committed */
  unsigned deletes_pending;      /* deleted, removal not yet committed */
  unsigned endings_pending;      /* ended, terminal record not yet committed */
  struct srv_engines_s* engines; /* the registry (engines.h), main's */
  struct srv_devices_s* devices; /* exec jobs' device slots (devices.h) */
  struct srv_classic_budget_s* classic; /* classic's workers (main's) */
  struct srv_cluster_s*
      cluster; /* --role gateway|worker (cluster.h), or NULL */
  /* Bytes of preview frames their job let go of that slow readers still
   * hold (net_frame_mark_held); bounded by cfg.max_held_bytes. Atomic: a
   * frame may be freed on any thread. */
  atomic_uint_least64_t held_bytes;
  srv_store_t* store;
  core_list_t uploads;        /* srv_upload_t.link (uploads.h), oldest first */
  core_idmap_t upload_index;  /* id -> srv_upload_t* */
  core_list_t volumes;        /* srv_volume_t.link (volumes.h), oldest first */
  core_idmap_t volume_index;  /* id -> srv_volume_t* */
  core_idmap_t volume_by_sha; /* sha256 hex -> srv_volume_t* (dedup) */
  /* Where uploads' files are: state_dir/uploads, or with --shared-dir
   * shared_dir/uploads/<node id> (cluster_files.c). */
  char uploads_dir[1200];
  int data_root_fd; /* O_PATH of cfg.data_root for volume probes, or -1 */
  srv_metrics_t metrics;
  uint8_t read_buf[64 * 1024]; /* every read lands here; consumed in the cb */
  bool is_read_buf_busy;
  bool is_stopping;
  char listen_url[128];
};

/* Microseconds since the Unix epoch, for protocol timestamps. */
int64_t srv_now_us(void);

#endif
