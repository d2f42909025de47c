/* ws_api.c: the /ws/jobs/{id} endpoint. See ws_api.h and docs/protocol.md.
 * Loop thread only. */
#include "server/ws_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "net/ws_handshake.h"
#include "server/conn.h"
#include "server/engine.h"
#include "server/http_api.h"
#include "server/jobs.h"


/* Sends a connection-local message (seq 0): connected, pong, errors. */
static void send_local(srv_conn_t* conn,
                       const char* type,
                       const char* job_id,
                       json_t* data) {
  size_t len = 0;
  char* text = core_msg_encode(type, job_id, 0, srv_now_us(), data, &len);
  if (text == NULL) {
    srv_conn_close(conn);
    return;
  }
  net_frame_t* f = net_frame_ws_text(text, len);
  free(text);
  if (f == NULL) {
    srv_conn_close(conn);
    return;
  }
  srv_conn_send(conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


static void on_client_message(net_ws_t* ws,
                              uint8_t opcode,
                              const uint8_t* data,
                              size_t len) {
  srv_conn_t* conn = ws->data;
  const char* job_id = conn->job != NULL ? conn->job->id : "";
  if (opcode != NET_WS_OP_TEXT) {
    send_local(conn, "error", job_id,
               json_pack("{s:s, s:s, s:s, s:b}", "code", "bad_message",
                         "message", "binary messages are not accepted", "hint",
                         "send {\"type\":\"ping\"} as text", "retryable", 0));
    return;
  }
  switch (core_msg_parse_client((const char*) data, len)) {
  case CORE_CLIENT_MSG_PING:
    send_local(conn, "pong", job_id, json_object());
    return;
  case CORE_CLIENT_MSG_UNKNOWN:
    send_local(
        conn, "error", job_id,
        json_pack("{s:s, s:s, s:s, s:b}", "code", "unknown_message_type",
                  "message", "this message type is not understood", "hint",
                  "the only client message is {\"type\":\"ping\"}", "retryable",
                  0));
    return;
  case CORE_CLIENT_MSG_INVALID:
    send_local(conn, "error", job_id,
               json_pack("{s:s, s:s, s:s, s:b}", "code", "bad_message",
                         "message", "client messages must be JSON objects",
                         "hint", "send {\"type\":\"ping\"}", "retryable", 0));
    return;
  }
}


/* Subprotocols offering an encoding; a client lists them in
 * Sec-WebSocket-Protocol and the server answers with the one it took. */
static const struct {
  const char* name;
  core_encoding_t enc;
} subprotocols[] = {
    {"cryomamba.v1", CORE_ENC_BASE64},
    {"cryomamba.v1.raw", CORE_ENC_RAW},
    {"cryomamba.v1.zstd", CORE_ENC_ZSTD},
};


/* The first subprotocol of ours the client offers, or NULL. */
static const char* pick_subprotocol(const char* offered, core_encoding_t* enc) {
  if (offered == NULL) {
    return NULL;
  }
  const char* p = offered;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ',') {
      p++;
    }
    size_t n = strcspn(p, ", \t");
    for (size_t i = 0; i < sizeof(subprotocols) / sizeof(subprotocols[0]);
         i++) {
      if (n == strlen(subprotocols[i].name) &&
          memcmp(p, subprotocols[i].name, n) == 0) {
        *enc = subprotocols[i].enc;
        return subprotocols[i].name;
      }
    }
    p += n;
  }
  return NULL;
}


/* Reads ?encoding= from the URL. Returns 0 (absent or valid) or -1. */
static int query_encoding(const char* url, core_encoding_t* enc, bool* given) {
  *given = false;
  const char* q = strchr(url, '?');
  while (q != NULL) {
    q++;
    if (strncmp(q, "encoding=", 9) == 0) {
      const char* v = q + 9;
      size_t n = strcspn(v, "&#");
      *given = true;
      return core_encoding_parse(v, n, enc) == 0 ? 0 : -1;
    }
    q = strchr(q, '&');
  }
  return 0;
}


static void send_handshake(srv_conn_t* conn, const char* subprotocol) {
  char accept[NET_WS_ACCEPT_LEN + 1];
  net_ws_accept_for_key(net_http_header(conn->http, "Sec-WebSocket-Key"),
                        accept);
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
    return;
  }
  srv_conn_send(conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


/* Extracts the id from /ws/jobs/{id}[?query]. */
static void path_job_id(const char* url, const char** id, size_t* len) {
  const char* p = url + strlen("/ws/jobs/");
  while (*p == '/') {
    p++;
  }
  size_t n = strcspn(p, "/?#");
  *id = p;
  *len = n;
}


static void subscribe(srv_conn_t* conn, srv_job_t* job) {
  conn->job = job;
  core_list_push_back(&job->subscribers, &conn->sub_link);
  job->subscriber_count++;
  job->subscribers_by_enc[conn->encoding]++;
  json_t* data = json_pack(
      "{s:s, s:f, s:I, s:{s:[I,I,I], s:[f,f,f]}, s:[I,I,I], s:{s:f, s:I, "
      "s:f, s:I, s:s}}",
      "state", core_job_state_name(job->state), "progress", job->progress,
      "last_seq", (json_int_t) job->seq, "volume", "shape",
      (json_int_t) job->shape.d[0], (json_int_t) job->shape.d[1],
      (json_int_t) job->shape.d[2], "voxel_size", job->voxel_size[0],
      job->voxel_size[1], job->voxel_size[2], "preview_shape",
      (json_int_t) job->preview_shape.d[0],
      (json_int_t) job->preview_shape.d[1],
      (json_int_t) job->preview_shape.d[2], "params", "preview_hz",
      job->params.preview_hz, "preview_scale",
      (json_int_t) job->params.preview_scale, "duration_s",
      job->params.duration_s, "seed", (json_int_t) job->params.seed, "pattern",
      core_pattern_name(job->params.pattern));
  send_local(conn, "connected", job->id, data);
  net_frame_t* preview = srv_job_preview_for(job, conn->encoding);
  if (preview != NULL) {
    srv_conn_send(conn, preview, NET_WQ_LATEST_PREVIEW);
  } else if (job->state == CORE_JOB_COMPLETED) {
    /* Restored after a restart: the preview is re-rendered, and it and the
     * terminal message are sent when ready (engine.c). */
    srv_engine_rebuild_preview(job);
    if (job->preview_rebuild_pending) {
      return;
    }
  }
  if (job->terminal_frame != NULL) {
    srv_conn_send(conn, job->terminal_frame, NET_WQ_ESSENTIAL);
  }
}


void srv_ws_upgrade(srv_conn_t* conn, const uint8_t* rest, size_t rest_len) {
  srv_ctx_t* ctx = conn->ctx;
  const char* why = NULL;
  switch (net_ws_handshake_check(conn->http, &why)) {
  case NET_WS_HS_OK:
    break;
  case NET_WS_HS_NOT_UPGRADE:
  case NET_WS_HS_BAD_REQUEST:
    conn->close_after_write = true;
    srv_http_reply_error(conn, 400, "bad_request", why,
                         "see RFC 6455 section 4.1", false, NULL);
    srv_conn_end(conn);
    return;
  case NET_WS_HS_BAD_VERSION:
    conn->close_after_write = true;
    srv_http_reply_error(conn, 426, "upgrade_required", why, NULL, false,
                         "Sec-WebSocket-Version: 13\r\n");
    srv_conn_end(conn);
    return;
  }
  core_encoding_t enc = CORE_ENC_BASE64;
  bool enc_in_query = false;
  if (query_encoding(net_http_url(conn->http), &enc, &enc_in_query) != 0) {
    conn->close_after_write = true;
    srv_http_reply_error(
        conn, 400, "invalid_field", "encoding must be base64, raw or zstd",
        "omit it for the reference's JSON + base64", false, NULL);
    srv_conn_end(conn);
    return;
  }
  core_encoding_t proto_enc = CORE_ENC_BASE64;
  const char* subprotocol = pick_subprotocol(
      net_http_header(conn->http, "Sec-WebSocket-Protocol"), &proto_enc);
  if (!enc_in_query && subprotocol != NULL) {
    enc = proto_enc; /* the query wins when both are given */
  }
  conn->encoding = enc;
  const char* id = NULL;
  size_t id_len = 0;
  path_job_id(net_http_url(conn->http), &id, &id_len);
  char id_copy[CORE_UUID_STR_LEN + 1] = "";
  bool id_ok = core_uuid_is_valid(id, id_len);
  if (id_ok) {
    memcpy(id_copy, id, CORE_UUID_STR_LEN);
  }
  send_handshake(conn, subprotocol);
  if (conn->is_closing) {
    return;
  }
  /* From here on the connection speaks WebSocket. */
  net_ws_t* ws = malloc(sizeof(*ws));
  if (ws == NULL) {
    srv_conn_close(conn);
    return;
  }
  net_ws_init(ws, &conn->wq, ctx->cfg.max_ws_message_bytes, on_client_message,
              conn);
  conn->ws = ws;
  conn->mode = SRV_CONN_WS;
  ctx->metrics.ws_upgrades_total++;
  /* The HTTP reader is no longer needed; idle subscribers stay small. */
  net_http_reader_free(conn->http);
  free(conn->http);
  conn->http = NULL;

  srv_job_t* job = id_ok ? srv_job_find(ctx, id_copy, CORE_UUID_STR_LEN) : NULL;
  if (!id_ok) {
    net_ws_close(ws, 4000, "malformed job id");
  } else if (job == NULL) {
    net_ws_close(ws, 4404, "unknown job");
  } else if (job->subscriber_count >= ctx->cfg.max_subscribers_per_job) {
    net_ws_close(ws, 4429, "too many subscribers for this job");
  } else if (ctx->is_stopping) {
    net_ws_close(ws, 1001, "server shutting down");
  }
  if (ws->is_closing) {
    srv_log(&ctx->log, SRV_LOG_INFO, "ws.rejected", "s:peer", conn->peer,
            "i:code", (int64_t) ws->close_code, NULL);
    srv_conn_end(conn);
    return;
  }
  srv_log(&ctx->log, SRV_LOG_INFO, "ws.open", "s:peer", conn->peer, "s:job_id",
          job->id, NULL);
  subscribe(conn, job);
  if (rest_len > 0 && !conn->is_closing) {
    net_ws_feed(ws, rest, rest_len);
    if (ws->is_closing) {
      srv_conn_end(conn);
    }
  }
}


void srv_ws_detach(srv_conn_t* conn) {
  if (conn->job != NULL) {
    core_list_remove(&conn->sub_link);
    conn->job->subscriber_count--;
    conn->job->subscribers_by_enc[conn->encoding]--;
    conn->job = NULL;
  }
}
