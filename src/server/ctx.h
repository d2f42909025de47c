/* ctx.h: the server's context (every piece of mutable server state hangs off
 * it), jobs and connections. Loop thread only unless a field says otherwise.
 * Lifetimes: jobs live until the server exits; a connection is freed in its
 * uv_close callback (conn.c), never directly. */
#ifndef SRV_CTX_H
#define SRV_CTX_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/job.h"
#include "core/list.h"
#include "core/preview_bin.h"
#include "core/shape.h"
#include "core/uuid.h"
#include "net/frame.h"
#include "net/http_reader.h"
#include "net/wqueue.h"
#include "net/ws_session.h"
#include "server/addr_limit.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/log.h"

typedef struct srv_ctx_s srv_ctx_t;
typedef struct srv_store_s srv_store_t;
typedef struct srv_download_s srv_download_t;

typedef struct srv_job_s {
  core_list_t link; /* ctx->jobs, newest first */
  srv_ctx_t* ctx;
  char id[CORE_UUID_STR_LEN + 1];
  core_job_state_t state;
  core_job_params_t params;
  core_shape_t shape;
  core_shape_t preview_shape;
  double voxel_size[3];
  char* volume_path; /* malloc'd, NULL when the volume was given by shape */
  double progress;
  uint64_t seq; /* last job event's seq; events start at 1 */
  uint64_t previews_sent;
  int64_t created_us, updated_us, started_us, finished_us;
  char error_code[32];
  char error_message[256];
  bool has_stats;
  uint64_t label_counts[3];
  uint64_t artifact_bytes;
  uint64_t final_preview_seq; /* kept to rebuild the preview after restart */
  int64_t final_preview_us;
  /* Shared, sealed WebSocket frames; the job holds one reference each. The
   * latest preview exists per encoding: base64 (text) and raw always, zstd
   * when a subscriber asked for it when it was rendered. */
  net_frame_t* latest[CORE_ENC_COUNT];
  net_frame_t* terminal_frame;
  core_list_t subscribers; /* srv_conn_t.sub_link */
  unsigned subscriber_count;
  core_list_t preview_waiters; /* HTTP conns awaiting a rebuilt preview */
  unsigned subscribers_by_enc[CORE_ENC_COUNT];
  /* Engine. */
  uv_timer_t timer;        /* ticks where timerfd is unavailable */
  uv_poll_t tick_poll;     /* Linux: watches tick_fd, a timerfd armed with
                              absolute CLOCK_MONOTONIC deadlines */
  int tick_fd;             /* -1 when not in use */
  uv_timer_t render_timer; /* starts the next tick's render mid-period */
  unsigned open_handles;   /* timer + render_timer; freed at zero */
  bool timer_active;
  uint64_t start_ns;          /* uv_hrtime() at start: deadlines are absolute */
  uint64_t tick;              /* ticks done */
  unsigned works_in_flight;   /* renders on the pool for this job */
  bool render_busy;           /* a preview render is on the pool */
  struct srv_render_s* ready; /* rendered ahead, for tick ready->tick */
  net_frame_pool_t* preview_pool; /* while running: recycled preview frames */
  bool is_finalizing;             /* the final mask is being written */
  bool preview_rebuild_pending;
} srv_job_t;

typedef enum {
  SRV_CONN_HTTP,
  SRV_CONN_WS,
} srv_conn_mode_t;

typedef struct srv_conn_s {
  uv_tcp_t tcp; /* first: the handle's address is the conn's */
  srv_ctx_t* ctx;
  core_list_t link; /* ctx->conns */
  srv_conn_mode_t mode;
  net_wqueue_t wq;
  net_http_reader_t* http;  /* while in HTTP mode (malloc'd) */
  net_ws_t* ws;             /* after the upgrade (malloc'd) */
  srv_job_t* job;           /* subscribed job, WS only */
  core_encoding_t encoding; /* preview encoding chosen at the upgrade */
  core_list_t sub_link;     /* job->subscribers */
  srv_download_t* download; /* an artifact being streamed, or NULL */
  srv_job_t* waiting_job;   /* HTTP: awaiting this job's rebuilt preview
                               (linked by sub_link), or NULL */
  uint8_t* http_backlog;    /* pipelined bytes held while paused */
  size_t http_backlog_len;
  uint64_t last_rx_ms;      /* uv_now() at the last byte received */
  uint64_t ping_sent_ms;    /* 0 when no ping is outstanding */
  uint64_t ending_since_ms; /* uv_now() when srv_conn_end() was called */
  uv_shutdown_t shutdown_req;
  uv_timer_t linger_timer; /* bounds the wait for the peer's FIN */
  bool is_reading;
  bool is_closing;        /* uv_close called */
  bool is_shutting_down;  /* close frame/response sent; draining */
  bool close_after_write; /* HTTP: close once the response is written */
  bool linger_timer_active;
  bool is_upgrade_pending; /* an upgrade request awaits srv_ws_upgrade() */
  bool is_addr_counted;    /* counted in ctx->addr_limit */
  unsigned open_handles;   /* tcp + linger timer; freed when both closed */
  char peer[64];           /* "ip:port", for logs and per-address limits */
  char peer_ip[48];
} srv_conn_t;

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
  uint64_t previews_evicted; /* final previews dropped from memory */
  uint64_t render_ns_total;  /* worker time spent producing previews */
} srv_metrics_t;

struct srv_ctx_s {
  uv_loop_t* loop;
  srv_config_t cfg;
  srv_logger_t log;
  srv_auth_t auth; /* read-only after start-up */
  uv_tcp_t listener;
  uv_signal_t sigint, sigterm;
  uv_timer_t sweep_timer;   /* keepalive pings and idle timeouts */
  uint64_t stop_started_ms; /* uv_now() at SIGINT/SIGTERM */
  core_list_t conns;
  unsigned conn_count;
  srv_addr_limit_t addr_limit; /* per-address counts (when limited) */
  core_list_t jobs;
  unsigned job_count;
  unsigned running_count;
  srv_store_t* store;
  srv_metrics_t metrics;
  uint8_t read_buf[64 * 1024]; /* every read lands here; consumed in the cb */
  bool is_read_buf_busy;
  bool is_stopping;
  char listen_url[128];
};

/* Microseconds since the Unix epoch, for protocol timestamps. */
int64_t srv_now_us(void);

#endif
