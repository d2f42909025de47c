/* http_client.h: one HTTP/1.1 request on its own TCP connection
 * (Connection: close), response parsed by http-parser. A response body is
 * buffered up to a limit, or, for 2xx answers when a sink is set, streamed
 * to the sink as it arrives (downloads never sit in memory). Timeouts: one
 * for connecting, one for inactivity after that. Loop thread only. */
#ifndef NET_HTTP_CLIENT_H
#define NET_HTTP_CLIENT_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/dial.h"

typedef struct net_hreq_s net_hreq_t;

/* Receives body bytes of a 2xx response; return 0 to continue or a negative
 * error to abort the request with it. */
typedef int (*net_hreq_sink_cb)(net_hreq_t* req,
                                const uint8_t* data,
                                size_t len);

/* Called once, after every handle closed (free the request here): status 0
 * when a whole response arrived (see http_status, body), else a libuv error
 * (UV_ECONNREFUSED, UV_ETIMEDOUT, UV_ECANCELED, UV_EPROTO for bad HTTP,
 * UV_E2BIG for a body over the limit) or a sink's error. */
typedef void (*net_hreq_done_cb)(net_hreq_t* req, int status);

typedef struct {
  const char* host;
  uint16_t port;
  const char* method;  /* "GET", "POST", "DELETE" */
  const char* target;  /* path and query, e.g. "/v1/jobs" */
  const char* headers; /* extra lines, each ending in \r\n; may be NULL */
  const char* body;    /* copied; may be NULL */
  size_t body_len;
  uint32_t connect_timeout_ms;
  uint32_t idle_timeout_ms;
  size_t max_body_bytes; /* buffered bodies; larger ones fail with E2BIG */
  net_hreq_sink_cb sink; /* NULL: buffer 2xx bodies too */
} net_hreq_opts_t;

struct net_hreq_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  net_dial_t dial;
  uv_write_t wreq;
  http_parser parser;
  char* out; /* the request bytes, freed after the write */
  size_t out_len;
  unsigned http_status;
  bool is_sinking;  /* this response's body goes to the sink */
  bool is_complete; /* a whole response was parsed */
  bool is_closing;
  bool is_dialing; /* the dial callback is still to come */
  int open_handles;
  int result;
  uint8_t* body; /* buffered body, NUL-terminated; owned, freed on free */
  size_t body_len, body_cap;
  uint64_t sunk_bytes;
  uint32_t connect_timeout_ms, idle_timeout_ms;
  size_t max_body_bytes;
  net_hreq_sink_cb sink;
  net_hreq_done_cb done;
  void* data;
};

/* Starts `req` (caller-owned memory, alive until done runs). Returns 0 or
 * a libuv error; on error nothing was started and done never runs. */
int net_hreq_start(net_hreq_t* req,
                   uv_loop_t* loop,
                   const net_hreq_opts_t* opts,
                   net_hreq_done_cb done,
                   void* data);

/* Aborts a request; done runs later with UV_ECANCELED (unless it already
 * completed, in which case nothing changes). */
void net_hreq_abort(net_hreq_t* req);

/* Releases the buffered body (after done). */
void net_hreq_free_body(net_hreq_t* req);

#endif
