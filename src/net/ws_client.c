/* ws_client.c: one client WebSocket over libuv + http-parser + wslay. See
 * ws_client.h. Loop thread only. */
#include "net/ws_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "core/base64.h"
#include "net/ws_handshake.h"

#define HANDSHAKE_MAX_HEADER_BYTES 16384
#define HANDSHAKE_MAX_BODY_BYTES 65536
#define CLOSE_LINGER_MS 2000

static void fail(net_wsc_t* wsc, int status);
static void on_linger(uv_timer_t* timer);


static void maybe_done(net_wsc_t* wsc) {
  if (wsc->open_handles > 0 || wsc->is_dialing) {
    return;
  }
  free(wsc->handshake);
  wsc->handshake = NULL;
  net_http_reader_free(&wsc->http);
  net_ws_rx_reset(&wsc->msg);
  net_tls_free(&wsc->tls);
  if (wsc->ctx != NULL) {
    wslay_event_context_free(wsc->ctx);
    wsc->ctx = NULL;
  }
  wsc->on_close(wsc, wsc->status);
}


static void on_closed(uv_handle_t* handle) {
  net_wsc_t* wsc = handle->data;
  wsc->open_handles--;
  maybe_done(wsc);
}


/* Closes both handles; the first status decided wins. */
static void fail(net_wsc_t* wsc, int status) {
  if (wsc->is_closing) {
    return;
  }
  wsc->is_closing = true;
  wsc->status = status;
  net_dial_cancel(&wsc->dial);
  uv_close((uv_handle_t*) &wsc->timer, on_closed);
  uv_close((uv_handle_t*) &wsc->tls.tcp, on_closed);
}


static void on_shutdown(uv_shutdown_t* req, int status) {
  (void) status;
  net_wsc_t* wsc = req->data;
  free(req);
  fail(wsc, wsc->status);
}


/* The close handshake is over: flush what is queued (our close echo), then
 * close the socket. */
static void finish_close(net_wsc_t* wsc) {
  if (wsc->is_shutting_down || wsc->is_closing) {
    return;
  }
  wsc->is_shutting_down = true;
  uv_timer_stop(&wsc->timer);
  uv_timer_start(&wsc->timer, on_linger, CLOSE_LINGER_MS, 0);
  wsc->close_code = wslay_event_get_status_code_received(wsc->ctx);
  if (wsc->close_code == WSLAY_CODE_NO_STATUS_RCVD || wsc->close_code == 0) {
    wsc->close_code = 1005;
  }
  uv_shutdown_t* req = malloc(sizeof(*req));
  if (req == NULL || net_tls_shutdown(&wsc->tls, req, on_shutdown) != 0) {
    free(req);
    fail(wsc, wsc->status);
    return;
  }
  req->data = wsc;
}


static void on_linger(uv_timer_t* timer) {
  net_wsc_t* wsc = timer->data;
  fail(wsc, wsc->status);
}


static void on_write_done(uv_write_t* req, int status) {
  (void) status; /* a failed write shows up as a read error too */
  free(req);
}


static ssize_t on_wslay_send(wslay_event_context_ptr ctx,
                             const uint8_t* data,
                             size_t len,
                             int flags,
                             void* user_data) {
  (void) flags;
  net_wsc_t* wsc = user_data;
  /* Client output is tiny (pongs, pings, close): copy it into the write
   * request's own allocation. */
  uv_write_t* req = malloc(sizeof(*req) + len);
  if (req == NULL) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  memcpy(req + 1, data, len);
  uv_buf_t buf = uv_buf_init((char*) (req + 1), (unsigned) len);
  if (net_tls_write(&wsc->tls, req, &buf, 1, on_write_done) != 0) {
    free(req);
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t) len;
}


static ssize_t on_wslay_recv(wslay_event_context_ptr ctx,
                             uint8_t* buf,
                             size_t len,
                             int flags,
                             void* user_data) {
  (void) flags;
  net_wsc_t* wsc = user_data;
  if (wsc->rx_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < wsc->rx_len ? len : wsc->rx_len;
  memcpy(buf, wsc->rx, n);
  wsc->rx += n;
  wsc->rx_len -= n;
  return (ssize_t) n;
}


static int on_wslay_genmask(wslay_event_context_ptr ctx,
                            uint8_t* buf,
                            size_t len,
                            void* user_data) {
  (void) user_data;
  if (RAND_bytes(buf, (int) len) != 1) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}


static void on_wslay_frame_start(
    wslay_event_context_ptr ctx,
    const struct wslay_event_on_frame_recv_start_arg* arg,
    void* user_data) {
  (void) ctx;
  net_wsc_t* wsc = user_data;
  net_ws_rx_frame_start(&wsc->msg, arg->opcode, arg->payload_length);
}


static void on_wslay_chunk(
    wslay_event_context_ptr ctx,
    const struct wslay_event_on_frame_recv_chunk_arg* arg,
    void* user_data) {
  (void) ctx;
  net_wsc_t* wsc = user_data;
  net_ws_rx_chunk(&wsc->msg, arg->data, arg->data_length);
}


/* A whole message: wslay has checked it (UTF-8 included) but, with no
 * buffering, holds none of its data; ws_rx has it, or knows it skipped it. */
static void on_wslay_msg(wslay_event_context_ptr ctx,
                         const struct wslay_event_on_msg_recv_arg* arg,
                         void* user_data) {
  (void) ctx;
  net_wsc_t* wsc = user_data;
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) {
    return;
  }
  net_ws_rx_t* m = &wsc->msg;
  if (!wsc->is_closing && !wsc->is_shutting_down) {
    if (m->skip_status != 0) {
      wsc->on_skip(wsc, m->skip_status, arg->opcode, m->head, m->head_len,
                   m->total);
    } else {
      wsc->on_msg(wsc, arg->opcode, m->buf, m->len);
    }
  }
  net_ws_rx_reset(m);
}


/* Lets wslay write, then looks at where the close handshake stands. */
static void pump(net_wsc_t* wsc) {
  if (wsc->is_closing || wsc->ctx == NULL) {
    return;
  }
  if (wslay_event_want_write(wsc->ctx)) {
    int rv = wslay_event_send(wsc->ctx);
    if (rv != 0 && rv != WSLAY_ERR_WOULDBLOCK) {
      fail(wsc, rv == WSLAY_ERR_NOMEM ? UV_ENOMEM : UV_EPIPE);
      return;
    }
  }
  if (!wslay_event_get_close_sent(wsc->ctx)) {
    return;
  }
  uint16_t sent = wslay_event_get_status_code_sent(wsc->ctx);
  if (wslay_event_get_close_received(wsc->ctx) || sent != 1000) {
    finish_close(wsc);
  }
}


static void feed_ws(net_wsc_t* wsc, const uint8_t* bytes, size_t len) {
  wsc->rx = bytes;
  wsc->rx_len = len;
  wsc->in_recv = true;
  int rv = wslay_event_recv(wsc->ctx);
  wsc->in_recv = false;
  wsc->rx_len = 0;
  if (rv != 0) {
    /* A frame wslay refused (masked server frame, bad opcode, ...). */
    fail(wsc, rv == WSLAY_ERR_NOMEM ? UV_ENOMEM : UV_EPROTO);
    return;
  }
  pump(wsc);
}


static void on_keepalive(uv_timer_t* timer) {
  net_wsc_t* wsc = timer->data;
  if (wsc->got_input) {
    wsc->got_input = false;
    wsc->is_ping_out = false;
    return;
  }
  if (wsc->is_ping_out) {
    fail(wsc, UV_ETIMEDOUT);
    return;
  }
  struct wslay_event_msg ping = {
      .opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
  if (wslay_event_queue_msg(wsc->ctx, &ping) == 0) {
    wsc->is_ping_out = true;
    pump(wsc);
  }
}


static int open_ws(net_wsc_t* wsc) {
  static const struct wslay_event_callbacks callbacks = {
      .recv_callback = on_wslay_recv,
      .send_callback = on_wslay_send,
      .genmask_callback = on_wslay_genmask,
      .on_frame_recv_start_callback = on_wslay_frame_start,
      .on_frame_recv_chunk_callback = on_wslay_chunk,
      .on_msg_recv_callback = on_wslay_msg,
  };
  if (wslay_event_context_client_init(&wsc->ctx, &callbacks, wsc) != 0) {
    wsc->ctx = NULL;
    return UV_ENOMEM;
  }
  /* wslay's buffering would refuse a message over the limit by closing
   * (1009): the server would then send it again after every reconnect.
   * Unbuffered, wslay checks each frame's length against its maximum
   * (control frames stay buffered and capped at 125 bytes by RFC 6455), so
   * that maximum is lifted and ws_rx applies ours to whole messages. */
  wslay_event_config_set_no_buffering(wsc->ctx, 1);
  wslay_event_config_set_max_recv_msg_length(wsc->ctx, UINT64_MAX);
  wsc->is_open = true;
  uv_timer_stop(&wsc->timer);
  if (wsc->keepalive_ms > 0) {
    uv_timer_start(&wsc->timer, on_keepalive, wsc->keepalive_ms,
                   wsc->keepalive_ms);
  }
  return 0;
}


/* Checks the server's 101 answer (RFC 6455 4.1: Upgrade, Connection and
 * the accept value must all match). */
static bool handshake_ok(const net_wsc_t* wsc) {
  const net_http_reader_t* r = &wsc->http;
  const char* upgrade = net_http_header(r, "Upgrade");
  const char* connection = net_http_header(r, "Connection");
  const char* accept = net_http_header(r, "Sec-WebSocket-Accept");
  return net_http_status(r) == 101 && upgrade != NULL &&
         strcasecmp(upgrade, "websocket") == 0 && connection != NULL &&
         net_http_token_list_has(connection, "upgrade") && accept != NULL &&
         strcmp(accept, wsc->accept) == 0 &&
         net_http_header(r, "Sec-WebSocket-Extensions") == NULL;
}


static void feed_handshake(net_wsc_t* wsc, const uint8_t* bytes, size_t len) {
  size_t n = net_http_reader_feed(&wsc->http, bytes, len);
  if (wsc->http.error != NET_HTTP_OK) {
    fail(wsc, UV_EPROTO);
    return;
  }
  if (!wsc->http.is_complete) {
    return;
  }
  wsc->http_status = net_http_status(&wsc->http);
  if (wsc->http_status != 101) {
    if (wsc->http.body != NULL) {
      wsc->http_body = strdup((const char*) wsc->http.body);
    }
    fail(wsc, NET_WSC_E_HTTP);
    return;
  }
  if (!handshake_ok(wsc)) {
    fail(wsc, UV_EPROTO);
    return;
  }
  int err = open_ws(wsc);
  if (err != 0) {
    fail(wsc, err);
    return;
  }
  wsc->on_open(wsc);
  if (!wsc->is_closing && n < len) {
    feed_ws(wsc, bytes + n, len - n);
  }
}


static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  (void) handle;
  /* Large reads keep the number of wslay rounds per big preview low. */
  size_t len = suggested < 65536 ? 65536 : suggested;
  buf->base = malloc(len);
  buf->len = buf->base != NULL ? len : 0;
}


static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  net_wsc_t* wsc = stream->data;
  if (nread < 0) {
    free(buf->base);
    if (wsc->is_shutting_down) {
      fail(wsc, wsc->status);
    } else {
      fail(wsc, nread == UV_EOF ? UV_EOF : (int) nread);
    }
    return;
  }
  if (wsc->is_closing || nread == 0) {
    free(buf->base);
    return;
  }
  wsc->got_input = true;
  wsc->rx_bytes += (uint64_t) nread;
  if (wsc->is_open) {
    feed_ws(wsc, (const uint8_t*) buf->base, (size_t) nread);
  } else {
    feed_handshake(wsc, (const uint8_t*) buf->base, (size_t) nread);
  }
  free(buf->base);
}


static void on_handshake_written(uv_write_t* req, int status) {
  net_wsc_t* wsc = req->data;
  free(req);
  free(wsc->handshake);
  wsc->handshake = NULL;
  if (status != 0) {
    fail(wsc, status);
  }
}


/* Connected, and for wss the TLS handshake done: the opening handshake. */
static void on_ready(net_tls_t* t, int status) {
  net_wsc_t* wsc = t->tcp.data;
  if (wsc->is_closing) {
    return;
  }
  if (status != 0) {
    fail(wsc, status);
    return;
  }
  uv_write_t* req = malloc(sizeof(*req));
  int err = UV_ENOMEM;
  if (req != NULL) {
    req->data = wsc;
    uv_buf_t buf = uv_buf_init(wsc->handshake, (unsigned) wsc->handshake_len);
    err = net_tls_write(&wsc->tls, req, &buf, 1, on_handshake_written);
    if (err != 0) {
      free(req);
    }
  }
  if (err == 0) {
    err = net_tls_read_start(&wsc->tls, on_alloc, on_read);
  }
  if (err != 0) {
    fail(wsc, err);
  }
}


static void on_connected(net_dial_t* d, int status) {
  net_wsc_t* wsc = d->data;
  wsc->is_dialing = false;
  if (wsc->is_closing) {
    maybe_done(wsc);
    return;
  }
  if (status != 0) {
    fail(wsc, status);
    return;
  }
  int err = net_tls_handshake(&wsc->tls, on_ready);
  if (err != 0) {
    fail(wsc, err);
  }
}


static void on_connect_timeout(uv_timer_t* timer) {
  net_wsc_t* wsc = timer->data;
  fail(wsc,
       net_tls_is_handshaking(&wsc->tls) ? NET_TLS_E_TIMEOUT : UV_ETIMEDOUT);
}


static int build_handshake(net_wsc_t* wsc, const net_wsc_opts_t* o) {
  uint8_t nonce[16];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) {
    return UV_EIO;
  }
  char key[NET_WS_KEY_LEN + 1];
  core_base64_encode(nonce, sizeof(nonce), key);
  net_ws_accept_for_key(key, wsc->accept);
  const char* headers = o->headers != NULL ? o->headers : "";
  size_t cap = strlen(o->target) + strlen(o->host) + strlen(headers) + 256;
  wsc->handshake = malloc(cap);
  if (wsc->handshake == NULL) {
    return UV_ENOMEM;
  }
  int n = snprintf(wsc->handshake, cap,
                   "GET %s HTTP/1.1\r\nHost: %s:%u\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "User-Agent: libcryomamba/" CM_VERSION "\r\n%s\r\n",
                   o->target, o->host, o->port, key, headers);
  wsc->handshake_len = (size_t) n;
  return 0;
}


int net_wsc_start(net_wsc_t* wsc,
                  uv_loop_t* loop,
                  const net_wsc_opts_t* opts,
                  net_wsc_open_cb on_open,
                  net_wsc_msg_cb on_msg,
                  net_wsc_skip_cb on_skip,
                  net_wsc_close_cb on_close,
                  void* data) {
  memset(wsc, 0, sizeof(*wsc));
  wsc->keepalive_ms = opts->keepalive_ms;
  net_ws_rx_init(&wsc->msg, opts->max_msg_len);
  wsc->on_open = on_open;
  wsc->on_msg = on_msg;
  wsc->on_skip = on_skip;
  wsc->on_close = on_close;
  wsc->data = data;
  net_http_reader_init(&wsc->http, HTTP_RESPONSE, HANDSHAKE_MAX_HEADER_BYTES,
                       HANDSHAKE_MAX_BODY_BYTES, NULL, wsc);
  int err = build_handshake(wsc, opts);
  if (err == 0) {
    err = net_tls_init(&wsc->tls, loop, opts->tls_ctx, opts->host);
  }
  if (err != 0) {
    free(wsc->handshake);
    net_http_reader_free(&wsc->http);
    return err;
  }
  uv_timer_init(loop, &wsc->timer);
  wsc->tls.tcp.data = wsc;
  wsc->timer.data = wsc;
  wsc->open_handles = 2;
  err = net_dial_start(&wsc->dial, &wsc->tls.tcp, opts->host, opts->port,
                       on_connected, wsc);
  wsc->is_dialing = err == 0;
  if (err != 0) {
    fail(wsc, err);
    return 0;
  }
  if (opts->connect_timeout_ms > 0) {
    uv_timer_start(&wsc->timer, on_connect_timeout, opts->connect_timeout_ms,
                   0);
  }
  return 0;
}


int net_wsc_send_text(net_wsc_t* wsc, const char* text, size_t len) {
  if (!wsc->is_open || wsc->is_closing || wsc->is_shutting_down) {
    return UV_ENOTCONN;
  }
  struct wslay_event_msg msg = {.opcode = WSLAY_TEXT_FRAME,
                                .msg = (const uint8_t*) text,
                                .msg_length = len};
  int rv = wslay_event_queue_msg(wsc->ctx, &msg);
  if (rv != 0) {
    return rv == WSLAY_ERR_NOMEM ? UV_ENOMEM : UV_ENOTCONN;
  }
  if (!wsc->in_recv) {
    pump(wsc);
  }
  return 0;
}


void net_wsc_close(net_wsc_t* wsc, uint16_t code) {
  if (wsc->is_closing || wsc->is_shutting_down) {
    return;
  }
  if (!wsc->is_open || wslay_event_get_close_sent(wsc->ctx)) {
    fail(wsc, wsc->is_open ? 0 : UV_ECANCELED);
    return;
  }
  if (wslay_event_queue_close(wsc->ctx, code, NULL, 0) != 0) {
    fail(wsc, 0);
    return;
  }
  uv_timer_stop(&wsc->timer);
  uv_timer_start(&wsc->timer, on_linger, CLOSE_LINGER_MS, 0);
  if (!wsc->in_recv) {
    pump(wsc);
  }
}


void net_wsc_abort(net_wsc_t* wsc) {
  fail(wsc, UV_ECANCELED);
}
