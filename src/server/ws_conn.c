/* ws_conn.c: WebSocket connections: the upgrade, back-pressure, client
 * messages, keepalive and teardown; the subscription is ws_sub.c (their
 * shared state is ws_conn_int.h). See ws_conn.h and docs/protocol.md.
 * Loop thread only. The ws_state_t (wslay session, sink, waiter, a job
 * reference) belongs to the connection and is freed with it. */
#include "server/ws_conn.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "net/ws_handshake.h"
#include "net/ws_session.h"
#include "server/cluster.h"
#include "server/http_reply.h"
#include "server/jobs.h"
#include "server/ws_chunks.h"
#include "server/ws_conn_int.h"
#include "server/ws_query.h"


static const srv_proto_t ws_proto;


static ws_state_t* state_of(srv_conn_t* conn) {
  return conn->proto_data;
}


/* Re-evaluates the flow after input was fed or the queue drained. */
void srv_ws_update_flow(ws_state_t* st) {
  srv_conn_t* conn = st->conn;
  for (;;) {
    if (conn->is_closing) {
      return;
    }
    if (st->ws.is_closing) {
      st->flow = WS_CLOSING;
      srv_conn_end(conn);
      return;
    }
    if (!st->ws.is_paused && !net_wq_is_full(&conn->wq)) {
      st->flow = WS_READING;
      srv_conn_want_read(conn, true);
      return;
    }
    st->flow = WS_DRAINING;
    srv_conn_want_read(conn, false);
    if (!srv_conn_wait_drain(conn)) {
      return; /* on_drain comes back here */
    }
    /* Already drained: let wslay write what it held back, then look again. */
    if (net_ws_resume(&st->ws) != 0) {
      srv_conn_close(conn);
      return;
    }
  }
}


void srv_ws_close_with(ws_state_t* st, uint16_t code, const char* reason) {
  net_ws_close(&st->ws, code, reason);
  srv_ws_update_flow(st);
}


static void on_drain(srv_conn_t* conn) {
  ws_state_t* st = state_of(conn);
  if (st->query.is_chunks && st->job != NULL) {
    srv_chunk_sub_pump(&st->chunks);
  }
  if (st->flow != WS_DRAINING) {
    return;
  }
  if (net_ws_resume(&st->ws) != 0) {
    srv_conn_close(conn);
    return;
  }
  srv_ws_update_flow(st);
}


static void on_read(srv_conn_t* conn, const uint8_t* bytes, size_t len) {
  ws_state_t* st = state_of(conn);
  st->ping_sent_ms = 0;
  if (net_ws_feed(&st->ws, bytes, len) != 0) {
    srv_conn_close(conn);
    return;
  }
  srv_ws_update_flow(st);
}


/* A connection-local message (seq 0): connected, pong, errors. */
void srv_ws_send_local(ws_state_t* st, const char* type, json_t* data) {
  const char* job_id = st->job != NULL ? st->job->id : "";
  size_t len = 0;
  char* text = core_msg_encode(type, job_id, 0, srv_now_us(), data, &len);
  net_frame_t* f = text != NULL ? net_frame_ws_text(text, len) : NULL;
  free(text);
  if (f == NULL) {
    srv_conn_close(st->conn);
    return;
  }
  srv_conn_send(st->conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


static void send_error(ws_state_t* st,
                       const char* code,
                       const char* message,
                       const char* hint) {
  srv_ws_send_local(st, "error",
                    json_pack("{s:s, s:s, s:s, s:b}", "code", code, "message",
                              message, "hint", hint, "retryable", 0));
}


/* A chunks subscriber's view (docs/protocol.md §11.2). */
static void on_view(ws_state_t* st, const uint8_t* data, size_t len) {
  if (!st->query.is_chunks || st->job == NULL) {
    send_error(st, "bad_message", "a view needs the chunks encoding",
               "subscribe with ?encoding=chunks");
    return;
  }
  core_view_t v;
  char why[160];
  if (core_view_parse((const char*) data, len, &st->job->shape, &v, why,
                      sizeof(why)) != 0) {
    send_error(st, "bad_message", why,
               "{\"type\":\"view\",\"z\":0,\"y\":null,\"x\":null,"
               "\"zoom\":1}");
    return;
  }
  if (srv_chunk_sub_view(&st->chunks, &v) != 0) {
    srv_ws_close_with(st, 1011, "out of memory");
  }
}


static void on_client_message(net_ws_t* ws,
                              uint8_t opcode,
                              const uint8_t* data,
                              size_t len) {
  ws_state_t* st = ws->data;
  if (opcode != NET_WS_OP_TEXT) {
    send_error(st, "bad_message", "binary messages are not accepted",
               "send {\"type\":\"ping\"} as text");
    return;
  }
  switch (core_msg_parse_client((const char*) data, len)) {
  case CORE_CLIENT_MSG_PING:
    srv_ws_send_local(st, "pong", json_object());
    return;
  case CORE_CLIENT_MSG_VIEW:
    on_view(st, data, len);
    return;
  case CORE_CLIENT_MSG_UNKNOWN:
    send_error(st, "unknown_message_type",
               "this message type is not understood",
               "the only client message is {\"type\":\"ping\"}");
    return;
  case CORE_CLIENT_MSG_INVALID:
    send_error(st, "bad_message", "client messages must be JSON objects",
               "send {\"type\":\"ping\"}");
    return;
  }
}


/* ---- keepalive, shutdown, teardown ---- */

static void on_sweep(srv_conn_t* conn, uint64_t now) {
  ws_state_t* st = state_of(conn);
  const srv_config_t* c = &conn->ctx->cfg;
  if (st->flow == WS_CLOSING) {
    return;
  }
  if (st->ping_sent_ms != 0) {
    if (now - st->ping_sent_ms > (uint64_t) (c->ws_ping_timeout_s * 1000)) {
      srv_log(&conn->ctx->log, SRV_LOG_INFO, "ws.ping_timeout",
              SRV_CONN_LOG_PEER(conn), NULL);
      srv_ws_close_with(st, 1001, "ping timeout");
    }
  } else if (now - conn->last_rx_ms >
             (uint64_t) (c->ws_ping_interval_s * 1000)) {
    if (net_ws_ping(&st->ws) == 0) {
      st->ping_sent_ms = now;
    }
  }
}


static void on_shutdown(srv_conn_t* conn) {
  srv_ws_close_with(state_of(conn), 1001, "server shutting down");
}


static void on_close(srv_conn_t* conn) {
  ws_state_t* st = state_of(conn);
  conn->ctx->metrics.ws_closes_total++;
  srv_ws_unsubscribe(st);
}


static void on_free(srv_conn_t* conn) {
  ws_state_t* st = state_of(conn);
  net_ws_free(&st->ws);
  free(st);
}


static const srv_proto_t ws_proto = {
    .on_read = on_read,
    .on_drain = on_drain,
    .on_sweep = on_sweep,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .on_free = on_free,
    .name = "ws",
};


/* ---- the upgrade ---- */

static int send_handshake(srv_conn_t* conn,
                          const net_http_reader_t* req,
                          const char* subprotocol) {
  char accept[NET_WS_ACCEPT_LEN + 1];
  net_ws_accept_for_key(net_http_header(req, "Sec-WebSocket-Key"), accept);
  char head[320];
  char proto[64] = "";
  if (subprotocol != NULL) {
    snprintf(proto, sizeof(proto), "Sec-WebSocket-Protocol: %s\r\n",
             subprotocol);
  }
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "%s"
                   "Server: cryomambad/" CM_VERSION "\r\n\r\n",
                   accept, proto);
  net_frame_t* f = net_frame_from_bytes(head, (size_t) n);
  if (f == NULL) {
    srv_conn_close(conn);
    return -1;
  }
  int rc = srv_conn_send(conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
  return rc;
}


/* Checks the handshake; answers an HTTP error and returns -1 when bad. */
static int check_handshake(srv_conn_t* conn,
                           const net_http_reader_t* req,
                           srv_ws_query_t* q) {
  const srv_http_mode_t mode = {.keep_alive = false};
  const char* why = NULL;
  switch (net_ws_handshake_check(req, &why)) {
  case NET_WS_HS_OK:
    break;
  case NET_WS_HS_NOT_UPGRADE:
  case NET_WS_HS_BAD_REQUEST:
    srv_http_reply_error(conn, &mode, 400, "bad_request", why,
                         "see RFC 6455 section 4.1", false, NULL);
    return -1;
  case NET_WS_HS_BAD_VERSION:
    srv_http_reply_error(conn, &mode, 426, "upgrade_required", why, NULL, false,
                         "Sec-WebSocket-Version: 13\r\n");
    return -1;
  }
  if (srv_ws_query_parse(net_http_url(req),
                         net_http_header(req, "Sec-WebSocket-Protocol"), q,
                         &why) != 0) {
    srv_http_reply_error(conn, &mode, 400, "invalid_field", why,
                         "omit encoding for the reference's JSON + base64",
                         false, NULL);
    return -1;
  }
  return 0;
}


/* A gateway's subscriber: its job's mirror is current (or there is none). */
static void on_cluster_ready(srv_cluster_join_t* j,
                             srv_job_t* job,
                             int status) {
  ws_state_t* st = CORE_CONTAINER_OF(j, ws_state_t, cjoin);
  srv_ctx_t* ctx = st->conn->ctx;
  if (st->ws.is_closing || st->conn->is_closing) {
    srv_cluster_leave(j);
    return;
  }
  if (job == NULL) {
    srv_ws_close_with(st, status == -ENOENT ? 4404 : 1011,
                      status == -ENOENT ? "unknown job" : "redis unavailable");
  } else if (job->topic.sink_count >= ctx->cfg.max_subscribers_per_job) {
    srv_cluster_leave(j);
    srv_ws_close_with(st, 4429, "too many subscribers for this job");
  } else {
    srv_log(&ctx->log, SRV_LOG_INFO, "ws.open", "s:job_id", job->id,
            SRV_CONN_LOG_PEER(st->conn), NULL);
    srv_ws_subscribe(st, job);
  }
}


void srv_ws_upgrade(srv_conn_t* conn,
                    const net_http_reader_t* req,
                    const uint8_t* rest,
                    size_t rest_len) {
  srv_ctx_t* ctx = conn->ctx;
  srv_ws_query_t query;
  if (check_handshake(conn, req, &query) != 0) {
    srv_conn_end(conn);
    return;
  }
  /* /ws/jobs/{id}[?query] */
  const char* id = net_http_url(req) + strlen("/ws/jobs/");
  while (*id == '/') {
    id++;
  }
  size_t id_len = strcspn(id, "/?#");
  bool id_ok = core_uuid_is_valid(id, id_len);
  srv_job_t* job = id_ok ? srv_job_find(ctx, id, id_len) : NULL;
  ws_state_t* st = calloc(1, sizeof(*st));
  if (st == NULL) {
    srv_conn_close(conn);
    return;
  }
  if (send_handshake(conn, req, query.subprotocol) != 0) {
    free(st);
    return;
  }
  /* From here on the connection speaks WebSocket. */
  st->conn = conn;
  st->sink.ops = &srv_ws_sink_ops;
  st->query = query;
  st->sink.encoding = query.enc;
  core_list_init(&st->chunks.watch.link);
  core_list_init(&st->sink.link);
  core_list_init(&st->waiter.link);
  core_list_init(&st->cjoin.link);
  core_list_init(&st->cwait.link);
  st->cjoin.ready = on_cluster_ready;
  st->waiter.ready = srv_ws_on_preview_ready;
  net_ws_init(&st->ws, &conn->wq, ctx->cfg.max_ws_message_bytes,
              on_client_message, st);
  srv_conn_set_proto(conn, &ws_proto, st);
  ctx->metrics.ws_upgrades_total++;
  bool gateway = ctx->cfg.role == SRV_ROLE_GATEWAY;
  if (!id_ok) {
    net_ws_close(&st->ws, 4000, "malformed job id");
  } else if (gateway && ctx->is_stopping) {
    net_ws_close(&st->ws, 1001, "server shutting down");
  } else if (gateway) {
    char key[CORE_UUID_STR_LEN + 1];
    memcpy(key, id, CORE_UUID_STR_LEN);
    key[CORE_UUID_STR_LEN] = '\0';
    if (srv_cluster_join(ctx, key, &st->cjoin) != 0) {
      net_ws_close(&st->ws, 1011, "redis unavailable");
    }
  } else if (job == NULL) {
    net_ws_close(&st->ws, 4404, "unknown job");
  } else if (job->topic.sink_count >= ctx->cfg.max_subscribers_per_job) {
    net_ws_close(&st->ws, 4429, "too many subscribers for this job");
  } else if (ctx->is_stopping) {
    net_ws_close(&st->ws, 1001, "server shutting down");
  }
  if (st->ws.is_closing) {
    srv_log(&ctx->log, SRV_LOG_INFO, "ws.rejected", "i:code",
            (int64_t) st->ws.close_code, SRV_CONN_LOG_PEER(conn), NULL);
    srv_ws_update_flow(st);
    return;
  }
  if (!gateway) {
    srv_log(&ctx->log, SRV_LOG_INFO, "ws.open", "s:job_id", job->id,
            SRV_CONN_LOG_PEER(conn), NULL);
    srv_ws_subscribe(st, job);
  }
  if (conn->is_closing) {
    return;
  }
  if (rest_len > 0 && net_ws_feed(&st->ws, rest, rest_len) != 0) {
    srv_conn_close(conn);
    return;
  }
  srv_ws_update_flow(st);
}
