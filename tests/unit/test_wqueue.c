/* test_wqueue.c: the output queue (src/net/wqueue.c) on one end of an
 * AF_UNIX socketpair, a reader thread on the other. Control frames reach the
 * wire only whole and only between data frames; latest-only classes keep at
 * most one queued frame and finish the one in flight; a frame over 4 GiB is
 * written completely. No sleeps: the reader waits behind a gate that the test
 * opens once it has seen the queue's state, and the loop runs until the
 * queue reports the drain. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "net/frame.h"
#include "net/wqueue.h"

/* ---- the reader thread ---- */

typedef struct {
  uint64_t offset; /* absolute position on the wire */
  uint8_t value;
} marker_t;

typedef struct {
  int fd;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool is_open; /* the gate: a stalled peer reads nothing until opened */
  uint8_t* buf; /* the first `cap` bytes received, if cap > 0 */
  size_t cap;
  uint64_t total; /* every byte received until EOF */
  const marker_t* markers;
  size_t marker_count;
  size_t markers_seen; /* markers found with their value */
  uint8_t tail[64];    /* the last bytes received, oldest first */
  size_t tail_len;
  int err; /* errno of a failed read, 0 */
} reader_t;


static void reader_take(reader_t* r, const uint8_t* bytes, size_t n) {
  if (r->total < r->cap) {
    size_t room = (size_t) (r->cap - r->total);
    memcpy(r->buf + r->total, bytes, n < room ? n : room);
  }
  for (size_t k = 0; k < r->marker_count; k++) {
    uint64_t at = r->markers[k].offset;
    if (at >= r->total && at < r->total + n &&
        bytes[at - r->total] == r->markers[k].value) {
      r->markers_seen++;
    }
  }
  size_t keep = sizeof(r->tail);
  if (n >= keep) {
    memcpy(r->tail, bytes + n - keep, keep);
    r->tail_len = keep;
  } else {
    size_t old = r->tail_len + n > keep ? keep - n : r->tail_len;
    memmove(r->tail, r->tail + r->tail_len - old, old);
    memcpy(r->tail + old, bytes, n);
    r->tail_len = old + n;
  }
  r->total += n;
}


static void* reader_main(void* arg) {
  reader_t* r = arg;
  pthread_mutex_lock(&r->lock);
  while (!r->is_open) {
    pthread_cond_wait(&r->cond, &r->lock);
  }
  pthread_mutex_unlock(&r->lock);
  size_t chunk_len = 1 << 20;
  uint8_t* chunk = malloc(chunk_len);
  if (chunk == NULL) {
    r->err = ENOMEM;
    return NULL;
  }
  for (;;) {
    ssize_t n = read(r->fd, chunk, chunk_len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      r->err = errno;
      break;
    }
    if (n == 0) {
      break; /* the queue's side closed: everything has arrived */
    }
    reader_take(r, chunk, (size_t) n);
  }
  free(chunk);
  close(r->fd);
  return NULL;
}


static void reader_open(reader_t* r) {
  pthread_mutex_lock(&r->lock);
  r->is_open = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}


/* ---- the queue's side ---- */

typedef struct {
  uv_loop_t loop;
  uv_pipe_t pipe;
  net_wqueue_t wq;
  unsigned drains;
  int write_status; /* the first failed write's status, 0 */
  bool is_closed;
  reader_t reader;
} fixture_t;


static void on_wq(net_wqueue_t* wq, int status) {
  fixture_t* fx = wq->data;
  if (status < 0) {
    if (fx->write_status == 0) {
      fx->write_status = status;
    }
    return;
  }
  fx->drains++;
}


/* `sndbuf` > 0 shrinks the writer's socket buffer: on AF_UNIX stream sockets
 * the sender's buffer is what bounds the bytes in flight, so a frame larger
 * than it stays in flight until the reader reads. `cap` bytes are kept. */
static void fixture_init(fixture_t* fx, int sndbuf, size_t cap) {
  memset(fx, 0, sizeof(*fx));
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  if (sndbuf > 0) {
    cr_assert_eq(
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  }
  cr_assert_eq(uv_loop_init(&fx->loop), 0);
  cr_assert_eq(uv_pipe_init(&fx->loop, &fx->pipe, 0), 0);
  cr_assert_eq(uv_pipe_open(&fx->pipe, sv[0]), 0);
  net_wq_init(&fx->wq, (uv_stream_t*) &fx->pipe, on_wq, fx);
  reader_t* r = &fx->reader;
  r->fd = sv[1];
  r->cap = cap;
  r->buf = cap > 0 ? malloc(cap) : NULL;
  cr_assert(cap == 0 || r->buf != NULL);
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  cr_assert_eq(pthread_create(&r->thread, NULL, reader_main, r), 0);
}


/* Runs the loop until everything queued has been written (the reader must
 * be open, or this never returns: Criterion's timeout fails the test). */
static void fixture_drain(fixture_t* fx) {
  if (net_wq_drain(&fx->wq)) {
    return;
  }
  unsigned before = fx->drains;
  while (fx->drains == before && fx->write_status == 0) {
    uv_run(&fx->loop, UV_RUN_ONCE);
  }
  cr_assert_eq(fx->write_status, 0, "write failed: %s",
               uv_strerror(fx->write_status));
}


static void on_pipe_closed(uv_handle_t* handle) {
  fixture_t* fx = handle->data;
  net_wq_free_buffers(&fx->wq);
  fx->is_closed = true;
}


/* Closes the queue's end (the reader sees EOF) and joins the reader. */
static void fixture_finish(fixture_t* fx) {
  reader_open(&fx->reader); /* a reader still gated would never see EOF */
  net_wq_close(&fx->wq);
  fx->pipe.data = fx;
  uv_close((uv_handle_t*) &fx->pipe, on_pipe_closed);
  cr_assert_eq(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  cr_assert(fx->is_closed);
  cr_assert_eq(uv_loop_close(&fx->loop), 0, "every handle was closed");
  cr_assert_eq(pthread_join(fx->reader.thread, NULL), 0);
  cr_assert_eq(fx->reader.err, 0, "read failed: %s", strerror(fx->reader.err));
  pthread_mutex_destroy(&fx->reader.lock);
  pthread_cond_destroy(&fx->reader.cond);
}


/* A sealed binary frame of `len` payload bytes, each derived from `id`, so
 * that any two frames differ and a cut or shifted one shows. */
static net_frame_t* data_frame(unsigned id, size_t len) {
  net_frame_t* f = net_frame_new(NET_WS_MAX_HEADER_LEN, len);
  cr_assert_not_null(f);
  for (size_t i = 0; i < len; i++) {
    f->data[i] = (uint8_t) (id * 131u + i * 7u + (i >> 8));
  }
  net_frame_seal_ws(f, NET_WS_OP_BINARY);
  return f;
}


/* Whether the wire so far is exactly the concatenation of `parts`. */
static bool wire_is(const reader_t* r,
                    const uint8_t* const* parts,
                    const size_t* lens,
                    size_t count) {
  uint64_t off = 0;
  for (size_t k = 0; k < count; k++) {
    if (lens[k] == 0) {
      continue; /* an absent part (NULL) */
    }
    if (off + lens[k] > r->total ||
        memcmp(r->buf + off, parts[k], lens[k]) != 0) {
      return false;
    }
    off += lens[k];
  }
  return off == r->total;
}


/* ---- (a) control frames are sealed before they are written ---- */

/* A 125-byte pong as wslay hands it over: the header (more = true), then,
 * in a later call, its payload. */
typedef struct {
  uint8_t bytes[2 + 125];
} pong_t;


static void pong_make(pong_t* p) {
  p->bytes[0] = 0x80 | NET_WS_OP_PONG;
  p->bytes[1] = 125;
  for (size_t i = 0; i < 125; i++) {
    p->bytes[2 + i] = (uint8_t) ('A' + i % 26);
  }
}


/* Checks that the wire holds `lead` (if any), then the pong and the data
 * frame in either order, and nothing else: never the pong's header alone
 * ahead of the data frame. */
static void assert_pong_whole(const reader_t* r,
                              const net_frame_t* lead,
                              const pong_t* pong,
                              const net_frame_t* data) {
  const uint8_t* lead_bytes = lead != NULL ? lead->data : NULL;
  size_t lead_len = lead != NULL ? lead->len : 0;
  const uint8_t* pong_first[] = {lead_bytes, pong->bytes, data->data};
  const uint8_t* data_first[] = {lead_bytes, data->data, pong->bytes};
  size_t pong_first_lens[] = {lead_len, sizeof(pong->bytes), data->len};
  size_t data_first_lens[] = {lead_len, data->len, sizeof(pong->bytes)};
  uint64_t want = lead_len + sizeof(pong->bytes) + data->len;
  cr_assert_eq(r->total, want, "%llu bytes on the wire, want %llu",
               (unsigned long long) r->total, (unsigned long long) want);
  bool is_pong_first = wire_is(r, pong_first, pong_first_lens, 3);
  bool is_data_first = wire_is(r, data_first, data_first_lens, 3);
  const uint8_t* at = r->buf + lead_len;
  bool is_header_alone =
      memcmp(at, pong->bytes, 2) == 0 && memcmp(at + 2, data->data, 16) == 0;
  cr_assert(is_pong_first || is_data_first, "%s",
            is_header_alone
                ? "the pong's 2-byte header went out alone, ahead of the "
                  "data frame: a parser reads the frame as the pong's payload"
                : "the pong and the data frame are not whole and in sequence");
}


Test(wqueue,
     control_header_waits_for_its_payload_on_an_idle_queue,
     .timeout = 10) {
  fixture_t fx;
  fixture_init(&fx, 0, 1 << 16);
  reader_open(&fx.reader);
  pong_t pong;
  pong_make(&pong);
  net_frame_t* data = data_frame(1, 3000);
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes, 2, true), 0);
  /* Let a write of the header, if the queue started one, complete: then
   * the queue is idle again and the data frame could take the fast path
   * straight past the header's missing payload. */
  while (fx.wq.is_writing) {
    uv_run(&fx.loop, UV_RUN_ONCE);
  }
  cr_assert_eq(net_wq_push(&fx.wq, data, NET_WQ_ESSENTIAL), 0);
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes + 2, 125, false), 0);
  fixture_drain(&fx);
  fixture_finish(&fx);
  assert_pong_whole(&fx.reader, NULL, &pong, data);
  cr_assert_eq(fx.wq.bytes_written, fx.reader.total);
  net_frame_unref(data);
  free(fx.reader.buf);
}


Test(wqueue,
     control_header_waits_for_its_payload_behind_a_frame_in_flight,
     .timeout = 10) {
  /* The header arrives while a large frame is in flight to a stalled peer;
   * that frame then completes before the data frame and the payload come. */
  fixture_t fx;
  fixture_init(&fx, 4096, 1 << 20);
  pong_t pong;
  pong_make(&pong);
  net_frame_t* big = data_frame(2, 300000);
  net_frame_t* data = data_frame(3, 3000);
  cr_assert_eq(net_wq_push(&fx.wq, big, NET_WQ_ESSENTIAL), 0);
  cr_assert(fx.wq.is_writing, "300 kB cannot fit a 4 KiB socket buffer");
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes, 2, true), 0);
  reader_open(&fx.reader);
  while (fx.wq.is_writing) {
    uv_run(&fx.loop, UV_RUN_ONCE);
  }
  cr_assert_eq(net_wq_push(&fx.wq, data, NET_WQ_ESSENTIAL), 0);
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes + 2, 125, false), 0);
  fixture_drain(&fx);
  fixture_finish(&fx);
  assert_pong_whole(&fx.reader, big, &pong, data);
  net_frame_unref(big);
  net_frame_unref(data);
  free(fx.reader.buf);
}


Test(wqueue,
     control_frame_sealed_while_a_frame_is_queued_goes_between_frames,
     .timeout = 10) {
  /* Header and payload both arrive while a frame is in flight and another
   * is queued: the pong goes out whole, after the frame in flight. */
  fixture_t fx;
  fixture_init(&fx, 4096, 1 << 20);
  pong_t pong;
  pong_make(&pong);
  net_frame_t* big = data_frame(4, 300000);
  net_frame_t* data = data_frame(5, 3000);
  cr_assert_eq(net_wq_push(&fx.wq, big, NET_WQ_ESSENTIAL), 0);
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes, 2, true), 0);
  cr_assert_eq(net_wq_push(&fx.wq, data, NET_WQ_ESSENTIAL), 0);
  cr_assert_eq(net_wq_push_ctrl(&fx.wq, pong.bytes + 2, 125, false), 0);
  reader_open(&fx.reader);
  fixture_drain(&fx);
  fixture_finish(&fx);
  assert_pong_whole(&fx.reader, big, &pong, data);
  net_frame_unref(big);
  net_frame_unref(data);
  free(fx.reader.buf);
}


/* ---- (b) latest-only classes ---- */

Test(wqueue,
     latest_only_classes_keep_one_queued_frame_behind_a_stalled_peer,
     .timeout = 10) {
  fixture_t fx;
  fixture_init(&fx, 4096, 4 << 20);
  enum {
    PREVIEWS = 100,
    PROGRESSES = 10,
    ESSENTIALS = 3
  };
  net_frame_t* previews[PREVIEWS];
  net_frame_t* progresses[PROGRESSES];
  net_frame_t* essentials[ESSENTIALS];
  /* The first preview is far larger than the socket buffer: it goes in
   * flight and stays there while the peer does not read. */
  previews[0] = data_frame(0, 1 << 20);
  cr_assert_eq(net_wq_push(&fx.wq, previews[0], NET_WQ_LATEST_PREVIEW), 0);
  cr_assert(fx.wq.is_writing);
  cr_assert_eq(fx.wq.item_count, 0, "the first preview is in flight");
  for (unsigned i = 1; i < PREVIEWS; i++) {
    previews[i] = data_frame(i, 1000 + i * 13);
    cr_assert_eq(net_wq_push(&fx.wq, previews[i], NET_WQ_LATEST_PREVIEW), 0);
    cr_assert_eq(fx.wq.item_count, 1, "%zu previews queued after %u pushes",
                 fx.wq.item_count, i + 1);
  }
  for (unsigned i = 0; i < PROGRESSES; i++) {
    progresses[i] = data_frame(1000 + i, 200 + i);
    cr_assert_eq(net_wq_push(&fx.wq, progresses[i], NET_WQ_LATEST_PROGRESS), 0);
    cr_assert_eq(fx.wq.item_count, 2, "one preview, one progress queued");
  }
  for (unsigned i = 0; i < ESSENTIALS; i++) {
    essentials[i] = data_frame(2000 + i, 500);
    cr_assert_eq(net_wq_push(&fx.wq, essentials[i], NET_WQ_ESSENTIAL), 0);
  }
  cr_assert_eq(fx.wq.item_count, 2 + ESSENTIALS, "essential frames stay");
  cr_assert_eq(fx.wq.frames_dropped, (PREVIEWS - 2) + (PROGRESSES - 1));
  reader_open(&fx.reader);
  fixture_drain(&fx);
  fixture_finish(&fx);
  /* The preview in flight whole, then the newest of each class and the
   * essential frames, in the order they were queued. */
  const uint8_t* parts[] = {previews[0]->data,
                            previews[PREVIEWS - 1]->data,
                            progresses[PROGRESSES - 1]->data,
                            essentials[0]->data,
                            essentials[1]->data,
                            essentials[2]->data};
  size_t lens[] = {previews[0]->len,
                   previews[PREVIEWS - 1]->len,
                   progresses[PROGRESSES - 1]->len,
                   essentials[0]->len,
                   essentials[1]->len,
                   essentials[2]->len};
  cr_assert(wire_is(&fx.reader, parts, lens, 6),
            "%llu bytes arrived, not the six frames expected",
            (unsigned long long) fx.reader.total);
  /* Dropped frames were released, none twice: only our references remain. */
  for (unsigned i = 0; i < PREVIEWS; i++) {
    cr_assert_eq(atomic_load(&previews[i]->refs), 1, "preview %u", i);
    net_frame_unref(previews[i]);
  }
  for (unsigned i = 0; i < PROGRESSES; i++) {
    cr_assert_eq(atomic_load(&progresses[i]->refs), 1);
    net_frame_unref(progresses[i]);
  }
  for (unsigned i = 0; i < ESSENTIALS; i++) {
    cr_assert_eq(atomic_load(&essentials[i]->refs), 1);
    net_frame_unref(essentials[i]);
  }
  free(fx.reader.buf);
}


/* ---- (c) frames over 4 GiB ---- */

Test(wqueue, frame_over_4_gib_is_written_completely, .timeout = 60) {
  /* 4 GiB + 12345 bytes: a 32-bit length would keep only the 12345. */
  const uint64_t len = (UINT64_C(1) << 32) + 12345;
  uint8_t* bytes = mmap(NULL, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (bytes == MAP_FAILED && errno == ENOMEM) {
    /* Strict overcommit (vm.overcommit_memory=2) ignores MAP_NORESERVE. */
    cr_skip_test("no 4 GiB of address space to map: %s", strerror(errno));
  }
  cr_assert(bytes != MAP_FAILED, "mmap: %s", strerror(errno));
  /* Untouched pages read as the (huge) zero page: no RSS, fewer faults. */
  (void) madvise(bytes, len, MADV_HUGEPAGE);
  size_t hdr_len =
      net_ws_header_encode(bytes, NET_WS_OP_BINARY, len - 10, NULL);
  cr_assert_eq(hdr_len, 10);
  /* Markers around each GiB, at 4 GiB and at the last byte. The frame goes
   * out in 1 GiB pieces from wherever the first write stopped: a piece
   * lost, repeated or cut short moves every marker after it. */
  const uint64_t gib = UINT64_C(1) << 30;
  marker_t markers[] = {
      {0, bytes[0]},   {9, bytes[9]},       {gib - 1, 0xa1},
      {gib, 0xa2},     {2 * gib + 7, 0xa3}, {4 * gib - 1, 0xa4},
      {4 * gib, 0xa5}, {4 * gib + 1, 0xa6}, {len - 1, 0xa7},
  };
  size_t marker_count = sizeof(markers) / sizeof(markers[0]);
  for (size_t k = 2; k < marker_count; k++) {
    bytes[markers[k].offset] = markers[k].value;
  }
  /* frame.c frees a frame with free(f) and never frees f->data on its own
   * (data normally points into f's own allocation, or into a parent's).
   * So a malloc'd header whose data points into our mapping is released
   * correctly by its last unref, whoever drops it; the mapping stays ours
   * and is unmapped after that. cap 0, as for a slice: the bytes are not
   * the frame's. */
  net_frame_t* huge = malloc(sizeof(*huge));
  cr_assert_not_null(huge);
  atomic_init(&huge->refs, 1);
  huge->pool = NULL;
  huge->parent = NULL;
  huge->held = NULL;
  huge->cap = 0;
  huge->headroom = 0;
  huge->data = bytes;
  huge->len = (size_t) len;
  /* A newer preview pushed while the huge one is partly written must queue
   * behind it, never replace it. */
  static const char after_text[] = "the preview after the huge one";
  net_frame_t* after = net_frame_ws_text(after_text, sizeof(after_text) - 1);
  cr_assert_not_null(after);

  fixture_t fx;
  fixture_init(&fx, 0, 0);
  fx.reader.markers = markers;
  fx.reader.marker_count = marker_count;
  cr_assert_eq(net_wq_push(&fx.wq, huge, NET_WQ_LATEST_PREVIEW), 0);
  cr_assert_eq(net_wq_push(&fx.wq, after, NET_WQ_LATEST_PREVIEW), 0);
  cr_expect_eq(fx.wq.frames_dropped, 0, "the partly written frame was dropped");
  cr_expect_eq(fx.wq.item_count, 2,
               "the huge frame stays at the head while its pieces go out");
  reader_open(&fx.reader);
  fixture_drain(&fx);
  fixture_finish(&fx);

  const reader_t* r = &fx.reader;
  uint64_t want = len + after->len;
  cr_assert_eq(r->total, want, "the wire carried %llu bytes of %llu",
               (unsigned long long) r->total, (unsigned long long) want);
  cr_assert_eq(fx.wq.bytes_written, want);
  cr_assert_eq(r->markers_seen, marker_count, "%zu of %zu markers in place",
               r->markers_seen, marker_count);
  cr_assert_eq(r->tail_len, sizeof(r->tail));
  size_t tail_off = sizeof(r->tail) - after->len;
  cr_assert_eq(memcmp(r->tail + tail_off, after->data, after->len), 0,
               "the small preview follows the huge frame, whole");
  cr_assert_eq(atomic_load(&huge->refs), 1, "the queue released its refs");
  net_frame_unref(huge); /* frees the header only */
  net_frame_unref(after);
  cr_assert_eq(munmap(bytes, len), 0);
}


/* ---- (e) several frames in one write ---- */

/* A delta and its chunks go out in order and whole, whether the idle
 * socket takes them all at once, cuts one in the middle (a small send
 * buffer and a stalled reader), or the queue was busy already. */
Test(wqueue, push_all_writes_every_frame_in_order, .timeout = 20) {
  for (int round = 0; round < 3; round++) {
    fixture_t fx;
    fixture_init(&fx, round == 1 ? 4096 : 0, 1 << 20);
    if (round != 1) {
      reader_open(&fx.reader);
    }
    net_frame_t* busy = round == 2 ? data_frame(99, 200000) : NULL;
    if (busy != NULL) {
      cr_assert_eq(net_wq_push(&fx.wq, busy, NET_WQ_ESSENTIAL), 0);
    }
    net_frame_t* frames[NET_WQ_PUSH_ALL_MAX];
    const uint8_t* parts[1 + NET_WQ_PUSH_ALL_MAX];
    size_t lens[1 + NET_WQ_PUSH_ALL_MAX];
    size_t n = 40;
    parts[0] = busy != NULL ? busy->data : NULL;
    lens[0] = busy != NULL ? busy->len : 0;
    for (size_t i = 0; i < n; i++) {
      frames[i] = data_frame((unsigned) i, 300 + i * 517); /* 3-22 KiB */
      parts[1 + i] = frames[i]->data;
      lens[1 + i] = frames[i]->len;
    }
    cr_assert_eq(net_wq_push_all(&fx.wq, frames, n), 0);
    if (round == 1) {
      /* The stalled reader's socket took a part: the rest is queued. */
      cr_assert_gt(fx.wq.item_count, 0);
      reader_open(&fx.reader);
    }
    fixture_drain(&fx);
    fixture_finish(&fx);
    cr_assert(wire_is(&fx.reader, parts, lens, 1 + n), "round %d", round);
    cr_assert_eq(fx.wq.bytes_written, fx.reader.total);
    for (size_t i = 0; i < n; i++) {
      net_frame_unref(frames[i]);
    }
    net_frame_unref(busy);
    free(fx.reader.buf);
  }
}
