/* conn.c: connection lifecycle. See conn.h. Reads land in the context's one
 * read buffer and are consumed before the callback returns (HTTP bytes are
 * parsed, WebSocket bytes fed to wslay, leftovers copied to a backlog), so
 * no connection owns a read buffer. Loop thread only. */
#include "server/conn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/download.h"
#include "server/http_api.h"
#include "server/ws_api.h"

#define LINGER_MS 2000 /* wait for the peer's FIN after ours */
/* A peer that does not read cannot receive our last bytes; give up on it. */
#define END_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 3000 /* at shutdown, for every connection */

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
static void on_wq(net_wqueue_t* wq, int status);
static int on_http_message(net_http_reader_t* r);


static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  (void) suggested;
  srv_conn_t* conn = handle->data;
  srv_ctx_t* ctx = conn->ctx;
  /* One shared buffer is enough: every read is consumed in on_read. */
  assert(!ctx->is_read_buf_busy);
  ctx->is_read_buf_busy = true;
  *buf = uv_buf_init((char*) ctx->read_buf, sizeof(ctx->read_buf));
}


static void start_reading(srv_conn_t* conn) {
  if (!conn->is_reading && !conn->is_closing) {
    if (uv_read_start((uv_stream_t*) &conn->tcp, on_alloc, on_read) == 0) {
      conn->is_reading = true;
    }
  }
}


static void stop_reading(srv_conn_t* conn) {
  if (conn->is_reading) {
    uv_read_stop((uv_stream_t*) &conn->tcp);
    conn->is_reading = false;
  }
}


static void on_handle_closed(uv_handle_t* handle) {
  srv_conn_t* conn = handle->data;
  if (--conn->open_handles > 0) {
    return;
  }
  net_wq_free_buffers(&conn->wq);
  if (conn->http != NULL) {
    net_http_reader_free(conn->http);
    free(conn->http);
  }
  if (conn->ws != NULL) {
    net_ws_free(conn->ws);
    free(conn->ws);
  }
  free(conn->http_backlog);
  free(conn);
}


void srv_conn_close(srv_conn_t* conn) {
  if (conn->is_closing) {
    return;
  }
  srv_ctx_t* ctx = conn->ctx;
  conn->is_closing = true;
  conn->is_reading = false;
  if (conn->mode == SRV_CONN_WS) {
    ctx->metrics.ws_closes_total++;
    srv_ws_detach(conn);
  }
  core_list_remove(&conn->link);
  ctx->conn_count--;
  if (conn->is_addr_counted) {
    srv_addr_limit_release(&ctx->addr_limit, conn->peer_ip);
  }
  net_wq_close(&conn->wq);
  if (conn->download != NULL) {
    srv_download_detach(conn);
  }
  if (conn->waiting_job != NULL) {
    core_list_remove(&conn->sub_link);
    conn->waiting_job = NULL;
  }
  /* The reader and wslay may be on the stack (we can be called from their
   * callbacks): they are freed in the close callback. */
  srv_log(&ctx->log, SRV_LOG_DEBUG, "conn.close", "s:peer", conn->peer, NULL);
  uv_close((uv_handle_t*) &conn->linger_timer, on_handle_closed);
  uv_close((uv_handle_t*) &conn->tcp, on_handle_closed);
}


static void on_linger_timeout(uv_timer_t* timer) {
  srv_conn_close(timer->data);
}


static void on_shutdown(uv_shutdown_t* req, int status) {
  srv_conn_t* conn = req->data;
  if (conn->is_closing) {
    return;
  }
  if (status < 0) {
    srv_conn_close(conn);
    return;
  }
  /* Our FIN is out; keep reading (and discarding) until the peer's FIN. */
  start_reading(conn);
  uv_timer_start(&conn->linger_timer, on_linger_timeout, LINGER_MS, 0);
  conn->linger_timer_active = true;
}


static void do_shutdown(srv_conn_t* conn) {
  conn->shutdown_req.data = conn;
  if (uv_shutdown(&conn->shutdown_req, (uv_stream_t*) &conn->tcp,
                  on_shutdown) != 0) {
    srv_conn_close(conn);
  }
}


void srv_conn_end(srv_conn_t* conn) {
  if (conn->is_closing || conn->is_shutting_down) {
    return;
  }
  conn->is_shutting_down = true;
  conn->ending_since_ms = uv_now(conn->ctx->loop);
  if (net_wq_drain(&conn->wq)) {
    do_shutdown(conn);
  }
}


void srv_conn_send(srv_conn_t* conn, net_frame_t* frame, net_wq_class_t cls) {
  if (conn->is_closing || conn->is_shutting_down ||
      (conn->ws != NULL && conn->ws->is_closing)) {
    return;
  }
  if (net_wq_push(&conn->wq, frame, cls) != 0) {
    srv_conn_close(conn);
    return;
  }
  if (net_wq_is_full(&conn->wq)) {
    /* The peer is not reading what we send; stop taking its requests. */
    stop_reading(conn);
    net_wq_drain(&conn->wq);
  }
}


static void process_ws(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  if (net_ws_feed(conn->ws, bytes, len) != 0) {
    srv_conn_close(conn);
    return;
  }
  if (conn->is_closing) {
    return;
  }
  if (conn->ws->is_closing) {
    srv_conn_end(conn);
  } else if (conn->ws->is_paused || net_wq_is_full(&conn->wq)) {
    stop_reading(conn);
    if (net_wq_drain(&conn->wq)) {
      on_wq(&conn->wq, 0); /* nothing left to wait for: resume now */
    }
  }
}


static void keep_http_backlog(srv_conn_t* conn,
                              const uint8_t* bytes,
                              size_t len) {
  if (len == 0) {
    return;
  }
  uint8_t* grown = realloc(conn->http_backlog, conn->http_backlog_len + len);
  if (grown == NULL) {
    srv_conn_close(conn);
    return;
  }
  memmove(grown + conn->http_backlog_len, bytes, len);
  conn->http_backlog = grown;
  conn->http_backlog_len += len;
}


static void reply_parse_error(srv_conn_t* conn, int err) {
  conn->close_after_write = true;
  switch (err) {
  case NET_HTTP_E_HEADERS_TOO_LARGE:
    srv_http_reply_error(conn, 431, "headers_too_large",
                         "the request line and headers are too large", NULL,
                         false, NULL);
    break;
  case NET_HTTP_E_BODY_TOO_LARGE:
    srv_http_reply_error(
        conn, 413, "payload_too_large", "the request body is too large",
        "see limits.max_body_bytes in /v1/server/info", false, NULL);
    break;
  case NET_HTTP_E_NOMEM:
    srv_http_reply_error(conn, 503, "overloaded", "the server is out of memory",
                         NULL, true, NULL);
    break;
  default:
    srv_http_reply_error(conn, 400, "bad_request",
                         "the request is not valid HTTP/1.1", NULL, false,
                         NULL);
    break;
  }
  srv_conn_end(conn);
}


static void process_http(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  if (conn->http_backlog_len > 0 || conn->http->is_paused) {
    keep_http_backlog(conn, bytes, len);
    return;
  }
  size_t used = net_http_reader_feed(conn->http, bytes, len);
  if (conn->is_closing || conn->is_shutting_down) {
    return;
  }
  int err = conn->http->error;
  if (err == NET_HTTP_E_STOPPED) {
    srv_conn_end(conn);
    return;
  }
  if (err != NET_HTTP_OK) {
    reply_parse_error(conn, err);
    return;
  }
  if (conn->is_upgrade_pending) {
    conn->is_upgrade_pending = false;
    srv_ws_upgrade(conn, bytes + used, len - used);
    return;
  }
  if (conn->http->is_paused) {
    /* A streamed response: hold what follows until it is done. */
    stop_reading(conn);
    keep_http_backlog(conn, bytes + used, len - used);
  }
}


void srv_conn_resume_http(srv_conn_t* conn) {
  if (conn->is_closing || conn->http == NULL) {
    return;
  }
  net_http_reader_resume(conn->http);
  uint8_t* held = conn->http_backlog;
  size_t held_len = conn->http_backlog_len;
  conn->http_backlog = NULL;
  conn->http_backlog_len = 0;
  if (held_len > 0) {
    process_http(conn, held, held_len);
  }
  free(held);
  if (!conn->is_closing && !conn->is_shutting_down &&
      (conn->http == NULL || !conn->http->is_paused)) {
    start_reading(conn);
  }
}


static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  (void) buf;
  srv_conn_t* conn = stream->data;
  srv_ctx_t* ctx = conn->ctx;
  ctx->is_read_buf_busy = false;
  if (nread == 0) {
    return;
  }
  if (nread < 0) {
    /* EOF or reset: nothing more can be delivered either way. */
    srv_conn_close(conn);
    return;
  }
  conn->last_rx_ms = uv_now(ctx->loop);
  conn->ping_sent_ms = 0;
  if (conn->is_shutting_down && (conn->mode == SRV_CONN_HTTP ||
                                 conn->ws == NULL || conn->ws->is_closing)) {
    return; /* after our close/last response: discard until the FIN */
  }
  const uint8_t* bytes = ctx->read_buf;
  if (conn->mode == SRV_CONN_WS) {
    process_ws(conn, bytes, (size_t) nread);
  } else {
    process_http(conn, bytes, (size_t) nread);
  }
}


static void on_wq(net_wqueue_t* wq, int status) {
  srv_conn_t* conn = wq->data;
  if (conn->is_closing) {
    return;
  }
  if (status < 0) {
    srv_conn_close(conn);
    return;
  }
  /* Everything queued was written. */
  if (conn->is_shutting_down) {
    do_shutdown(conn);
    return;
  }
  if (conn->download != NULL) {
    srv_download_on_drain(conn);
    return;
  }
  if (conn->mode == SRV_CONN_WS && conn->ws != NULL) {
    /* Resuming may pause again (wslay's replies fill the control buffer
     * once more): then wait for the next drain, or the peer stalls. */
    for (;;) {
      if (net_ws_resume(conn->ws) != 0) {
        srv_conn_close(conn);
        return;
      }
      if (conn->ws->is_closing) {
        srv_conn_end(conn);
        return;
      }
      if (!conn->ws->is_paused && !net_wq_is_full(&conn->wq)) {
        start_reading(conn);
        return;
      }
      if (!net_wq_drain(&conn->wq)) {
        return; /* on_wq runs again once this is written */
      }
    }
  }
  if (conn->mode == SRV_CONN_HTTP && conn->http != NULL &&
      !conn->http->is_paused) {
    start_reading(conn);
  }
}


static int on_http_message(net_http_reader_t* r) {
  srv_conn_t* conn = r->data;
  conn->ctx->metrics.http_requests_total++;
  int rc = srv_http_handle(conn);
  if (rc == 0 && conn->close_after_write) {
    return -1; /* Connection: close (or an error): no further requests */
  }
  return rc;
}


static void describe_peer(srv_conn_t* conn) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  snprintf(conn->peer, sizeof(conn->peer), "?");
  if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr*) &addr, &len) != 0) {
    return;
  }
  int port = 0;
  if (addr.ss_family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*) &addr;
    uv_ip4_name(a, conn->peer_ip, sizeof(conn->peer_ip));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*) &addr;
    uv_ip6_name(a, conn->peer_ip, sizeof(conn->peer_ip));
    port = ntohs(a->sin6_port);
  }
  snprintf(conn->peer, sizeof(conn->peer), "%s:%d", conn->peer_ip, port);
}


void srv_conn_on_connection(uv_stream_t* listener, int status) {
  srv_ctx_t* ctx = listener->data;
  if (status < 0) {
    srv_log(&ctx->log, SRV_LOG_WARN, "conn.accept_failed", "s:error",
            uv_strerror(status), NULL);
    return;
  }
  srv_conn_t* conn = calloc(1, sizeof(*conn));
  net_http_reader_t* http = malloc(sizeof(*http));
  if (conn == NULL || http == NULL) {
    free(conn);
    free(http);
    /* Accept and drop, or the listener keeps reporting the same peer. */
    uv_tcp_t tmp;
    uv_tcp_init(ctx->loop, &tmp);
    uv_accept(listener, (uv_stream_t*) &tmp);
    uv_close((uv_handle_t*) &tmp, NULL);
    return;
  }
  conn->ctx = ctx;
  uv_tcp_init(ctx->loop, &conn->tcp);
  uv_timer_init(ctx->loop, &conn->linger_timer);
  conn->tcp.data = conn;
  conn->linger_timer.data = conn;
  conn->open_handles = 2;
  core_list_init(&conn->link);
  core_list_init(&conn->sub_link);
  core_list_push_back(&ctx->conns, &conn->link);
  ctx->conn_count++;
  ctx->metrics.connections_total++;
  conn->mode = SRV_CONN_HTTP;
  conn->http = http;
  net_http_reader_init(http, HTTP_REQUEST, ctx->cfg.max_header_bytes,
                       ctx->cfg.max_body_bytes, on_http_message, conn);
  net_wq_init(&conn->wq, (uv_stream_t*) &conn->tcp, on_wq, conn);
  conn->last_rx_ms = uv_now(ctx->loop);
  if (uv_accept(listener, (uv_stream_t*) &conn->tcp) != 0) {
    srv_conn_close(conn);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  describe_peer(conn);
  const char* refusal = NULL;
  if (ctx->is_stopping) {
    refusal = "the server is shutting down";
  } else if (ctx->conn_count > ctx->cfg.max_connections) {
    refusal = "the server has too many open connections";
  } else if (!srv_addr_limit_acquire(&ctx->addr_limit, conn->peer_ip,
                                     ctx->cfg.max_connections_per_ip)) {
    refusal = "too many open connections from your address";
  } else {
    conn->is_addr_counted = ctx->cfg.max_connections_per_ip > 0;
  }
  if (refusal != NULL) {
    conn->close_after_write = true;
    srv_http_reply_error(
        conn, 503, ctx->is_stopping ? "shutting_down" : "too_many_connections",
        refusal, "retry later", true, "Retry-After: 1\r\n");
    srv_conn_end(conn);
    return;
  }
  start_reading(conn);
}


void srv_conns_sweep(srv_ctx_t* ctx) {
  uint64_t now = uv_now(ctx->loop);
  uint64_t ping_interval_ms = (uint64_t) (ctx->cfg.ws_ping_interval_s * 1000);
  uint64_t ping_timeout_ms = (uint64_t) (ctx->cfg.ws_ping_timeout_s * 1000);
  uint64_t idle_ms = (uint64_t) (ctx->cfg.http_idle_timeout_s * 1000);
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, link);
    if (conn->is_shutting_down) {
      uint64_t limit = ctx->is_stopping ? STOP_TIMEOUT_MS : END_TIMEOUT_MS;
      if (now - conn->ending_since_ms > limit) {
        srv_conn_close(conn); /* its last bytes never left: a stalled peer */
      }
      continue;
    }
    if (conn->mode == SRV_CONN_HTTP) {
      if (conn->download == NULL && !conn->wq.is_writing &&
          now - conn->last_rx_ms > idle_ms) {
        srv_conn_close(conn);
      }
      continue;
    }
    if (conn->ping_sent_ms != 0) {
      if (now - conn->ping_sent_ms > ping_timeout_ms) {
        srv_log(&ctx->log, SRV_LOG_INFO, "ws.ping_timeout", "s:peer",
                conn->peer, NULL);
        net_ws_close(conn->ws, 1001, "ping timeout");
        srv_conn_end(conn);
      }
    } else if (now - conn->last_rx_ms > ping_interval_ms) {
      if (net_ws_ping(conn->ws) == 0) {
        conn->ping_sent_ms = now;
      }
    }
  }
}


void srv_conns_shutdown(srv_ctx_t* ctx) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, link);
    if (conn->mode == SRV_CONN_WS && conn->ws != NULL) {
      net_ws_close(conn->ws, 1001, "server shutting down");
      srv_conn_end(conn);
    } else if (conn->wq.is_writing || conn->download != NULL) {
      srv_conn_end(conn);
    } else {
      srv_conn_close(conn);
    }
  }
}
