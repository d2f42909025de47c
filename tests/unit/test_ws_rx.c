/* test_ws_rx.c: message assembly under a limit (src/net/ws_rx.c), fed the
 * way wslay's no-buffering callbacks feed it: whole, in random chunks and
 * byte by byte; over the limit in the first frame or a later one; with
 * control frames between fragments; empty messages; a limit of 0. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "net/frame.h"
#include "net/ws_rx.h"

/* Feeds one frame of `len` bytes of `data` in chunks of `step` bytes (0:
 * random sizes). */
static void feed_frame(net_ws_rx_t* rx,
                       uint8_t opcode,
                       const uint8_t* data,
                       size_t len,
                       size_t step) {
  net_ws_rx_frame_start(rx, opcode, len);
  size_t off = 0;
  do {
    size_t n = step > 0 ? step : 1 + (size_t) rand() % 97;
    n = n < len - off ? n : len - off;
    net_ws_rx_chunk(rx, data + off, n);
    off += n;
  } while (off < len);
}


static uint8_t* pattern(size_t len) {
  uint8_t* p = malloc(len + 1);
  cr_assert_not_null(p);
  for (size_t i = 0; i < len; i++) {
    p[i] = (uint8_t) ('a' + i % 26);
  }
  return p;
}


Test(ws_rx, message_within_the_limit_is_gathered_however_it_comes) {
  uint8_t* msg = pattern(3000);
  size_t steps[] = {3000, 1, 0, 7};
  for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
    net_ws_rx_t rx;
    net_ws_rx_init(&rx, 3000);
    /* Three fragments, a ping between the first two. */
    feed_frame(&rx, NET_WS_OP_TEXT, msg, 1000, steps[k]);
    feed_frame(&rx, NET_WS_OP_PING, (const uint8_t*) "ping", 4, 0);
    feed_frame(&rx, NET_WS_OP_CONT, msg + 1000, 1500, steps[k]);
    feed_frame(&rx, NET_WS_OP_CONT, msg + 2500, 500, steps[k]);
    cr_assert_eq(rx.skip_status, 0);
    cr_assert_eq(rx.opcode, NET_WS_OP_TEXT);
    cr_assert_eq(rx.len, 3000);
    cr_assert_eq(rx.total, 3000);
    cr_assert_eq(memcmp(rx.buf, msg, 3000), 0);
    net_ws_rx_reset(&rx);
    cr_assert_null(rx.buf);
    cr_assert_eq(rx.max_len, 3000, "the limit survives a reset");
  }
  free(msg);
}


Test(ws_rx, message_over_the_limit_in_its_first_frame_is_counted_only) {
  uint8_t* msg = pattern(5000);
  net_ws_rx_t rx;
  net_ws_rx_init(&rx, 4096);
  feed_frame(&rx, NET_WS_OP_BINARY, msg, 5000, 0);
  cr_assert_eq(rx.skip_status, UV_EMSGSIZE);
  cr_assert_null(rx.buf, "nothing of it is held");
  cr_assert_eq(rx.total, 5000);
  cr_assert_eq(rx.head_len, NET_WS_RX_HEAD_LEN);
  cr_assert_eq(memcmp(rx.head, msg, NET_WS_RX_HEAD_LEN), 0);
  net_ws_rx_reset(&rx);
  /* The next message is gathered again. */
  feed_frame(&rx, NET_WS_OP_TEXT, msg, 100, 0);
  cr_assert_eq(rx.skip_status, 0);
  cr_assert_eq(rx.len, 100);
  net_ws_rx_reset(&rx);
  free(msg);
}


Test(ws_rx, message_going_over_the_limit_later_keeps_its_head) {
  uint8_t* msg = pattern(1000);
  net_ws_rx_t rx;
  net_ws_rx_init(&rx, 600);
  feed_frame(&rx, NET_WS_OP_TEXT, msg, 300, 1);       /* gathered: 300 bytes */
  feed_frame(&rx, NET_WS_OP_CONT, msg + 300, 400, 0); /* 700 > 600 */
  cr_assert_eq(rx.skip_status, UV_EMSGSIZE);
  cr_assert_null(rx.buf, "what was gathered is let go");
  feed_frame(&rx, NET_WS_OP_CONT, msg + 700, 300, 0);
  cr_assert_eq(rx.total, 1000);
  cr_assert_eq(rx.head_len, NET_WS_RX_HEAD_LEN);
  cr_assert_eq(memcmp(rx.head, msg, NET_WS_RX_HEAD_LEN), 0,
               "the head is the message's first bytes");
  net_ws_rx_reset(&rx);
  free(msg);
}


Test(ws_rx, empty_messages_and_a_zero_limit) {
  net_ws_rx_t rx;
  net_ws_rx_init(&rx, 0);
  net_ws_rx_frame_start(&rx, NET_WS_OP_TEXT, 0);
  cr_assert_eq(rx.skip_status, 0, "an empty message fits any limit");
  cr_assert_eq(rx.len, 0);
  net_ws_rx_reset(&rx);
  feed_frame(&rx, NET_WS_OP_TEXT, (const uint8_t*) "x", 1, 0);
  cr_assert_eq(rx.skip_status, UV_EMSGSIZE);
  cr_assert_eq(rx.head_len, 1);
  net_ws_rx_reset(&rx);
}
