/* http_conn.c: the HTTP/1.1 protocol of a connection. See http_conn.h.
 * Loop thread only. The reader and the held input are owned by the
 * connection's http_state_t, freed with the connection (or at the upgrade,
 * when ws_conn.c takes over). */
#include "server/http_conn.h"

#include <stdlib.h>
#include <string.h>

#include "server/commands.h"
#include "server/proxy.h"
#include "server/ws_conn.h"

/* Pipelined input held while a request is answered asynchronously; past
 * this the connection simply stops being read until the answer is out. */
#define BACKLOG_MAX (64 * 1024)

typedef struct {
  net_http_reader_t reader;
  uint8_t* backlog; /* input held while answering (malloc'd) */
  size_t backlog_len;
  srv_http_mode_t mode;      /* of the request being answered */
  uint64_t request_start_ms; /* first byte of the current request, or 0 */
  uint64_t headers_done_ms;  /* when its headers completed, or 0 */
  srv_body_sink_t* sink;     /* the current request's streamed body, or NULL */
  bool is_pending;           /* an answer is being prepared elsewhere */
  bool is_body_paused;       /* the sink is writing; input waits for it */
  bool is_upgrade_ready;     /* the request was a WebSocket upgrade */
  bool is_refused;           /* its client is over its connections (proxy.h) */
} http_state_t;

static const srv_proto_t http_proto;
static void state_free(http_state_t* st);


static http_state_t* state_of(srv_conn_t* conn) {
  return conn->proto_data;
}


static srv_http_mode_t mode_of(const srv_conn_t* conn,
                               const net_http_reader_t* r) {
  return (srv_http_mode_t){
      .keep_alive = net_http_should_keep_alive(r) && !conn->ctx->is_stopping,
      .head_only = net_http_method(r) == HTTP_HEAD};
}


/* Headers complete: does a command want the body as a stream? The first
 * callback of every request's headers, so the client behind a trusted
 * proxy is known here, before any command looks at its address. */
static bool want_stream(net_http_reader_t* r) {
  srv_conn_t* conn = r->data;
  http_state_t* st = state_of(conn);
  st->is_refused = srv_proxy_begin_request(conn, r) != 0;
  if (st->is_refused) {
    return false; /* answered by on_headers, next */
  }
  srv_request_t req = {.conn = conn, .http = r, .mode = mode_of(conn, r)};
  st->sink = srv_commands_stream(&req);
  return st->sink != NULL;
}


static int on_chunk(net_http_reader_t* r, const uint8_t* bytes, size_t len) {
  srv_conn_t* conn = r->data;
  http_state_t* st = state_of(conn);
  if (st->sink == NULL) {
    return -1; /* its sink let go (a timed-out body): nothing more is read */
  }
  int rc = st->sink->on_chunk(st->sink, bytes, len);
  if (rc > 0) {
    /* Back-pressure: nothing more is read until the sink's write lands. */
    st->is_body_paused = true;
    srv_conn_want_read(conn, false);
  }
  return rc;
}


/* Headers complete, body not read: Expect: 100-continue is answered (or
 * the request refused before its body is sent for nothing). */
static int on_headers(net_http_reader_t* r) {
  srv_conn_t* conn = r->data;
  http_state_t* st = state_of(conn);
  if (st->is_refused) {
    const srv_http_mode_t mode = {.keep_alive = false};
    srv_log(&conn->ctx->log, SRV_LOG_INFO, "http.too_many_connections",
            SRV_CONN_LOG_PEER(conn), NULL);
    srv_http_reply_error(conn, &mode, 503, "too_many_connections",
                         "too many open connections from your address",
                         "retry later", true, "Retry-After: 1\r\n");
    return -1; /* the connection ends after the answer */
  }
  srv_request_t req = {
      .conn = conn,
      .http = r,
      .mode = {.keep_alive =
                   net_http_should_keep_alive(r) && !conn->ctx->is_stopping,
               .head_only = net_http_method(r) == HTTP_HEAD},
  };
  return srv_commands_on_headers(&req) == SRV_CMD_DONE ? 0 : -1;
}


static int on_message(net_http_reader_t* r) {
  srv_conn_t* conn = r->data;
  http_state_t* st = state_of(conn);
  conn->ctx->metrics.http_requests_total++;
  st->request_start_ms = 0;
  st->headers_done_ms = 0;
  srv_request_t req = {
      .conn = conn, .http = r, .mode = mode_of(conn, r), .sink = st->sink};
  st->sink = NULL; /* back to its command with the complete request */
  srv_cmd_result_t rc = srv_commands_handle(&req);
  st->mode = req.mode;
  switch (rc) {
  case SRV_CMD_DONE:
    return req.mode.keep_alive ? 0 : -1;
  case SRV_CMD_PENDING:
    st->is_pending = true;
    return 1;
  case SRV_CMD_UPGRADE:
    st->is_upgrade_ready = true;
    return 1;
  case SRV_CMD_CLOSE:
    break;
  }
  return -1;
}


static void reply_parse_error(srv_conn_t* conn, int err) {
  const srv_http_mode_t mode = {.keep_alive = false};
  switch (err) {
  case NET_HTTP_E_HEADERS_TOO_LARGE:
    srv_http_reply_error(conn, &mode, 431, "headers_too_large",
                         "the request line and headers are too large", NULL,
                         false, NULL);
    break;
  case NET_HTTP_E_BODY_TOO_LARGE:
    srv_http_reply_error(
        conn, &mode, 413, "payload_too_large", "the request body is too large",
        "see limits.max_body_bytes in /v1/server/info", false, NULL);
    break;
  case NET_HTTP_E_NOMEM:
    srv_http_reply_error(conn, &mode, 503, "overloaded",
                         "the server is out of memory", NULL, true, NULL);
    break;
  default:
    srv_http_reply_error(conn, &mode, 400, "bad_request",
                         "the request is not valid HTTP/1.1", NULL, false,
                         NULL);
    break;
  }
  srv_conn_end(conn);
}


/* Between requests a trusted proxy's connection is no client's (proxy.h):
 * nothing is being parsed, answered, streamed or upgraded. */
static void end_request_if_idle(srv_conn_t* conn) {
  http_state_t* st = state_of(conn);
  if (!st->reader.in_message && !st->is_pending && !st->is_body_paused &&
      !st->is_upgrade_ready && conn->stream == NULL && !conn->is_closing) {
    srv_proxy_end_request(conn);
  }
}


static void hold(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  http_state_t* st = state_of(conn);
  if (len == 0) {
    return;
  }
  uint8_t* grown = realloc(st->backlog, st->backlog_len + len);
  if (grown == NULL) {
    srv_conn_close(conn);
    return;
  }
  memcpy(grown + st->backlog_len, bytes, len);
  st->backlog = grown;
  st->backlog_len += len;
  if (st->backlog_len >= BACKLOG_MAX) {
    srv_conn_want_read(conn, false);
  }
}


static void process(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  http_state_t* st = state_of(conn);
  net_http_reader_t* r = &st->reader;
  if (st->is_pending || st->is_body_paused || st->backlog_len > 0) {
    hold(conn, bytes, len);
    return;
  }
  size_t used = net_http_reader_feed(r, bytes, len);
  if (conn->is_closing || conn->is_shutting_down) {
    return;
  }
  uint64_t now = uv_now(conn->ctx->loop);
  if (r->in_message && st->request_start_ms == 0) {
    st->request_start_ms = now;
  }
  if (r->in_message && r->headers_done && st->headers_done_ms == 0) {
    st->headers_done_ms = now;
  }
  if (r->error == NET_HTTP_E_STOPPED) {
    srv_conn_end(conn);
    return;
  }
  if (r->error != NET_HTTP_OK) {
    reply_parse_error(conn, r->error);
    return;
  }
  if (st->is_upgrade_ready) {
    /* ws_conn.c takes the connection over (or refuses the handshake with
     * an HTTP error); once it has, this state is no longer needed. */
    srv_ws_upgrade(conn, r, bytes + used, len - used);
    if (conn->proto != &http_proto) {
      state_free(st);
    }
    return;
  }
  if (st->is_body_paused) {
    hold(conn, bytes + used, len - used); /* at most one read's worth */
  } else if (st->is_pending) {
    srv_conn_want_read(conn, st->backlog_len < BACKLOG_MAX);
    hold(conn, bytes + used, len - used);
  } else {
    end_request_if_idle(conn);
  }
}


static void on_read(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  process(conn, bytes, len);
}


static void on_resume(srv_conn_t* conn) {
  http_state_t* st = state_of(conn);
  if (!st->is_pending && !st->is_body_paused) {
    return;
  }
  if (st->is_body_paused) {
    st->is_body_paused = false; /* the sink's write landed: read on */
  } else {
    st->is_pending = false;
    if (!st->mode.keep_alive) {
      srv_conn_end(conn);
      return;
    }
  }
  net_http_reader_resume(&st->reader);
  uint8_t* held = st->backlog;
  size_t held_len = st->backlog_len;
  st->backlog = NULL;
  st->backlog_len = 0;
  srv_conn_want_read(conn, true);
  if (held_len > 0) {
    process(conn, held, held_len);
  } else {
    end_request_if_idle(conn);
  }
  free(held);
}


/* Total deadlines, not idle timers: a peer trickling bytes does not
 * extend them. */
static void on_sweep(srv_conn_t* conn, uint64_t now) {
  http_state_t* st = state_of(conn);
  const srv_config_t* c = &conn->ctx->cfg;
  const net_http_reader_t* r = &st->reader;
  const char* what = NULL;
  if (!srv_conn_is_idle(conn)) {
    if (now - conn->wq.progress_ms >
        (uint64_t) (c->http_write_timeout_s * 1e3)) {
      srv_log(&conn->ctx->log, SRV_LOG_INFO, "http.write_timeout",
              SRV_CONN_LOG_PEER(conn), NULL);
      srv_conn_close(conn); /* it does not read: it cannot hear a 408 */
    }
    return;
  }
  if (st->is_pending || st->is_body_paused) {
    return;
  }
  end_request_if_idle(conn); /* e.g. a download's last bytes went out */
  /* A streamed body (an upload) may take hours: its deadline is a silence
   * of --http-body-timeout, not a total. */
  uint64_t body_since =
      st->sink != NULL ? conn->last_rx_ms : st->headers_done_ms;
  if (r->in_message && !r->headers_done && st->request_start_ms != 0 &&
      now - st->request_start_ms >
          (uint64_t) (c->http_header_timeout_s * 1e3)) {
    what = "the request headers took too long";
  } else if (r->in_message && r->headers_done && body_since != 0 &&
             now - body_since > (uint64_t) (c->http_body_timeout_s * 1e3)) {
    what = "the request body took too long";
  } else if (!r->in_message && now - conn->last_rx_ms >
                                   (uint64_t) (c->http_idle_timeout_s * 1e3)) {
    srv_conn_close(conn); /* idle keep-alive connection */
    return;
  }
  if (what != NULL) {
    const srv_http_mode_t mode = {.keep_alive = false};
    srv_log(&conn->ctx->log, SRV_LOG_INFO, "http.request_timeout", "s:why",
            what, SRV_CONN_LOG_PEER(conn), NULL);
    if (st->sink != NULL) {
      /* The body is over for its sink now (an upload keeps what came);
       * bytes read while the connection lingers are not its. */
      srv_body_sink_t* sink = st->sink;
      st->sink = NULL;
      sink->on_abort(sink);
    }
    srv_http_reply_error(conn, &mode, 408, "request_timeout", what,
                         "send the whole request promptly", true, NULL);
    srv_conn_end(conn);
  }
}


static void on_shutdown(srv_conn_t* conn) {
  if (srv_conn_is_idle(conn) && conn->stream == NULL) {
    srv_conn_close(conn);
  } else {
    srv_conn_end(conn);
  }
}


static void state_free(http_state_t* st) {
  net_http_reader_free(&st->reader);
  free(st->backlog);
  free(st);
}


static void on_close(srv_conn_t* conn) {
  http_state_t* st = state_of(conn);
  if (st->sink != NULL) {
    srv_body_sink_t* sink = st->sink;
    st->sink = NULL;
    sink->on_abort(sink);
  }
}


static void on_free(srv_conn_t* conn) {
  state_free(state_of(conn));
}


static const srv_proto_t http_proto = {
    .on_read = on_read,
    .on_resume = on_resume,
    .on_sweep = on_sweep,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .on_free = on_free,
    .name = "http",
};


void srv_http_conn_accept(srv_conn_t* conn, const char* refusal) {
  srv_ctx_t* ctx = conn->ctx;
  http_state_t* st = calloc(1, sizeof(*st));
  if (st == NULL) {
    srv_conn_close(conn);
    return;
  }
  net_http_reader_init(&st->reader, HTTP_REQUEST, ctx->cfg.max_header_bytes,
                       ctx->cfg.max_body_bytes, on_message, conn);
  net_http_reader_set_streaming(&st->reader, want_stream, on_chunk);
  net_http_reader_set_on_headers(&st->reader, on_headers);
  srv_conn_set_proto(conn, &http_proto, st);
  if (refusal != NULL) {
    const srv_http_mode_t mode = {.keep_alive = false};
    srv_http_reply_error(
        conn, &mode, 503,
        ctx->is_stopping ? "shutting_down" : "too_many_connections", refusal,
        "retry later", true, "Retry-After: 1\r\n");
    srv_conn_end(conn);
    return;
  }
  srv_conn_want_read(conn, true);
}
