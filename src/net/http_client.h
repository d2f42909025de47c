/* http_client.h: one HTTP/1.1 request on its own TCP connection
 * (Connection: close), response parsed by http-parser. A response body is
 * buffered up to a limit, or, for 2xx answers when a sink is set, streamed
 * to the sink as it arrives (downloads never sit in memory). The response
 * headers are kept (net_hreq_header). A request body is copied, or
 * borrowed (uploads: the caller's chunk buffer is written as it is, in
 * slices, each reported to on_sent). https: the same over tls.h. Timeouts:
 * one for connecting (and the TLS handshake), one for inactivity after that (a
 * slice written or bytes read reset it). Loop thread only. */
#ifndef NET_HTTP_CLIENT_H
#define NET_HTTP_CLIENT_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/dial.h"
#include "net/tls.h"

/* Response headers kept per request; more fail the request (UV_E2BIG). */
#define NET_HREQ_MAX_HEADER_BYTES 16384

typedef struct net_hreq_s net_hreq_t;

/* Receives body bytes of a 2xx response; return 0 to continue or a negative
 * error to abort the request with it. */
typedef int (*net_hreq_sink_cb)(net_hreq_t* req,
                                const uint8_t* data,
                                size_t len);

/* Called once, after every handle closed (free the request here): status 0
 * when a whole response arrived (see http_status, body), else a libuv error
 * (UV_ECONNREFUSED, UV_ETIMEDOUT, UV_ECANCELED, UV_EPROTO for bad HTTP,
 * UV_E2BIG for a body or headers over the limit), a NET_TLS_E_* error
 * (the handshake failed or timed out, the certificate was refused) or a
 * sink's error. */
typedef void (*net_hreq_done_cb)(net_hreq_t* req, int status);

/* A slice of the request body was handed to the kernel: `sent` body bytes
 * so far (of body_len). */
typedef void (*net_hreq_sent_cb)(net_hreq_t* req, uint64_t sent);

typedef struct {
  const char* host;
  uint16_t port;
  const char* method;  /* "GET", "HEAD", "POST", "PATCH", "DELETE", ... */
  const char* target;  /* path and query, e.g. "/v1/jobs" */
  const char* headers; /* extra lines, each ending in \r\n; may be NULL */
  const char* body;    /* copied (unless borrowed); may be NULL: then POST,
                          PUT and PATCH send Content-Length: 0 */
  size_t body_len;
  bool is_body_borrowed;    /* body is not copied: the caller keeps it
                               unchanged until done runs */
  const char* content_type; /* of the body; NULL: application/json */
  uint32_t connect_timeout_ms;
  uint32_t idle_timeout_ms;
  size_t max_body_bytes;    /* buffered bodies; larger ones fail with E2BIG */
  net_hreq_sink_cb sink;    /* NULL: buffer 2xx bodies too */
  net_hreq_sent_cb on_sent; /* NULL: not told */
  SSL_CTX* tls_ctx;         /* https: the context (tls.h); NULL: plain */
} net_hreq_opts_t;

struct net_hreq_s {
  net_tls_t tls; /* the connection (tls.tcp), TLS or plain */
  uv_timer_t timer;
  net_dial_t dial;
  uv_write_t wreq;
  http_parser parser;
  char* out; /* the request line and headers, freed after the writes */
  size_t out_len;
  char* send_copy;      /* owned copy of a request body not borrowed */
  const char* send_src; /* the request body (send_copy or borrowed) */
  size_t send_len;      /* its length */
  size_t send_done;     /* bytes of it written so far */
  int write_error;      /* a failed write; the answer may still come */
  unsigned http_status;
  bool is_head;     /* a HEAD request: the response has no body */
  bool is_sinking;  /* this response's body goes to the sink */
  bool is_complete; /* a whole response was parsed */
  bool is_sent;     /* the request's first bytes went to the connection:
                       the server may have acted on it (a client's
                       failover rule needs to know) */
  bool is_closing;
  bool is_dialing;  /* the dial callback is still to come */
  bool is_in_value; /* header parsing: the last piece was a value */
  int open_handles;
  int result;
  char* headers; /* response headers, "Name:value\n" lines; owned */
  size_t headers_len, headers_cap;
  uint8_t* body; /* buffered body, NUL-terminated; owned, freed on free */
  size_t body_len, body_cap;
  uint64_t sunk_bytes;
  uint32_t connect_timeout_ms, idle_timeout_ms;
  size_t max_body_bytes;
  net_hreq_sink_cb sink;
  net_hreq_sent_cb on_sent;
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

/* Copies the value of response header `name` (any letter case) into
 * `out` (NUL-terminated, truncated to cap - 1). False when absent. */
bool net_hreq_header(const net_hreq_t* req,
                     const char* name,
                     char* out,
                     size_t cap);

/* Releases the buffered body and the headers (after done). */
void net_hreq_free_body(net_hreq_t* req);

#endif
