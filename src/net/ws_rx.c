/* ws_rx.c: message assembly under a limit. See ws_rx.h. */
#include "net/ws_rx.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/frame.h"


void net_ws_rx_init(net_ws_rx_t* rx, uint64_t max_len) {
  memset(rx, 0, sizeof(*rx));
  rx->max_len = max_len;
}


void net_ws_rx_reset(net_ws_rx_t* rx) {
  free(rx->buf);
  net_ws_rx_init(rx, rx->max_len);
}


/* From now on the message is only counted: its first bytes go to head and
 * what was gathered so far is let go. */
static void start_skipping(net_ws_rx_t* rx, int status) {
  rx->skip_status = status;
  rx->head_len = rx->len < sizeof(rx->head) ? rx->len : sizeof(rx->head);
  if (rx->head_len > 0) {
    memcpy(rx->head, rx->buf, rx->head_len);
  }
  free(rx->buf);
  rx->buf = NULL;
  rx->len = rx->cap = 0;
}


void net_ws_rx_frame_start(net_ws_rx_t* rx,
                           uint8_t opcode,
                           uint64_t payload_len) {
  if (opcode >= NET_WS_OP_CLOSE) {
    rx->in_control = true; /* wslay buffers and answers those */
    return;
  }
  rx->in_control = false;
  if (opcode != NET_WS_OP_CONT) {
    net_ws_rx_reset(rx); /* wslay allows no new message inside another */
    rx->opcode = opcode;
  }
  if (rx->skip_status != 0) {
    return;
  }
  /* The limit is checked against what each frame announces, so a message
   * over it is never gathered, whatever its fragmentation. */
  if (payload_len > rx->max_len - rx->len) {
    start_skipping(rx, UV_EMSGSIZE);
    return;
  }
  uint64_t need = rx->len + payload_len;
  if (need > rx->cap) {
    uint8_t* grown = need <= SIZE_MAX ? realloc(rx->buf, (size_t) need) : NULL;
    if (grown == NULL) {
      start_skipping(rx, UV_ENOMEM);
      return;
    }
    rx->buf = grown;
    rx->cap = (size_t) need;
  }
}


void net_ws_rx_chunk(net_ws_rx_t* rx, const uint8_t* data, size_t len) {
  if (rx->in_control || len == 0) {
    return;
  }
  rx->total += len;
  if (rx->skip_status == 0) {
    assert(len <= rx->cap - rx->len); /* wslay keeps to the frame length */
    memcpy(rx->buf + rx->len, data, len);
    rx->len += len;
    return;
  }
  if (rx->head_len < sizeof(rx->head)) {
    size_t room = sizeof(rx->head) - rx->head_len;
    size_t n = len < room ? len : room;
    memcpy(rx->head + rx->head_len, data, n);
    rx->head_len += n;
  }
}
