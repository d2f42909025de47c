/* conn.h: one client connection, whatever it speaks: accept and the
 * connection limits, reading into the context's one read buffer, output
 * through its write queue, the graceful end (last bytes written, FIN, a
 * bounded wait for the peer's FIN), deadlines for peers that stop reading,
 * and the budget of bytes held for slow readers. What the bytes mean is
 * the protocol's (http_conn.c, then ws_conn.c after an upgrade), reached
 * through srv_proto_t: this file includes neither. Loop thread only; a conn
 * is freed in its close callback, never directly. */
#ifndef SRV_CONN_H
#define SRV_CONN_H

#include "server/ctx.h"

typedef struct srv_conn_s srv_conn_t;

/* A protocol spoken on a connection. Every callback is optional but
 * on_read. */
typedef struct {
  /* Bytes received (borrowed for the call). */
  void (*on_read)(srv_conn_t* conn, const uint8_t* bytes, size_t len);
  /* Everything queued was written, after srv_conn_wait_drain(). */
  void (*on_drain)(srv_conn_t* conn);
  /* Periodic check (deadlines, keepalive); `now_ms` is uv_now(). */
  void (*on_sweep)(srv_conn_t* conn, uint64_t now_ms);
  /* An answer prepared asynchronously was sent: go on with the input. */
  void (*on_resume)(srv_conn_t* conn);
  /* The server is stopping: end politely. */
  void (*on_shutdown)(srv_conn_t* conn);
  /* The connection closes: let go of jobs, sinks and waiters. */
  void (*on_close)(srv_conn_t* conn);
  /* Its handles are closed: free the protocol's state. */
  void (*on_free)(srv_conn_t* conn);
  const char* name; /* "http" or "ws", for logs and metrics */
} srv_proto_t;

/* Something producing a response body in pieces (a file download): told
 * when the connection's queue drains and when the connection closes. At
 * most one per connection; it clears conn->stream when it is done. */
typedef struct srv_stream_s srv_stream_t;
struct srv_stream_s {
  void (*on_drain)(srv_stream_t* stream);
  void (*on_close)(srv_stream_t* stream); /* conn->stream is NULL by then */
};

/* A connection an answer is being prepared for (a commit, a render): the
 * ticket outlives the connection; its conn turns NULL when that closes. */
typedef struct {
  srv_conn_t* conn;
} srv_ticket_t;

struct srv_conn_s {
  uv_tcp_t tcp; /* first: the handle's address is the conn's */
  srv_ctx_t* ctx;
  core_list_t link; /* ctx->conns */
  net_wqueue_t wq;
  const srv_proto_t* proto;
  void* proto_data;         /* the protocol's, freed by proto->on_free */
  srv_stream_t* stream;     /* a body being produced, or NULL */
  srv_ticket_t* ticket;     /* outstanding ticket, or NULL */
  uint64_t accepted_ms;     /* uv_now() at accept */
  uint64_t last_rx_ms;      /* uv_now() at the last byte received */
  uint64_t ending_since_ms; /* uv_now() when srv_conn_end() was called */
  uv_shutdown_t shutdown_req;
  uv_timer_t linger_timer; /* bounds the wait for the peer's FIN */
  bool is_reading;
  bool is_closing;       /* uv_close called */
  bool is_shutting_down; /* last bytes queued; draining, then FIN */
  bool is_addr_counted;  /* counted in ctx->addr_limit under client_ip */
  bool is_proxy;         /* the peer is a --trusted-proxy (proxy.c) */
  bool is_forwarded;     /* client_ip is from X-Forwarded-For */
  bool wants_read;       /* the protocol wants input (may be paused) */
  unsigned open_handles; /* tcp + linger timer; freed when both closed */
  char peer[64];         /* "ip:port" of the TCP peer */
  char peer_ip[48];
  /* The client for per-address limits and logs: peer_ip, or the address a
   * trusted proxy's current request names (proxy.c). */
  char client_ip[48];
};

/* Log fields naming a connection's client: "peer", its address ("ip:port"
 * when it is the TCP peer), and "via", the proxy's "ip:port", when a
 * trusted proxy relayed it. Last in srv_log's list: without a proxy the
 * "via" name is NULL, which ends the list there. */
#define SRV_CONN_LOG_PEER(c)                                                   \
  "s:peer", ((c)->is_forwarded ? (c)->client_ip : (c)->peer),                  \
      ((c)->is_forwarded ? "s:via" : NULL), (c)->peer

/* What the accepting protocol does with a new connection; `refusal` is
 * NULL, or why it must be refused (answer, then end). Installed by main.c
 * in ctx->on_accept. */
typedef void (*srv_accept_cb)(srv_conn_t* conn, const char* refusal);

/* The listener's connection callback. */
void srv_conn_on_connection(uv_stream_t* listener, int status);

/* Switches the connection to `proto` (its state `data`). */
void srv_conn_set_proto(srv_conn_t* conn, const srv_proto_t* proto, void* data);

/* Queues a shared frame to the peer. Returns 0, or closes the connection
 * and returns -1. A peer whose queue is full stops being read from. */
int srv_conn_send(srv_conn_t* conn, net_frame_t* frame, net_wq_class_t cls);

/* Queues `n` (<= NET_WQ_PUSH_ALL_MAX) shared frames, in order, written
 * with one call when the queue is idle; otherwise as srv_conn_send. */
int srv_conn_send_all(srv_conn_t* conn, net_frame_t* const* frames, size_t n);

/* Reading on or off, as the protocol wants (pausing for back-pressure or
 * while a request is answered asynchronously). */
void srv_conn_want_read(srv_conn_t* conn, bool on);

/* Calls proto->on_drain once everything queued is written; returns true
 * instead (and calls nothing) when it already is. */
bool srv_conn_wait_drain(srv_conn_t* conn);

/* True when nothing is queued or being written. */
bool srv_conn_is_idle(const srv_conn_t* conn);

/* A ticket for an asynchronous answer (one at a time). NULL on ENOMEM. */
srv_ticket_t* srv_conn_ticket(srv_conn_t* conn);

/* Done with a ticket: frees it (detached from its conn, if still open). */
void srv_ticket_release(srv_ticket_t* ticket);

/* The asynchronous answer went out: the protocol goes on (proto->on_resume). */
void srv_conn_resume(srv_conn_t* conn);

/* Ends gracefully: once everything queued is written, shut down writing and
 * wait (bounded) for the peer to close. */
void srv_conn_end(srv_conn_t* conn);

/* Closes at once (errors, timeouts). Idempotent. */
void srv_conn_close(srv_conn_t* conn);

/* A trusted proxy's connection carries a request of client `ip` (text;
 * `is_forwarded`: named by X-Forwarded-For): the connection's per-address
 * count moves to `ip`. Returns 0, or -1 when `ip` already has
 * --max-connections-per-ip connections (the connection is then counted
 * under no address). Only for conn->is_proxy. */
int srv_conn_set_client(srv_conn_t* conn, const char* ip, bool is_forwarded);

/* Between a trusted proxy's requests: the connection is counted under no
 * address (an idle pooled connection is no client's). */
void srv_conn_release_client(srv_conn_t* conn);

/* Periodic housekeeping: protocol deadlines, stalled ends, and the budget
 * of bytes held for slow readers (the longest-stalled go first). */
void srv_conns_sweep(srv_ctx_t* ctx);

/* Server shutdown: every connection ends through its protocol. */
void srv_conns_shutdown(srv_ctx_t* ctx);

#endif
