/* ws_rx.h: a client's incoming WebSocket messages put together under a
 * size limit, for wslay's no-buffering mode (ws_client.c): wslay still
 * checks every frame, the fragmentation rules and UTF-8, and handles the
 * control frames itself; the payload of data frames comes here, chunk by
 * chunk. A message within the limit is gathered into one buffer, grown to
 * each frame's announced length as it starts (what wslay's own buffering
 * did); a message over the limit, or one there is no memory for, is
 * discarded as it streams, keeping only its first bytes and its length, so
 * that a client can skip a message of any size without ever holding it.
 * No I/O; the connection's thread. */
#ifndef NET_WS_RX_H
#define NET_WS_RX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes kept of a skipped message: enough for a preview's envelope (its
 * type and seq), text or binary. */
#define NET_WS_RX_HEAD_LEN 512

typedef struct {
  uint64_t max_len; /* larger messages are skipped */
  uint8_t* buf;     /* the message so far, while kept; owned */
  size_t len;       /* bytes in buf */
  size_t cap;       /* bytes allocated at buf */
  uint64_t total;   /* bytes of the message so far, kept or not */
  uint8_t opcode;   /* the message's (text or binary); 0 before its first */
  bool in_control;  /* the frame arriving is a control frame: not ours */
  int skip_status;  /* 0 (kept), UV_EMSGSIZE (over max_len), UV_ENOMEM */
  uint8_t head[NET_WS_RX_HEAD_LEN]; /* a skipped message's first bytes */
  size_t head_len;
} net_ws_rx_t;

/* An empty assembler for messages of at most `max_len` bytes. */
void net_ws_rx_init(net_ws_rx_t* rx, uint64_t max_len);

/* A frame with `opcode` (RFC 6455) and `payload_len` bytes starts: a text
 * or binary one begins a message, a continuation extends it, a control
 * frame is ignored until the next data frame. */
void net_ws_rx_frame_start(net_ws_rx_t* rx,
                           uint8_t opcode,
                           uint64_t payload_len);

/* `len` payload bytes of the current frame (borrowed for the call). */
void net_ws_rx_chunk(net_ws_rx_t* rx, const uint8_t* data, size_t len);

/* The message is complete and was handed on: frees its buffer and makes
 * room for the next one. Also frees everything at the end. */
void net_ws_rx_reset(net_ws_rx_t* rx);

#endif
