/* test_ws_stream.c: the server side of a WebSocket (net_ws_t over a
 * net_wqueue_t, driven as ws_conn.c drives it: tests/support/ws_driver.c)
 * against a client that sends pipelined pings in one write and stalls while
 * previews and events stream out to it. Every byte the client receives goes
 * through a strict frame reader (tests/support/strict_ws.c); every data
 * frame must arrive intact, every event frame in order, every pong with its
 * ping's payload, in order, and the run must end with the close handshake.
 * Guards two fixed bugs: a pong's header written ahead of a queued data
 * frame (its payload did not fit the control buffer), and a pause while
 * resuming that was never resumed (a silent stall). One loop, one thread:
 * both ends of an AF_UNIX socketpair are uv_pipe_t handles, and a stall
 * ends on the server's observable state, never on a clock. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "net/frame.h"
#include "strict_ws.h"
#include "ws_driver.h"

#define MAX_MSG_LEN 65536
#define CLI_BUF_LEN 65536
#define SOCK_BUF_LEN 8192 /* both ends; the kernel doubles it */
#define PUSH_MS 2         /* an event frame per tick, a preview per third */
#define WATCH_MS 250
#define STALL_LIMIT_MS 10000 /* no pong or close step this long: fail */
#define PREVIEW_COUNT 12
#define TAG_LEN 9 /* "P%08u" or "E%08u" opens every data payload */
#define RUNS_PER_TEST 8

typedef struct {
  uv_loop_t loop;
  uint64_t rng;
  uint64_t seed;
  char failure[512]; /* the first failure; "" while all is well */
  uv_timer_t push_timer;
  uv_timer_t watchdog;
  uv_check_t check;

  /* the server */
  ws_driver_t srv;
  net_frame_t* previews[PREVIEW_COUNT];
  unsigned previews_pushed;
  unsigned events_pushed; /* event frames queued, ids 0.. */
  unsigned feeds;
  unsigned ticks;

  /* the client */
  uv_pipe_t cli;
  unsigned ping_count;
  uint8_t* ping_payloads; /* all payloads, back to back */
  size_t* ping_offsets;   /* ping i's payload starts here; [count]: end */
  uint8_t* ping_wire;     /* every ping, masked, for one write */
  size_t ping_wire_len;
  uv_write_t ping_req;
  uv_write_t close_req;
  uint8_t close_wire[8];
  uint8_t cli_buf[CLI_BUF_LEN];
  bool is_stalled;
  uint64_t read_since_stall;
  uint64_t stall_after; /* bytes to read before the next stall */
  unsigned stalls;
  bool is_close_sent;
  bool is_eof;
  bool is_cli_closed;
  uint64_t bytes_seen;
  uint64_t progress_ms; /* uv_now() at the last pong or close step */

  /* what the client saw */
  strict_ws_t reader;
  uint8_t tag[TAG_LEN]; /* of the data frame being read */
  char kind;            /* 'P' (preview) or 'E' (event), 0 until tagged */
  unsigned id;
  unsigned pongs;
  unsigned events_seen; /* also the next event id expected */
  unsigned previews_seen;
  uint16_t close_code; /* the server's, 0 until its close frame */
  unsigned close_after_pongs;
} stream_t;


static void fail(stream_t* t, const char* fmt, ...);


static uint64_t rnd(stream_t* t) {
  /* xorshift64*: reproducible from the seed a failure prints. */
  t->rng ^= t->rng >> 12;
  t->rng ^= t->rng << 25;
  t->rng ^= t->rng >> 27;
  return t->rng * UINT64_C(2685821657736338717);
}


static uint64_t rnd_between(stream_t* t, uint64_t lo, uint64_t hi) {
  return lo + rnd(t) % (hi - lo + 1);
}


/* ---- the data frames: tagged, every byte predictable ---- */

/* The byte at payload position i (>= TAG_LEN) of data frame `id`. */
static uint8_t payload_byte(bool is_text, unsigned id, uint64_t i) {
  if (is_text) {
    return (uint8_t) ('a' + (id + i) % 26);
  }
  return (uint8_t) (id * 29u + i * 7u + (i >> 9));
}


/* A sealed frame as the server makes them: a tag naming it, then
 * payload_byte()s. */
static net_frame_t* make_data_frame(char kind,
                                    unsigned id,
                                    bool is_text,
                                    size_t len) {
  net_frame_t* f = net_frame_new(NET_WS_MAX_HEADER_LEN, len);
  cr_assert_not_null(f);
  char tag[TAG_LEN + 1];
  snprintf(tag, sizeof(tag), "%c%08u", kind, id);
  memcpy(f->data, tag, TAG_LEN);
  for (size_t i = TAG_LEN; i < len; i++) {
    f->data[i] = payload_byte(is_text, id, i);
  }
  net_frame_seal_ws(f, is_text ? NET_WS_OP_TEXT : NET_WS_OP_BINARY);
  return f;
}


static size_t event_len(unsigned id) {
  return TAG_LEN + 40 + (id * 37u) % 1500;
}


/* Preview i: text or binary, a few KiB to 1 MiB. */
static size_t preview_len(unsigned i) {
  static const size_t lens[PREVIEW_COUNT] = {
      4096, 5000,   12000,  16384,  33000,  65536,
      3000, 131072, 262144, 200000, 524288, 1048576,
  };
  return lens[i];
}


static bool preview_is_text(unsigned i) {
  return i % 2 == 1;
}


/* ---- what the client checks ---- */

static bool on_frame(strict_ws_t* p, uint8_t opcode, uint64_t len) {
  stream_t* t = p->data;
  t->kind = 0;
  if ((opcode == NET_WS_OP_TEXT || opcode == NET_WS_OP_BINARY) &&
      len < TAG_LEN) {
    fail(t, "a %llu-byte data frame: every one sent is tagged",
         (unsigned long long) len);
    return false;
  }
  return true;
}


/* The tag is complete: it must name a frame we sent, with this frame's
 * opcode and length; events come in the order they were queued. */
static bool check_tag(stream_t* t) {
  const strict_ws_t* p = &t->reader;
  char text[TAG_LEN + 1];
  memcpy(text, t->tag, TAG_LEN);
  text[TAG_LEN] = '\0';
  if (sscanf(text, "%c%8u", &t->kind, &t->id) != 2) {
    fail(t, "a data frame opens with \"%s\", not a tag", text);
    return false;
  }
  if (t->kind == 'P' && t->id < PREVIEW_COUNT) {
    uint8_t op = preview_is_text(t->id) ? NET_WS_OP_TEXT : NET_WS_OP_BINARY;
    if (p->opcode == op && p->len == preview_len(t->id)) {
      return true;
    }
    fail(t, "preview %u: opcode %u, %llu bytes; sent %u, %zu", t->id, p->opcode,
         (unsigned long long) p->len, op, preview_len(t->id));
    return false;
  }
  if (t->kind == 'E') {
    if (t->id != t->events_seen) {
      fail(t,
           "event %u arrived, expected %u: essential frames are never "
           "dropped or reordered",
           t->id, t->events_seen);
      return false;
    }
    if (p->opcode == NET_WS_OP_TEXT && p->len == event_len(t->id)) {
      return true;
    }
    fail(t, "event %u: opcode %u, %llu bytes", t->id, p->opcode,
         (unsigned long long) p->len);
    return false;
  }
  fail(t, "a data frame names %s, which was never sent", text);
  return false;
}


static bool on_data(strict_ws_t* p,
                    const uint8_t* bytes,
                    size_t n,
                    uint64_t off) {
  stream_t* t = p->data;
  bool is_text = p->opcode == NET_WS_OP_TEXT;
  for (size_t k = 0; k < n; k++) {
    uint64_t pos = off + k;
    if (pos < TAG_LEN) {
      t->tag[pos] = bytes[k];
      if (pos == TAG_LEN - 1 && !check_tag(t)) {
        return false;
      }
    } else if (bytes[k] != payload_byte(is_text, t->id, pos)) {
      fail(t, "%c%u: payload byte %llu is 0x%02x, sent 0x%02x", t->kind, t->id,
           (unsigned long long) pos, bytes[k],
           payload_byte(is_text, t->id, pos));
      return false;
    }
  }
  return true;
}


static bool on_pong(stream_t* t, const uint8_t* payload, size_t len) {
  if (t->pongs >= t->ping_count) {
    fail(t, "pong %u, but only %u pings were sent", t->pongs + 1,
         t->ping_count);
    return false;
  }
  unsigned i = t->pongs;
  size_t want = t->ping_offsets[i + 1] - t->ping_offsets[i];
  if (len != want ||
      memcmp(payload, t->ping_payloads + t->ping_offsets[i], len) != 0) {
    /* A pong whose header went out alone reads its payload from the data
     * frame that followed the header. */
    bool is_frame = len > 0 && (payload[0] == (0x80 | NET_WS_OP_TEXT) ||
                                payload[0] == (0x80 | NET_WS_OP_BINARY));
    fail(t, "pong %u: %zu bytes that are not ping %u's payload (%zu bytes)%s",
         i, len, i, want,
         is_frame ? "; they open like a data frame's header: the pong's "
                    "header went out alone, ahead of a data frame"
                  : "");
    return false;
  }
  t->pongs++;
  t->progress_ms = uv_now(&t->loop);
  return true;
}


static bool on_end(strict_ws_t* p,
                   uint8_t opcode,
                   const uint8_t* ctrl,
                   size_t ctrl_len) {
  stream_t* t = p->data;
  switch (opcode) {
  case NET_WS_OP_PONG:
    return on_pong(t, ctrl, ctrl_len);
  case NET_WS_OP_CLOSE:
    if (ctrl_len < 2) {
      fail(t, "the server's close frame has no status code");
      return false;
    }
    t->close_code = (uint16_t) (ctrl[0] << 8 | ctrl[1]);
    t->close_after_pongs = t->pongs;
    t->progress_ms = uv_now(&t->loop);
    return true;
  case NET_WS_OP_PING:
    return true; /* valid, though nothing here makes the server ping */
  default:
    if (t->kind == 'E') {
      t->events_seen++;
    } else {
      t->previews_seen++;
    }
    return true;
  }
}


static const strict_ws_cbs_t reader_cbs = {
    .on_frame = on_frame,
    .on_data = on_data,
    .on_end = on_end,
};


/* ---- the server's side: what a job and its renders would push ---- */

static void push_preview(stream_t* t) {
  unsigned i = (unsigned) rnd_between(t, 0, PREVIEW_COUNT - 1);
  ws_driver_deliver(&t->srv, t->previews[i], NET_WQ_LATEST_PREVIEW);
  t->previews_pushed++;
}


static void push_event(stream_t* t) {
  const ws_driver_t* d = &t->srv;
  if (d->ws.is_closing || d->is_closing || d->is_shutting_down) {
    return; /* ids stay consecutive: only frames really queued count */
  }
  unsigned id = t->events_pushed++;
  net_frame_t* f = make_data_frame('E', id, true, event_len(id));
  ws_driver_deliver(&t->srv, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


/* Reads of 64 B to 64 KiB (log-uniform), as TCP segments arrive: small
 * feeds answer a few pings each without pausing wslay, so its replies pile
 * up in the control buffer behind a stalled write until one does not fit. */
static size_t srv_read_size(ws_driver_t* d) {
  stream_t* t = d->data;
  unsigned bits = (unsigned) rnd_between(t, 6, 16);
  return (size_t) rnd_between(t, (1u << bits) / 2 + 1, 1u << bits);
}


/* Between feeds, as a job's renders land while its client pings: a data
 * frame queued while wslay's replies wait is what a control frame must
 * never be split around. */
static void srv_on_fed(ws_driver_t* d) {
  stream_t* t = d->data;
  push_preview(t);
  if (++t->feeds % 2 == 0) {
    push_event(t);
  }
}


static void srv_on_fault(ws_driver_t* d, const char* what, int status) {
  fail(d->data, "server: %s (%s)", what, uv_strerror(status));
}


static void srv_on_msg(net_ws_t* ws,
                       uint8_t opcode,
                       const uint8_t* data,
                       size_t len) {
  (void) data;
  ws_driver_t* d = ws->data;
  fail(d->data, "the client sent no message, got opcode %u (%zu bytes)", opcode,
       len);
}


static const ws_driver_hooks_t srv_hooks = {
    .read_size = srv_read_size,
    .on_fed = srv_on_fed,
    .on_fault = srv_on_fault,
    .on_msg = srv_on_msg,
};


static void on_push_timer(uv_timer_t* timer) {
  stream_t* t = timer->data;
  push_event(t);
  if (++t->ticks % 3 == 0) {
    push_preview(t);
  }
}


/* ---- the client ---- */

static void on_cli_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);


static void on_cli_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void) suggested;
  stream_t* t = h->data;
  /* Reads of random sizes split frames anywhere. */
  size_t len = (size_t) rnd_between(t, 1, sizeof(t->cli_buf));
  *buf = uv_buf_init((char*) t->cli_buf, (unsigned) len);
}


static void cli_resume(stream_t* t) {
  t->is_stalled = false;
  t->read_since_stall = 0;
  t->stall_after = rnd_between(t, 4 << 10, 256 << 10);
  if (uv_read_start((uv_stream_t*) &t->cli, on_cli_alloc, on_cli_read) != 0) {
    fail(t, "the client cannot read");
  }
}


/* A stall lasts until the server shows back-pressure: its queue is full or
 * it waits for a drain (or it closes). Runs once per loop turn. */
static void on_check(uv_check_t* check) {
  stream_t* t = check->data;
  const ws_driver_t* d = &t->srv;
  if (!t->is_stalled || t->failure[0] != '\0' ||
      uv_is_closing((uv_handle_t*) &t->cli)) {
    return;
  }
  if (d->is_closing || d->flow != WS_DRIVER_READING || net_wq_is_full(&d->wq)) {
    cli_resume(t);
  }
}


static void on_cli_written(uv_write_t* req, int status) {
  stream_t* t = req->data;
  if (status < 0) {
    fail(t, "the client's write failed: %s", uv_strerror(status));
  }
}


/* A masked close with status 1000. */
static void cli_send_close(stream_t* t) {
  static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
  size_t n = net_ws_header_encode(t->close_wire, NET_WS_OP_CLOSE, 2, mask);
  t->close_wire[n] = (1000 >> 8) ^ mask[0];
  t->close_wire[n + 1] = (1000 & 0xff) ^ mask[1];
  uv_buf_t b = uv_buf_init((char*) t->close_wire, (unsigned) n + 2);
  t->close_req.data = t;
  if (uv_write(&t->close_req, (uv_stream_t*) &t->cli, &b, 1, on_cli_written) !=
      0) {
    fail(t, "the client cannot write its close");
  }
  t->is_close_sent = true;
}


static void on_cli_closed(uv_handle_t* h) {
  stream_t* t = h->data;
  t->is_cli_closed = true;
}


/* Closes the client and the helpers; the loop ends once the server's pipe
 * has closed too. */
static void finish(stream_t* t) {
  uv_handle_t* handles[] = {
      (uv_handle_t*) &t->cli, (uv_handle_t*) &t->push_timer,
      (uv_handle_t*) &t->watchdog, (uv_handle_t*) &t->check};
  for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) {
    if (!uv_is_closing(handles[i])) {
      uv_close(handles[i], i == 0 ? on_cli_closed : NULL);
    }
  }
}


static void on_cli_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  stream_t* t = s->data;
  if (nread == 0) {
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) {
      fail(t, "the client read %s", uv_strerror((int) nread));
    } else if (t->close_code == 0) {
      fail(t, "EOF without a close frame");
    }
    t->is_eof = true;
    finish(t); /* the server sent its close and its FIN: done */
    return;
  }
  t->bytes_seen += (uint64_t) nread;
  if (!strict_ws_feed(&t->reader, (const uint8_t*) buf->base, (size_t) nread)) {
    fail(t, "%s", t->reader.error); /* no-op if a check failed already */
    return;
  }
  /* Done once every pong and at least one frame of each kind arrived (a
   * short run can answer its pings before the first event is queued). */
  if (t->pongs == t->ping_count && t->events_seen > 0 && t->previews_seen > 0 &&
      !t->is_close_sent && t->close_code == 0) {
    cli_send_close(t);
  }
  t->read_since_stall += (uint64_t) nread;
  if (!t->is_close_sent && t->read_since_stall >= t->stall_after) {
    uv_read_stop((uv_stream_t*) &t->cli);
    t->is_stalled = true;
    t->stalls++;
  }
}


/* Every ping masked, back to back, for one write; payload i is i % 126
 * random bytes. */
static void build_pings(stream_t* t, unsigned count) {
  t->ping_count = count;
  t->ping_offsets = calloc(count + 1, sizeof(size_t));
  size_t payload_total = 0;
  for (unsigned i = 0; i < count; i++) {
    payload_total += i % 126;
  }
  t->ping_payloads = malloc(payload_total + 1);
  t->ping_wire = malloc(payload_total + (size_t) count * 6);
  cr_assert(t->ping_offsets && t->ping_payloads && t->ping_wire);
  size_t off = 0;
  size_t w = 0;
  for (unsigned i = 0; i < count; i++) {
    size_t len = i % 126;
    uint8_t mask[4];
    uint64_t r = rnd(t);
    memcpy(mask, &r, sizeof(mask));
    w += net_ws_header_encode(t->ping_wire + w, NET_WS_OP_PING, len, mask);
    t->ping_offsets[i] = off;
    for (size_t k = 0; k < len; k++) {
      uint8_t byte = (uint8_t) rnd(t);
      t->ping_payloads[off + k] = byte;
      t->ping_wire[w++] = byte ^ mask[k % 4];
    }
    off += len;
  }
  t->ping_offsets[count] = off;
  t->ping_wire_len = w;
}


/* ---- the run ---- */

/* Records the first failure with the state around it, then closes
 * everything so uv_run returns; the test asserts afterwards. */
static void fail(stream_t* t, const char* fmt, ...) {
  if (t->failure[0] != '\0') {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->failure, sizeof(t->failure), fmt, ap);
  va_end(ap);
  const ws_driver_t* d = &t->srv;
  if (n >= 0 && (size_t) n < sizeof(t->failure)) {
    snprintf(t->failure + n, sizeof(t->failure) - (size_t) n,
             " [seed %llu; pongs %u/%u, flow %d, ws paused %d, queue %zu "
             "items, ctrl %zu bytes, writing %d]",
             (unsigned long long) t->seed, t->pongs, t->ping_count,
             (int) d->flow, (int) d->ws.is_paused, d->wq.item_count,
             d->wq.ctrl_len, (int) d->wq.is_writing);
  }
  ws_driver_close(&t->srv);
  finish(t);
}


static void on_watchdog(uv_timer_t* timer) {
  stream_t* t = timer->data;
  if (uv_now(&t->loop) - t->progress_ms > STALL_LIMIT_MS) {
    fail(t, "silent stall: no pong or close step for %d ms", STALL_LIMIT_MS);
  }
}


static void set_buf(int fd, int opt) {
  int len = SOCK_BUF_LEN;
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, opt, &len, sizeof(len)), 0);
}


/* One connection, start to close, from `seed`. */
static void run_once(unsigned ping_count, uint64_t seed) {
  stream_t* t = calloc(1, sizeof(*t));
  cr_assert_not_null(t);
  t->seed = seed;
  t->rng = seed != 0 ? seed : 1;
  cr_assert_eq(uv_loop_init(&t->loop), 0);
  /* The helpers first: a failure closes them, whenever it happens. */
  uv_timer_init(&t->loop, &t->push_timer);
  uv_timer_init(&t->loop, &t->watchdog);
  uv_check_init(&t->loop, &t->check);
  t->push_timer.data = t;
  t->watchdog.data = t;
  t->check.data = t;
  strict_ws_init(&t->reader, &reader_cbs, t);
  for (unsigned i = 0; i < PREVIEW_COUNT; i++) {
    t->previews[i] =
        make_data_frame('P', i, preview_is_text(i), preview_len(i));
  }

  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  /* On AF_UNIX stream sockets the sender's buffer bounds what is in flight;
   * the client's receive buffer is set small too, as a slow reader's is. */
  set_buf(sv[0], SO_SNDBUF);
  set_buf(sv[1], SO_RCVBUF);
  set_buf(sv[1], SO_SNDBUF);
  cr_assert_eq(uv_pipe_init(&t->loop, &t->cli, 0), 0);
  cr_assert_eq(uv_pipe_open(&t->cli, sv[1]), 0);
  t->cli.data = t;
  cr_assert_eq(
      ws_driver_start(&t->srv, &t->loop, sv[0], MAX_MSG_LEN, &srv_hooks, t), 0);

  build_pings(t, ping_count);
  t->ping_req.data = t;
  uv_buf_t b = uv_buf_init((char*) t->ping_wire, (unsigned) t->ping_wire_len);
  cr_assert_eq(
      uv_write(&t->ping_req, (uv_stream_t*) &t->cli, &b, 1, on_cli_written), 0);
  /* The client starts stalled: it reads nothing until the server shows
   * back-pressure, so every run goes through at least one stall. */
  t->is_stalled = true;
  t->stalls = 1;
  t->progress_ms = uv_now(&t->loop);
  uv_timer_start(&t->push_timer, on_push_timer, PUSH_MS, PUSH_MS);
  uv_timer_start(&t->watchdog, on_watchdog, WATCH_MS, WATCH_MS);
  uv_check_start(&t->check, on_check);

  uv_run(&t->loop, UV_RUN_DEFAULT);

  const ws_driver_t* d = &t->srv;
  cr_log_info(
      "%u pings, seed %llu: %u stalls, %u drainings, %u pauses on resume, "
      "%u/%u previews seen/offered (%llu dropped), %u events, %llu bytes",
      ping_count, (unsigned long long) seed, t->stalls, d->drainings,
      d->paused_on_resume, t->previews_seen, t->previews_pushed,
      (unsigned long long) d->wq.frames_dropped, t->events_seen,
      (unsigned long long) t->bytes_seen);
  cr_assert_str_empty(t->failure, "%s", t->failure);
  cr_assert_eq(t->pongs, ping_count, "%u of %u pongs", t->pongs, ping_count);
  /* Nothing in this run justifies a close of the server's own
   * (docs/protocol.md section 6: 1002/1007/1009 answer bad input, 1001 a
   * shutdown or ping timeout, 1011 an internal error): its close must echo
   * ours, 1000, after every pong. */
  cr_assert_eq(t->close_code, 1000, "the server closed with %u after %u pongs",
               t->close_code, t->close_after_pongs);
  cr_assert_eq(t->close_after_pongs, ping_count);
  cr_assert(t->is_eof, "the server's FIN follows its close");
  cr_assert(d->is_closed && t->is_cli_closed);
  cr_assert_gt(d->drainings, 0, "the server felt back-pressure");
  cr_assert_gt(t->events_seen, 0);
  cr_assert_gt(t->previews_seen, 0);
  cr_assert_eq(uv_loop_close(&t->loop), 0, "every handle was closed");
  for (unsigned i = 0; i < PREVIEW_COUNT; i++) {
    cr_assert_eq(atomic_load(&t->previews[i]->refs), 1,
                 "the queue let go of preview %u", i);
    net_frame_unref(t->previews[i]);
  }
  free(t->ping_offsets);
  free(t->ping_payloads);
  free(t->ping_wire);
  free(t);
}


/* Interleavings differ with the seed (read sizes, stalls, which previews)
 * and a run takes milliseconds, so each test runs several. WS_STREAM_SEED
 * replays the one a failure names. */
static void run_stream(unsigned ping_count) {
  const char* env = getenv("WS_STREAM_SEED");
  if (env != NULL) {
    run_once(ping_count, strtoull(env, NULL, 10));
    return;
  }
  for (uint64_t k = 0; k < RUNS_PER_TEST; k++) {
    run_once(ping_count,
             (UINT64_C(0x9e3779b97f4a7c15) ^ ping_count) + k * 7919);
  }
}


Test(ws_stream, one_ping_gets_its_pong_among_previews, .timeout = 60) {
  run_stream(1);
}


Test(ws_stream,
     hundred_pipelined_pings_get_their_pongs_in_order,
     .timeout = 60) {
  run_stream(100);
}


Test(ws_stream,
     thousand_pipelined_pings_get_their_pongs_in_order,
     .timeout = 60) {
  run_stream(1000);
}


Test(ws_stream,
     ten_thousand_pipelined_pings_get_their_pongs_in_order,
     .timeout = 120) {
  run_stream(10000);
}
