/* ws_session.c: wslay's event API driven from libuv bytes. See
 * ws_session.h and ../shared/notes/wslay.md for what wslay leaves to us.
 * Loop thread only. */
#include "net/ws_session.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "net/frame.h"

/* wslay queues one reply per ping without limit; past this many we stop
 * reading from the client until the replies are written. */
#define WS_MAX_QUEUED_REPLIES 16


static ssize_t on_wslay_recv(wslay_event_context_ptr ctx,
                             uint8_t* buf,
                             size_t len,
                             int flags,
                             void* user_data) {
  (void) flags;
  net_ws_t* ws = user_data;
  if (ws->rx_len == 0 ||
      wslay_event_get_queued_msg_count(ctx) > WS_MAX_QUEUED_REPLIES) {
    if (ws->rx_len > 0) {
      ws->is_paused = true;
    }
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws->rx_len ? len : ws->rx_len;
  memcpy(buf, ws->rx, n);
  ws->rx += n;
  ws->rx_len -= n;
  return (ssize_t) n;
}


static ssize_t on_wslay_send(wslay_event_context_ptr ctx,
                             const uint8_t* data,
                             size_t len,
                             int flags,
                             void* user_data) {
  net_ws_t* ws = user_data;
  bool more = (flags & WSLAY_MSG_MORE) != 0;
  if (more && !ws->is_frame_open) {
    /* A control frame's header, its payload to follow in the next call:
     * take it only if the whole frame fits, so that a frame is queued
     * whole or not at all (a bare header ahead of a preview corrupts the
     * stream). Server frames are unmasked; control payloads <= 125. */
    size_t payload = len >= 2 ? (size_t) (data[1] & 0x7f) : 0;
    if (len + payload > net_wq_ctrl_room(ws->wq)) {
      ws->is_paused = true;
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
  }
  int err = net_wq_push_ctrl(ws->wq, data, len, more);
  if (err != 0 && ws->is_frame_open) {
    /* The payload could not follow its header: the half frame must never
     * be sealed by a later control frame. */
    net_wq_drop_open_ctrl(ws->wq);
  }
  ws->is_frame_open = err == 0 && more;
  if (err == UV_ENOBUFS) {
    assert(!more); /* room was checked at the header */
    ws->is_paused = true;
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (err != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t) len;
}


static void on_wslay_msg(wslay_event_context_ptr ctx,
                         const struct wslay_event_on_msg_recv_arg* arg,
                         void* user_data) {
  (void) ctx;
  net_ws_t* ws = user_data;
  if (ws->is_closing) {
    return;
  }
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
    ws->on_msg(ws, arg->opcode, arg->msg, arg->msg_length);
  }
  /* Pings are answered by wslay; pongs only prove liveness, which the
   * owner records for every byte received. */
}


/* wslay answers a 1-byte close payload with a close that carries no status
 * code; RFC 6455 wants 1002, so we notice the frame and answer ourselves. */
static void on_wslay_frame_start(
    wslay_event_context_ptr ctx,
    const struct wslay_event_on_frame_recv_start_arg* arg,
    void* user_data) {
  (void) ctx;
  net_ws_t* ws = user_data;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1) {
    ws->is_protocol_error = true;
  }
}


void net_ws_init(net_ws_t* ws,
                 net_wqueue_t* wq,
                 size_t max_msg_len,
                 net_ws_msg_cb on_msg,
                 void* data) {
  memset(ws, 0, sizeof(*ws));
  ws->wq = wq;
  ws->max_msg_len = max_msg_len;
  ws->on_msg = on_msg;
  ws->data = data;
}


static int ensure_ctx(net_ws_t* ws) {
  if (ws->ctx != NULL) {
    return 0;
  }
  static const struct wslay_event_callbacks callbacks = {
      .recv_callback = on_wslay_recv,
      .send_callback = on_wslay_send,
      .on_msg_recv_callback = on_wslay_msg,
      .on_frame_recv_start_callback = on_wslay_frame_start,
  };
  if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
    ws->ctx = NULL;
    return UV_ENOMEM;
  }
  /* The default is 2^31-1, and wslay allocates what a header announces. */
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_msg_len);
  return 0;
}


/* Notes the close wslay queued (an echo or a 1007/1009 it decided). */
static void check_close(net_ws_t* ws) {
  if (!ws->is_closing && wslay_event_get_close_sent(ws->ctx)) {
    ws->is_closing = true;
    ws->close_code = wslay_event_get_status_code_sent(ws->ctx);
    net_wq_discard_pending(ws->wq);
  }
}


/* Runs wslay over ws->rx, then lets it write its replies. */
static int run(net_ws_t* ws) {
  int rv = wslay_event_recv(ws->ctx);
  if (rv != 0 || ws->is_protocol_error) {
    /* A malformed frame: wslay queued a close without a status code; send
     * a proper 1002 instead (1011 when we ran out of memory). */
    net_ws_close(ws, rv == WSLAY_ERR_NOMEM ? 1011 : 1002,
                 rv == WSLAY_ERR_NOMEM ? "out of memory" : "protocol error");
    return 0;
  }
  if (wslay_event_get_close_received(ws->ctx)) {
    net_wq_discard_pending(ws->wq); /* no previews after the client's close */
  }
  if (wslay_event_want_write(ws->ctx)) {
    rv = wslay_event_send(ws->ctx);
    if (rv != 0 && rv != WSLAY_ERR_WOULDBLOCK) {
      net_ws_close(ws, 1011, "internal error");
      return 0;
    }
  }
  check_close(ws);
  return 0;
}


/* Keeps unconsumed input for later (the owner stopped reading). */
static int keep_backlog(net_ws_t* ws) {
  if (ws->rx_len == 0) {
    return 0;
  }
  uint8_t* grown = realloc(ws->backlog, ws->backlog_len + ws->rx_len);
  if (grown == NULL) {
    return UV_ENOMEM;
  }
  memmove(grown + ws->backlog_len, ws->rx, ws->rx_len);
  ws->backlog = grown;
  ws->backlog_len += ws->rx_len;
  ws->rx = NULL;
  ws->rx_len = 0;
  return 0;
}


int net_ws_feed(net_ws_t* ws, const uint8_t* bytes, size_t len) {
  if (ws->is_closing) {
    return 0; /* after a close, input is read and discarded */
  }
  int err = ensure_ctx(ws);
  if (err != 0) {
    return err;
  }
  ws->rx = bytes;
  ws->rx_len = len;
  if (ws->is_paused || ws->backlog_len > 0) {
    return keep_backlog(ws);
  }
  run(ws);
  if (ws->is_closing) {
    ws->rx_len = 0;
    return 0;
  }
  return keep_backlog(ws);
}


int net_ws_resume(net_ws_t* ws) {
  if (ws->ctx == NULL || ws->is_closing) {
    ws->is_paused = false;
    return 0;
  }
  ws->is_paused = false;
  if (wslay_event_want_write(ws->ctx)) {
    wslay_event_send(ws->ctx);
    check_close(ws);
  }
  if (ws->is_paused || ws->is_closing || ws->backlog_len == 0) {
    return 0;
  }
  uint8_t* held = ws->backlog;
  size_t held_len = ws->backlog_len;
  ws->backlog = NULL;
  ws->backlog_len = 0;
  ws->rx = held;
  ws->rx_len = held_len;
  run(ws);
  int err = ws->is_closing ? 0 : keep_backlog(ws);
  free(held);
  return err;
}


void net_ws_close(net_ws_t* ws, uint16_t code, const char* reason) {
  if (ws->is_closing) {
    return;
  }
  if (ws->ctx != NULL) {
    /* Keep wslay from writing its own close (or anything else) after ours. */
    wslay_event_shutdown_write(ws->ctx);
  }
  ws->is_closing = true;
  ws->close_code = code;
  net_wq_discard_pending(ws->wq);
  net_wq_drop_open_ctrl(ws->wq); /* a header whose payload never came */
  ws->is_frame_open = false;
  uint8_t frame[128];
  size_t len = net_ws_close_frame(frame, code, reason);
  /* If the control buffer is full the owner closes the socket anyway. */
  (void) net_wq_push_ctrl(ws->wq, frame, len, false);
}


int net_ws_ping(net_ws_t* ws) {
  static const uint8_t ping[2] = {0x80 | NET_WS_OP_PING, 0};
  if (ws->is_closing) {
    return 0;
  }
  return net_wq_push_ctrl(ws->wq, ping, sizeof(ping), false);
}


void net_ws_free(net_ws_t* ws) {
  if (ws->ctx != NULL) {
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
  }
  free(ws->backlog);
  ws->backlog = NULL;
  ws->backlog_len = 0;
}
