/* ws_session.h: the server side of one WebSocket connection after the
 * upgrade, receive half and control frames. Every byte a client sends goes
 * through wslay's event API (masking, opcodes, reserved bits, control
 * frames, fragmentation, close codes, UTF-8, maximum message length);
 * wslay's own output (pong, close) is routed into the connection's wqueue as
 * control bytes, written between data frames. Data frames (previews) bypass
 * wslay and are pushed to the wqueue by the owner. Not here: sockets
 * (the owner reads and closes), HTTP (http_reader.c). Loop thread only. */
#ifndef NET_WS_SESSION_H
#define NET_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "net/wqueue.h"

typedef struct net_ws_s net_ws_t;

/* A complete text or binary message from the client; `data` is borrowed for
 * the duration of the call. */
typedef void (*net_ws_msg_cb)(net_ws_t* ws,
                              uint8_t opcode,
                              const uint8_t* data,
                              size_t len);

struct net_ws_s {
  wslay_event_context_ptr ctx; /* created at the first received byte, so
                                  idle subscribers cost no wslay buffers */
  net_wqueue_t* wq;            /* borrowed from the owning connection */
  const uint8_t* rx;           /* input being fed, borrowed during feed */
  size_t rx_len;
  uint8_t* backlog; /* unconsumed input kept while paused (malloc'd) */
  size_t backlog_len;
  size_t max_msg_len;
  uint16_t close_code;    /* the code we sent (ours or wslay's), 0 if none */
  bool is_closing;        /* a close frame is queued: send no more data */
  bool is_paused;         /* wslay holds too many replies; stop reading */
  bool is_protocol_error; /* a violation wslay answers without a status */
  bool is_frame_open;     /* wslay sent a header; its payload is next */
  net_ws_msg_cb on_msg;
  void* data; /* the owner */
};

/* Prepares a session writing control frames to `wq`. */
void net_ws_init(net_ws_t* ws,
                 net_wqueue_t* wq,
                 size_t max_msg_len,
                 net_ws_msg_cb on_msg,
                 void* data);

/* Feeds bytes received from the client (borrowed). Returns 0, or UV_ENOMEM.
 * Afterwards check ws->is_closing (stop data, drain, then shut down) and
 * ws->is_paused (stop reading until net_ws_resume()). */
int net_ws_feed(net_ws_t* ws, const uint8_t* bytes, size_t len);

/* After the wqueue drained: lets wslay write what it held back and feeds
 * the backlog. Returns 0 or UV_ENOMEM. */
int net_ws_resume(net_ws_t* ws);

/* Queues our own close frame (`code`, `reason`), discarding queued data.
 * No-op when a close is already queued. */
void net_ws_close(net_ws_t* ws, uint16_t code, const char* reason);

/* Queues an RFC 6455 ping (keepalive). */
int net_ws_ping(net_ws_t* ws);

/* Frees the wslay context and backlog. */
void net_ws_free(net_ws_t* ws);

#endif
