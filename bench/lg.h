/* lg.h: the load generator's state, shared by loadgen.c (connections and
 * the receive path) and lg_report.c (options, set-up, window, results).
 * Loop thread only. */
#ifndef BENCH_LG_H
#define BENCH_LG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/shape.h"
#include "lg_stats.h"

#define LG_PREFIX                                                              \
  320 /* bytes of each message kept: type and timestamp                        \
          (after a binary preview's 4-byte length too) */

typedef enum {
  LG_IDLE,
  LG_CONNECTING,
  LG_HANDSHAKE,
  LG_OPEN,
  LG_DONE
} lg_state_t;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uint32_t idx;
  uint32_t job; /* index into lg_t.paths */
  lg_state_t state;
  bool is_stall_client; /* stops reading after its first preview */
  bool is_stalled;
  bool is_closing;
  bool was_open; /* completed the handshake */
  bool is_ended; /* received the job's terminal message (--until-end) */
  int64_t t_start_us;
  char* hs; /* the handshake answer so far (LG_HS_MAX), NULL once open */
  size_t hs_len;
  char key[32];
  /* Frame parser. */
  uint8_t hdr[14];
  uint8_t hdr_len;
  uint8_t hdr_need;
  bool in_payload;
  bool is_control;
  bool fin;
  uint8_t opcode;
  uint8_t msg_opcode;
  uint64_t remain; /* payload bytes of this frame still to come */
  uint8_t ctl[125];
  uint8_t ctl_len;
  char prefix[LG_PREFIX];
  uint16_t prefix_len;
  uint64_t msg_len;
  uint32_t chunks_pending; /* chunk messages of the current delta to come */
  bool is_delta_complete;
  int64_t delta_ts_us;
  uint8_t* full; /* the sample connection's whole message, else NULL */
  size_t full_len;
  size_t full_cap;
  /* Results in the window. */
  uint64_t previews;
  int64_t first_us; /* monotonic arrival of the first preview */
  int64_t prev_us;
  int64_t first_ts_us; /* its server timestamp */
  int64_t last_ts_us;  /* the latest preview's server timestamp */
  int64_t drift_us;    /* arrival drift at the latest preview */
  int64_t ts_drift_us; /* server-timestamp drift at the latest preview */
} lg_conn_t;

typedef struct {
  const char* url;
  const char* server;
  const char* json_path;
  const char* label;
  uint32_t n;
  uint32_t jobs;
  uint32_t stall;
  double ramp_per_s;
  double duration_s;
  double warmup_s;
  double hz;
  uint32_t scale;
  const char* pattern;
  double job_duration_s;
  int server_pid;
  const char* encoding; /* base64 | zstd | raw | chunks (NULL: base64) */
  uint32_t chunk_scale; /* chunks: the scale= query, 0 = the default */
  bool until_end;       /* window from the first connect to every end */
} lg_opt_t;

typedef struct {
  lg_opt_t opt;
  uv_loop_t* loop;
  char host[256];
  uint16_t port;
  struct sockaddr_in addr;
  char** paths; /* one /ws/jobs/<id> per job */
  uint32_t job_count;
  core_shape_t shape;
  bool has_shape;
  int64_t period_us;
  uint32_t n;
  lg_conn_t* conns;
  uv_timer_t ramp_timer;
  uv_timer_t phase_timer;
  int64_t start_us;
  double ramp_s;
  uint32_t opened;
  uint32_t established;
  uint32_t failed;
  uint32_t dropped;
  uint32_t closed_by_server;
  int last_close_code;
  uint32_t protocol_errors;
  uint64_t messages;
  uint64_t unparsed;
  uint64_t deltas;          /* chunks: delta messages in the window */
  uint64_t deltas_complete; /* of which complete: true */
  uint64_t chunk_msgs;      /* chunks: binary chunk messages */
  uint64_t chunk_bytes;     /* their bytes, 28-byte headers included */
  uint64_t bin_previews;    /* zstd/raw: binary previews */
  uint64_t raw_previews;    /* of which raw */
  uint64_t raw_bytes;       /* their payload bytes */
  uint32_t ended;           /* connections that got the terminal message */
  uint32_t validated;
  uint32_t invalid;
  bool is_ramp_done;
  bool is_window_open;
  bool is_finished; /* the window closed and the connections with it */
  /* Window. */
  uint64_t window_bytes;
  int64_t window_start_us;
  double window_s;
  double self_cpu0;
  double self_cpu_s;
  lg_proc_t srv_baseline; /* before the first connection */
  lg_proc_t srv0;
  lg_proc_t srv1;
  bool has_srv;
  lg_samples_t connect;
  lg_samples_t latency;
  lg_samples_t jitter;
} lg_t;

/* The encoding is the JSON + base64 one (the sample can be validated). */
bool lg_is_base64(const lg_opt_t* o);

/* Parses options, creates jobs if asked, resolves the address, allocates
 * the connections. Returns 0, 1 (--help printed) or 2 (error printed). */
int lg_setup(lg_t* g, int argc, char** argv);

/* Starts and ends the measurement window (CPU and /proc readings). */
void lg_window_open(lg_t* g);
void lg_window_close(lg_t* g);

/* Prints the results and writes --json. Returns the exit status: 0, or 3
 * when a sampled preview was invalid. */
int lg_report(lg_t* g);

#endif
