/* test_frame_pool.c: shared frames and their pools: refcounts, reuse of
 * released frames (smallest that fits), frames outliving their pool. Run
 * under ASan by the sanitizer suite, which also catches leaked pools. */
#include <criterion/criterion.h>
#include <string.h>

#include "net/frame.h"


Test(frame_pool, released_frames_are_reused_smallest_first, .timeout = 10) {
  net_frame_pool_t* pool = NULL;
  cr_assert_eq(net_frame_pool_new(4, &pool), 0);
  net_frame_t* small = net_frame_pool_get(pool, 16, 1000);
  net_frame_t* big = net_frame_pool_get(pool, 16, 5000);
  cr_assert_not_null(small);
  cr_assert_not_null(big);
  uint8_t* small_bytes = small->bytes;
  uint8_t* big_bytes = big->bytes;
  net_frame_unref(big);
  net_frame_unref(small);
  /* A 900-byte request takes the 1000-byte frame, not the 5000-byte one. */
  net_frame_t* again = net_frame_pool_get(pool, 16, 900);
  cr_assert_eq(again->bytes, small_bytes);
  cr_assert_eq(again->len, 900);
  cr_assert_eq(again->data, again->bytes + 16);
  net_frame_t* again_big = net_frame_pool_get(pool, 16, 4000);
  cr_assert_eq(again_big->bytes, big_bytes);
  /* Nothing idle fits: a new frame. */
  net_frame_t* fresh = net_frame_pool_get(pool, 16, 9000);
  cr_assert(fresh->bytes != small_bytes && fresh->bytes != big_bytes);
  net_frame_unref(again);
  net_frame_unref(again_big);
  net_frame_unref(fresh);
  net_frame_pool_release(pool);
}


Test(frame_pool, frames_outlive_their_pool, .timeout = 10) {
  net_frame_pool_t* pool = NULL;
  cr_assert_eq(net_frame_pool_new(2, &pool), 0);
  net_frame_t* f = net_frame_pool_get(pool, 0, 100);
  memset(f->data, 7, f->len);
  net_frame_ref(f);                                  /* a write in flight */
  net_frame_pool_t* user = net_frame_pool_ref(pool); /* a render */
  net_frame_pool_release(pool);
  net_frame_unref(f);
  cr_assert_eq(f->data[99], 7, "still referenced, still intact");
  net_frame_t* late = net_frame_pool_get(user, 0, 10); /* after release */
  cr_assert_not_null(late);
  net_frame_unref(late);
  net_frame_pool_unref(user);
  net_frame_unref(f); /* the last reference frees frame and pool */
}


Test(frame_pool, idle_frames_are_bounded, .timeout = 10) {
  net_frame_pool_t* pool = NULL;
  cr_assert_eq(net_frame_pool_new(1, &pool), 0);
  net_frame_t* a = net_frame_pool_get(pool, 0, 10);
  net_frame_t* b = net_frame_pool_get(pool, 0, 10);
  uint8_t* a_bytes = a->bytes;
  net_frame_unref(a); /* kept */
  net_frame_unref(b); /* over the bound: freed */
  net_frame_t* c = net_frame_pool_get(pool, 0, 10);
  cr_assert_eq(c->bytes, a_bytes);
  net_frame_unref(c);
  net_frame_pool_release(pool);
}


Test(frame, ws_header_and_payload_round_trip, .timeout = 10) {
  const char text[] = "{\"type\":\"pong\"}";
  net_frame_t* f = net_frame_ws_text(text, sizeof(text) - 1);
  cr_assert_eq(f->data[0], 0x81);
  cr_assert_eq(f->data[1], sizeof(text) - 1);
  size_t len = 0;
  const uint8_t* p = net_ws_frame_payload(f, &len);
  cr_assert_eq(len, sizeof(text) - 1);
  cr_assert_eq(memcmp(p, text, len), 0);
  net_frame_unref(f);
  uint8_t hdr[NET_WS_MAX_HEADER_LEN];
  cr_assert_eq(net_ws_header_encode(hdr, NET_WS_OP_BINARY, 70000, NULL), 10);
  cr_assert_eq(hdr[1], 127);
  cr_assert_eq(net_ws_header_encode(hdr, NET_WS_OP_TEXT, 300, NULL), 4);
  cr_assert_eq(hdr[1], 126);
  cr_assert_eq((hdr[2] << 8) | hdr[3], 300);
}
