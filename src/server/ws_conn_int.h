/* ws_conn_int.h: a WebSocket connection's state, shared by the connection
 * (ws_conn.c: the upgrade, back-pressure, client messages, keepalive,
 * teardown) and its subscription (ws_sub.c: the sink on the job's topic,
 * connected, latest preview, terminal message, chunks). Private to those
 * two files. Loop thread only. */
#ifndef SRV_WS_CONN_INT_H
#define SRV_WS_CONN_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/ws_session.h"
#include "server/chunks.h"
#include "server/cluster.h"
#include "server/conn.h"
#include "server/job.h"
#include "server/ws_chunks.h"
#include "server/ws_query.h"

/* Back-pressure, one state per connection:
 *   READING     input is read and fed to wslay;
 *   DRAINING    input paused until the queue drains: wslay's replies did
 *               not fit, or the peer is behind on what we send;
 *   CLOSING     a close frame is queued: no more data frames, the
 *               connection ends once it is written. */
typedef enum {
  WS_READING,
  WS_DRAINING,
  WS_CLOSING
} ws_flow_t;

typedef struct {
  srv_conn_t* conn;
  net_ws_t ws;
  srv_sink_t sink;          /* on job->topic while subscribed */
  srv_waiter_t waiter;      /* waiting for the job's preview to be rebuilt */
  srv_job_t* job;           /* a reference while subscribed, else NULL */
  srv_ws_query_t query;     /* what the handshake asked for */
  srv_chunk_sub_t chunks;   /* the chunks encoding's subscriber */
  srv_cluster_join_t cjoin; /* a gateway's: its job's mirror (cluster.h) */
  srv_chunk_watch_t cwait;  /* a gateway's: waiting for the table's read */
  ws_flow_t flow;
  uint64_t ping_sent_ms; /* 0 when no ping is outstanding */
} ws_state_t;

/* ---- ws_conn.c ---- */

/* Re-evaluates the flow after input was fed or the queue drained. */
void srv_ws_update_flow(ws_state_t* st);

/* Queues a close frame with `code` and `reason`; the connection ends once
 * it is written. */
void srv_ws_close_with(ws_state_t* st, uint16_t code, const char* reason);

/* A connection-local message (seq 0): connected, pong, errors. Takes
 * `data`; closes the connection when it cannot be sent. */
void srv_ws_send_local(ws_state_t* st, const char* type, json_t* data);

/* ---- ws_sub.c ---- */

/* The connection's sink on its job's topic. */
extern const srv_sink_ops_t srv_ws_sink_ops;

/* Subscribes the connection to `job`: connected, then the latest preview
 * (or chunk rounds) and the terminal message if the job ended. */
void srv_ws_subscribe(ws_state_t* st, srv_job_t* job);

/* Leaves the job's topic, a gateway's mirror and any wait; drops the job
 * reference. Idempotent. */
void srv_ws_unsubscribe(ws_state_t* st);

/* The waiter's callback: a late joiner's re-rendered preview landed. */
void srv_ws_on_preview_ready(srv_waiter_t* w, bool has_preview);

#endif
