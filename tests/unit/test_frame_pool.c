/* test_frame_pool.c: shared frames and their pools: refcounts, reuse of
 * released frames (smallest that fits), frames outliving their pool, and the
 * threads the server uses them from (workers take frames, the loop and
 * writes drop them). Run under ASan by the sanitizer suite, which also
 * catches leaked pools, and under TSan by make test-tsan. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
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


/* ---- threads: as in the server, renders on worker threads take frames
 * from a job's pool and fill them; the loop thread receives them, takes a
 * reference per subscriber and drops them, some last references on another
 * thread; the job ends (the owner releases the pool) while renders still
 * run. A frame reused while still referenced, or a torn refcount, shows as
 * a wrong fill byte here and as a race under TSan. ---- */

#define PRODUCERS 3
#define FRAMES_EACH 3000
#define HANDOFF_CAP 8

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  net_frame_t* frames[HANDOFF_CAP];
  uint8_t fills[HANDOFF_CAP];
  unsigned head, count;
  unsigned putters_left; /* threads that may still put; 0: no more frames */
} handoff_t;

typedef struct {
  net_frame_pool_t* pool; /* the producer's own reference, like a render */
  handoff_t* to_loop;
  unsigned id;
} producer_t;


static void handoff_init(handoff_t* h, unsigned putters) {
  memset(h, 0, sizeof(*h));
  pthread_mutex_init(&h->lock, NULL);
  pthread_cond_init(&h->changed, NULL);
  h->putters_left = putters;
}


static void handoff_destroy(handoff_t* h) {
  pthread_mutex_destroy(&h->lock);
  pthread_cond_destroy(&h->changed);
}


static void handoff_put(handoff_t* h, net_frame_t* f, uint8_t fill) {
  pthread_mutex_lock(&h->lock);
  while (h->count == HANDOFF_CAP) {
    pthread_cond_wait(&h->changed, &h->lock);
  }
  unsigned slot = (h->head + h->count++) % HANDOFF_CAP;
  h->frames[slot] = f;
  h->fills[slot] = fill;
  pthread_cond_broadcast(&h->changed);
  pthread_mutex_unlock(&h->lock);
}


/* Returns false when the queue is empty and will stay so. */
static bool handoff_get(handoff_t* h, net_frame_t** f, uint8_t* fill) {
  pthread_mutex_lock(&h->lock);
  while (h->count == 0 && h->putters_left > 0) {
    pthread_cond_wait(&h->changed, &h->lock);
  }
  bool got = h->count > 0;
  if (got) {
    *f = h->frames[h->head];
    *fill = h->fills[h->head];
    h->head = (h->head + 1) % HANDOFF_CAP;
    h->count--;
    pthread_cond_broadcast(&h->changed);
  }
  pthread_mutex_unlock(&h->lock);
  return got;
}


/* One putter is done. */
static void handoff_end(handoff_t* h) {
  pthread_mutex_lock(&h->lock);
  h->putters_left--;
  pthread_cond_broadcast(&h->changed);
  pthread_mutex_unlock(&h->lock);
}


static bool is_filled(const net_frame_t* f, uint8_t fill) {
  for (size_t i = 0; i < f->len; i++) {
    if (f->data[i] != fill) {
      return false;
    }
  }
  return true;
}


static void* producer_main(void* arg) {
  producer_t* p = arg;
  for (unsigned i = 0; i < FRAMES_EACH; i++) {
    /* Varying sizes, so frames are reused across sizes (smallest fit). */
    size_t len = 64 + (i * 7 + p->id * 13) % 5 * 300;
    net_frame_t* f = net_frame_pool_get(p->pool, 16, len);
    cr_assert_not_null(f);
    uint8_t fill = (uint8_t) (p->id * 61 + i);
    memset(f->data, fill, f->len);
    handoff_put(p->to_loop, f, fill);
  }
  net_frame_pool_unref(p->pool);
  handoff_end(p->to_loop);
  return NULL;
}


/* A write completing elsewhere: checks the bytes, drops its reference. */
static void* writer_main(void* arg) {
  handoff_t* h = arg;
  net_frame_t* f;
  uint8_t fill;
  while (handoff_get(h, &f, &fill)) {
    cr_assert(is_filled(f, fill), "a frame changed while referenced");
    net_frame_unref(f);
  }
  return NULL;
}


Test(frame_pool, shared_between_worker_and_loop_threads, .timeout = 60) {
  net_frame_pool_t* pool = NULL;
  cr_assert_eq(net_frame_pool_new(4, &pool), 0);
  handoff_t to_loop;
  handoff_t to_writer;
  handoff_init(&to_loop, PRODUCERS);
  handoff_init(&to_writer, 1);
  producer_t producers[PRODUCERS];
  pthread_t threads[PRODUCERS];
  pthread_t writer;
  cr_assert_eq(pthread_create(&writer, NULL, writer_main, &to_writer), 0);
  for (unsigned i = 0; i < PRODUCERS; i++) {
    producers[i] = (producer_t){net_frame_pool_ref(pool), &to_loop, i};
    cr_assert_eq(
        pthread_create(&threads[i], NULL, producer_main, &producers[i]), 0);
  }
  /* The loop: two subscribers per frame, one write finishing here and one
   * on the writer thread; then the loop's own reference goes. */
  unsigned received = 0;
  net_frame_t* f;
  uint8_t fill;
  while (handoff_get(&to_loop, &f, &fill)) {
    cr_assert(is_filled(f, fill), "a frame changed before the loop got it");
    handoff_put(&to_writer, net_frame_ref(f), fill);
    net_frame_ref(f);
    net_frame_unref(f);
    net_frame_unref(f);
    if (++received == PRODUCERS * FRAMES_EACH / 2) {
      net_frame_pool_release(pool); /* the job ends; renders still run */
    }
  }
  handoff_end(&to_writer);
  for (unsigned i = 0; i < PRODUCERS; i++) {
    cr_assert_eq(pthread_join(threads[i], NULL), 0);
  }
  cr_assert_eq(pthread_join(writer, NULL), 0);
  cr_assert_eq(received, PRODUCERS * FRAMES_EACH);
  handoff_destroy(&to_loop);
  handoff_destroy(&to_writer);
}
