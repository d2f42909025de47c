/* fuzz_ws_feed.c: libFuzzer target for the server's WebSocket input path:
 * net_ws_feed() and net_ws_resume() (src/net/ws_session.c) over a real
 * write queue (src/net/wqueue.c) writing into a socketpair, driven by a
 * copy of the server's glue (src/server/conn.c, ws_conn.c): reads stop when
 * the session pauses or the queue fills and restart when it drains, a close
 * ends the connection after the queue is written, client messages get a
 * reply. The input is a script (below): client bytes, how the server's
 * reads split them, data frames the server pushes meanwhile, how much the
 * peer reads and when. At the end the peer reads everything; an independent
 * RFC 6455 parser (ws_check.c) then checks the server's output is a sequence
 * of whole, well-formed frames with our data frames intact and in order, and
 * the connection must not be left waiting for nothing (paused with an idle
 * queue). Any violation prints why and abort()s; $FUZZ_WS_FEED_TRACE lists
 * the frames checked, $FUZZ_WS_FEED_DUMP=file saves the output stream.
 * Seeds in fuzz/corpus/fuzz_ws_feed replay what it found in the server of
 * 81771ce: a pong header written ahead of a queued data frame when only the
 * header fit the control buffer (pong_header_ahead_of_data), a pause while
 * resuming that nothing resumed (pause_in_resume), and a pause in the bytes
 * that came with the upgrade, never acted on (pause_after_upgrade). */
#include <assert.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "net/frame.h"
#include "net/wqueue.h"
#include "net/ws_session.h"
#include "ws_check.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

/* The input: byte 0 holds flags (FLAG_*), then operations until the input
 * ends, each an opcode byte (modulo OP_COUNT) and its argument bytes
 * (missing ones read as 0):
 *   OP_SEND_RAW n, n bytes     the client sends n raw bytes
 *   OP_SEND_FRAME b0 l k f     the client sends k%64+1 masked frames with
 *                              first byte b0 (FIN, RSV, opcode as given),
 *                              payload of byte f, length code l (bit 7:
 *                              unmasked; l&127 <= 125: that length, 126:
 *                              126+16f in 16 bits, 127: f in 64 bits)
 *   OP_SEND_PING_MSG k         k%8+1 text messages {"type":"ping"}
 *   OP_READ n / OP_READ_BIG n  the server reads n+1 / (n+1)*256 bytes of
 *                              what the client sent, if it is reading
 *   OP_PUSH s c                the job sends a data frame of 8+32s
 *                              payload bytes, class c%3 (preview, event)
 *   OP_PEER_READ n             the peer reads n*64 bytes (n = 0: all it can)
 *   OP_RUN                     one loop iteration (write callbacks)
 *   OP_PING                    the server's keepalive ping
 *   OP_CLOSE c                 the server closes (ping timeout, shutdown,
 *                              job deleted)
 *   OP_PEER_CLOSE              the peer closes its end (writes fail, the
 *                              server reads EOF after what was sent)
 * Then the server reads the rest and the peer reads until nothing moves. */
enum {
  OP_SEND_RAW,
  OP_SEND_FRAME,
  OP_SEND_PING_MSG,
  OP_READ,
  OP_READ_BIG,
  OP_PUSH,
  OP_PEER_READ,
  OP_RUN,
  OP_PING,
  OP_CLOSE,
  OP_PEER_CLOSE,
  OP_COUNT
};
#define FLAG_SMALL_SNDBUF 0x01 /* a few KiB of socket buffer: backpressure */
#define FLAG_UPGRADE_READ 0x02 /* the first read comes with the upgrade */
#define FLAG_REJECTED 0x04     /* the upgrade is answered with a 4404 close */

#define MAX_MSG_LEN 65536 /* the server's default max_ws_message_bytes */
#define MAX_SENT 512      /* data frames recorded per input */
#define MAX_PUSH_PAYLOAD (8 + 32 * 255)
#define MAX_CLIENT_BYTES (4 << 20) /* sends past this are dropped */
#define READ_BUF_LEN 65536         /* the server's read buffer */

/* As ws_conn.c's back-pressure states. */
typedef enum {
  WS_READING,
  WS_DRAINING,
  WS_CLOSING
} ws_flow_t;

typedef struct {
  size_t len; /* payload bytes */
  net_wq_class_t cls;
  bool is_seen;
} sent_t;

typedef struct {
  uv_pipe_t pipe;
  uv_shutdown_t shutdown_req;
  net_wqueue_t wq;
  net_ws_t ws;
  /* As srv_conn_t. */
  bool wants_read;
  bool is_reading;
  bool is_closing; /* srv_conn_close() ran */
  bool is_shutting_down;
  bool is_shut; /* our FIN is out */
  bool is_handle_closed;
  /* As ws_conn.c's ws_state_t. */
  ws_flow_t flow;
  bool is_upgraded;         /* the upgrade's tail ran */
  const char* pause_origin; /* the glue step that last paused the session */
  /* Client bytes the server has not read yet (the kernel's buffer). */
  uint8_t* rx;
  size_t rx_len, rx_cap, rx_off;
  /* What the peer has read from the server. */
  int peer_fd;
  uint8_t* out;
  size_t out_len, out_cap;
  bool is_peer_eof;
  bool is_peer_closed; /* OP_PEER_CLOSE: peer_fd is closed */
  sent_t sent[MAX_SENT];
  unsigned sent_count;
} conn_t;

static uv_loop_t loop;
static bool is_loop_ready;
static conn_t conn;


/* Reports a violation and aborts; with $FUZZ_WS_FEED_DUMP set, first
 * writes the server's output stream (as the peer read it) to that file. */
static void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz_ws_feed: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  const char* dump = getenv("FUZZ_WS_FEED_DUMP");
  FILE* f = dump != NULL ? fopen(dump, "wb") : NULL;
  if (f != NULL) {
    fwrite(conn.out, 1, conn.out_len, f);
    fclose(f);
  }
  abort();
}


static void grow(uint8_t** buf, size_t* cap, size_t need) {
  if (need <= *cap) {
    return;
  }
  size_t cap2 = *cap > 0 ? *cap : 4096;
  while (cap2 < need) {
    cap2 *= 2;
  }
  uint8_t* p = realloc(*buf, cap2);
  if (p == NULL) {
    abort();
  }
  *buf = p;
  *cap = cap2;
}


/* ---- the server's glue, as src/server/conn.c and ws_conn.c ---- */

static void on_wq(net_wqueue_t* wq, int status);
static void update_flow(void);


static void on_handle_closed(uv_handle_t* handle) {
  (void) handle;
  conn.is_handle_closed = true;
}


/* As conn.c's update_reading(). */
static void update_reading(void) {
  conn.is_reading =
      conn.wants_read && !conn.is_closing && !net_wq_is_full(&conn.wq);
}


/* As srv_conn_want_read(). */
static void conn_want_read(bool on) {
  conn.wants_read = on;
  update_reading();
  if (!on || !net_wq_is_full(&conn.wq)) {
    return;
  }
  net_wq_drain(&conn.wq);
}


/* As srv_conn_close(). */
static void conn_close(void) {
  if (conn.is_closing) {
    return;
  }
  conn.is_closing = true;
  conn.is_reading = false;
  net_wq_close(&conn.wq);
  uv_close((uv_handle_t*) &conn.pipe, on_handle_closed);
}


/* As conn.c's on_shutdown() (the linger timer aside). */
static void on_shutdown(uv_shutdown_t* req, int status) {
  (void) req;
  if (conn.is_closing) {
    return;
  }
  if (status < 0) {
    conn_close();
    return;
  }
  conn.is_shut = true;
  conn.wants_read = true;
  update_reading();
}


static void do_shutdown(void) {
  if (uv_shutdown(&conn.shutdown_req, (uv_stream_t*) &conn.pipe, on_shutdown) !=
      0) {
    conn_close();
  }
}


/* As srv_conn_end(). */
static void conn_end(void) {
  if (conn.is_closing || conn.is_shutting_down) {
    return;
  }
  conn.is_shutting_down = true;
  conn.wants_read = false;
  update_reading();
  if (net_wq_drain(&conn.wq)) {
    do_shutdown();
  }
}


static void payload_fill(unsigned seq, uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; i++) {
    p[i] = (uint8_t) ('a' + (seq * 7 + i) % 26);
  }
}


/* As srv_conn_send(), with a data frame of `len` payload bytes whose first
 * bytes name it (so the checker knows which it sees); records it. */
static void conn_send(size_t len, net_wq_class_t cls) {
  if (conn.is_closing || conn.is_shutting_down || conn.sent_count == MAX_SENT) {
    return;
  }
  static uint8_t payload[MAX_PUSH_PAYLOAD];
  unsigned seq = conn.sent_count;
  assert(len >= sizeof(seq) && len <= sizeof(payload));
  payload_fill(seq, payload, len);
  memcpy(payload, &seq, sizeof(seq));
  net_frame_t* f = net_frame_ws_text((const char*) payload, len);
  if (f == NULL) {
    abort();
  }
  int err = net_wq_push(&conn.wq, f, cls);
  net_frame_unref(f);
  if (err != 0) {
    conn_close();
    return;
  }
  conn.sent[seq] = (sent_t){len, cls, false};
  conn.sent_count++;
  if (net_wq_is_full(&conn.wq)) {
    update_reading();
    net_wq_drain(&conn.wq);
  }
}


/* As ws_conn.c's on_client_message() (send_local): every message gets an
 * essential reply. */
static void on_msg(net_ws_t* ws,
                   uint8_t opcode,
                   const uint8_t* data,
                   size_t len) {
  (void) ws;
  (void) data;
  conn_send(opcode == NET_WS_OP_TEXT && len < 64 ? 60 : 120, NET_WQ_ESSENTIAL);
}


/* As ws_conn.c's sink_deliver(): a preview or job event. */
static void sink_deliver(size_t len, net_wq_class_t cls) {
  if (conn.ws.is_closing) {
    return;
  }
  conn_send(len, cls);
  if (!conn.is_closing && conn.flow == WS_READING && net_wq_is_full(&conn.wq)) {
    update_flow();
  }
}


/* Feeds or resumes the session, noting which step paused it last. */
static int ws_feed(const uint8_t* bytes, size_t len, const char* step) {
  bool was_paused = conn.ws.is_paused;
  int err = net_ws_feed(&conn.ws, bytes, len);
  if (!was_paused && conn.ws.is_paused) {
    conn.pause_origin = step;
  }
  return err;
}


static int ws_resume(void) {
  int err = net_ws_resume(&conn.ws);
  if (conn.ws.is_paused) {
    conn.pause_origin = "net_ws_resume"; /* it clears the pause first */
  }
  return err;
}


/* As ws_conn.c's update_flow(). */
static void update_flow(void) {
  for (;;) {
    if (conn.is_closing) {
      return;
    }
    if (conn.ws.is_closing) {
      conn.flow = WS_CLOSING;
      conn_end();
      return;
    }
    if (!conn.ws.is_paused && !net_wq_is_full(&conn.wq)) {
      conn.flow = WS_READING;
      conn_want_read(true);
      return;
    }
    conn.flow = WS_DRAINING;
    conn_want_read(false);
    if (!net_wq_drain(&conn.wq)) {
      return;
    }
    if (ws_resume() != 0) {
      conn_close();
      return;
    }
  }
}


/* As ws_conn.c's on_drain(). */
static void ws_on_drain(void) {
  if (conn.flow != WS_DRAINING) {
    return;
  }
  if (ws_resume() != 0) {
    conn_close();
    return;
  }
  update_flow();
}


/* As ws_conn.c's close_with(): the keepalive's ping timeout, shutdown. */
static void close_with(uint16_t code, const char* reason) {
  net_ws_close(&conn.ws, code, reason);
  update_flow();
}


/* As the end of ws_conn.c's upgrade: the connected message, then the bytes
 * that came with the request (or a rejection's close). */
static void upgrade(bool is_rejected, const uint8_t* rest, size_t rest_len) {
  if (is_rejected) {
    net_ws_close(&conn.ws, 4404, "unknown job");
    update_flow();
    return;
  }
  conn_send(120, NET_WQ_ESSENTIAL);
  if (conn.is_closing) {
    return;
  }
  if (rest_len > 0 &&
      ws_feed(rest, rest_len, "net_ws_feed of the bytes after the upgrade") !=
          0) {
    conn_close();
    return;
  }
  update_flow();
}


/* As conn.c's on_wq(). */
static void on_wq(net_wqueue_t* wq, int status) {
  (void) wq;
  if (conn.is_closing) {
    return;
  }
  if (status < 0) {
    conn_close();
    return;
  }
  if (conn.is_shutting_down) {
    do_shutdown();
    return;
  }
  update_reading();
  ws_on_drain();
}


/* One read of up to `n` bytes, as conn.c's on_read() and ws_conn.c's; none
 * while the server is not reading. Returns the bytes read. */
static size_t server_read(size_t n) {
  size_t avail = conn.rx_len - conn.rx_off;
  if (!conn.is_reading || conn.is_closing) {
    return 0;
  }
  if (avail == 0) {
    if (conn.is_peer_closed) {
      conn_close(); /* as conn.c's on_read() at EOF */
    }
    return 0;
  }
  if (n > avail) {
    n = avail;
  }
  if (n > READ_BUF_LEN) {
    n = READ_BUF_LEN;
  }
  /* A fresh copy, freed at once: the session must not keep pointers into
   * the server's shared read buffer. */
  uint8_t* buf = malloc(n);
  if (buf == NULL) {
    abort();
  }
  memcpy(buf, conn.rx + conn.rx_off, n);
  conn.rx_off += n;
  if (conn.is_shutting_down) {
    /* After our last bytes: discarded until the FIN. */
  } else if (!conn.is_upgraded) {
    conn.is_upgraded = true;
    upgrade(false, buf, n);
  } else if (ws_feed(buf, n, "net_ws_feed") != 0) {
    conn_close();
  } else {
    update_flow();
  }
  free(buf);
  return n;
}


/* ---- the peer ---- */

/* Reads up to `max` bytes the server wrote (0: all there is). Returns the
 * bytes read. */
static size_t peer_read(size_t max) {
  size_t total = 0;
  while (!conn.is_peer_eof && !conn.is_peer_closed &&
         (max == 0 || total < max)) {
    size_t want = max == 0 ? 65536 : max - total;
    grow(&conn.out, &conn.out_cap, conn.out_len + want);
    ssize_t n = read(conn.peer_fd, conn.out + conn.out_len, want);
    if (n == 0) {
      conn.is_peer_eof = true;
      break;
    }
    if (n < 0) {
      break; /* EAGAIN: nothing more for now */
    }
    conn.out_len += (size_t) n;
    total += (size_t) n;
  }
  return total;
}


static void client_send(const uint8_t* bytes, size_t len) {
  if (len == 0 || conn.rx_len + len > MAX_CLIENT_BYTES) {
    return;
  }
  grow(&conn.rx, &conn.rx_cap, conn.rx_len + len);
  memcpy(conn.rx + conn.rx_len, bytes, len);
  conn.rx_len += len;
}


static void client_frame(uint8_t b0,
                         uint64_t len,
                         int len_form,
                         bool is_masked,
                         uint8_t fill) {
  uint8_t hdr[14];
  size_t h = 0;
  uint8_t mask_bit = is_masked ? 0x80 : 0;
  hdr[h++] = b0;
  if (len_form == 7) {
    hdr[h++] = (uint8_t) (mask_bit | len);
  } else if (len_form == 16) {
    hdr[h++] = mask_bit | 126;
    hdr[h++] = (uint8_t) (len >> 8);
    hdr[h++] = (uint8_t) len;
  } else {
    hdr[h++] = mask_bit | 127;
    for (int shift = 56; shift >= 0; shift -= 8) {
      hdr[h++] = (uint8_t) (len >> shift);
    }
  }
  uint8_t key[4] = {fill, (uint8_t) (fill ^ 0x5a), 0x13, 0x37};
  if (is_masked) {
    memcpy(hdr + h, key, 4);
    h += 4;
  }
  client_send(hdr, h);
  uint8_t payload[126 + 16 * 255];
  assert(len <= sizeof(payload));
  for (size_t i = 0; i < len; i++) {
    payload[i] = is_masked ? (uint8_t) (fill ^ key[i % 4]) : fill;
  }
  client_send(payload, (size_t) len);
}


static void client_text(const char* text) {
  size_t len = strlen(text);
  uint8_t hdr[6] = {0x81, (uint8_t) (0x80 | len), 1, 2, 3, 4};
  client_send(hdr, sizeof(hdr));
  uint8_t payload[125];
  for (size_t i = 0; i < len; i++) {
    payload[i] = (uint8_t) (text[i] ^ hdr[2 + i % 4]);
  }
  client_send(payload, len);
}


/* ---- checking the output (fuzz/ws_check.c parses it) ---- */

/* Checks one data frame against what was pushed. */
static void check_data(size_t at,
                       const uint8_t* payload,
                       size_t len,
                       void* data) {
  (void) data;
  unsigned seq = UINT32_MAX;
  if (len >= sizeof(seq)) {
    memcpy(&seq, payload, sizeof(seq));
  }
  if (seq >= conn.sent_count || conn.sent[seq].len != len) {
    fail("output offset %zu: a %zu-byte text frame the server never pushed", at,
         len);
  }
  static uint8_t want[MAX_PUSH_PAYLOAD];
  payload_fill(seq, want, len);
  memcpy(want, &seq, sizeof(seq));
  if (memcmp(want, payload, len) != 0) {
    fail("output offset %zu: data frame %u corrupted", at, seq);
  }
  for (unsigned s = 0; s < seq; s++) {
    if (conn.sent[s].is_seen) {
      continue;
    }
    /* Skipped: fine for a latest-only frame a newer one replaced. An
     * essential frame is dropped only when a close discards the queue,
     * and nothing follows that. */
    if (conn.sent[s].cls == NET_WQ_ESSENTIAL) {
      fail("output offset %zu: data frame %u before essential frame %u", at,
           seq, s);
    }
    conn.sent[s].is_seen = true; /* later ones must not come back */
  }
  if (conn.sent[seq].is_seen) {
    fail("output offset %zu: data frame %u twice or out of order", at, seq);
  }
  conn.sent[seq].is_seen = true;
}


static void check_output(bool may_be_cut) {
  char why[160];
  if (!fuzz_ws_check_stream(conn.out, conn.out_len, may_be_cut, check_data,
                            NULL, why, sizeof(why))) {
    fail("output %s", why);
  }
}


/* ---- driving ---- */

static bool is_queue_idle(void) {
  return !conn.wq.is_writing && conn.wq.item_count == 0 &&
         conn.wq.ctrl_len == 0;
}


/* Lets the peer read and the loop run until nothing moves. */
static void settle(void) {
  for (int i = 0; i < 100000; i++) {
    size_t got = peer_read(0);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (got == 0 && (conn.is_closing || is_queue_idle()) &&
        (conn.is_shut == conn.is_shutting_down || conn.is_closing)) {
      return;
    }
  }
  fail("the write queue never drained although the peer read everything");
}


typedef struct {
  const uint8_t* p;
  size_t n;
} input_t;


static uint8_t take(input_t* in) {
  if (in->n == 0) {
    return 0;
  }
  in->n--;
  return *in->p++;
}


static void run_op(input_t* in) {
  switch (take(in) % OP_COUNT) {
  case OP_SEND_RAW: {
    size_t len = take(in);
    if (len > in->n) {
      len = in->n;
    }
    client_send(in->p, len);
    in->p += len;
    in->n -= len;
    break;
  }
  case OP_SEND_FRAME: {
    uint8_t b0 = take(in);
    uint8_t l = take(in);
    unsigned count = take(in) % 64 + 1;
    uint8_t fill = take(in);
    unsigned code = l & 0x7f;
    uint64_t len = code <= 125 ? code : (code == 126 ? 126 + 16u * fill : fill);
    int form = code <= 125 ? 7 : (code == 126 ? 16 : 64);
    for (unsigned i = 0; i < count; i++) {
      client_frame(b0, len, form, (l & 0x80) == 0, fill);
    }
    break;
  }
  case OP_SEND_PING_MSG: {
    unsigned count = take(in) % 8 + 1;
    for (unsigned i = 0; i < count; i++) {
      client_text("{\"type\":\"ping\"}");
    }
    break;
  }
  case OP_READ:
    server_read((size_t) take(in) + 1);
    break;
  case OP_READ_BIG:
    server_read(((size_t) take(in) + 1) * 256);
    break;
  case OP_PUSH: {
    size_t len = 8 + 32 * (size_t) take(in);
    net_wq_class_t cls = (net_wq_class_t) (take(in) % 3);
    if (conn.is_upgraded) { /* subscribed from then on */
      sink_deliver(len, cls);
    }
    break;
  }
  case OP_PEER_READ:
    peer_read((size_t) take(in) * 64);
    uv_run(&loop, UV_RUN_NOWAIT);
    break;
  case OP_RUN:
    uv_run(&loop, UV_RUN_NOWAIT);
    break;
  case OP_PING:
    /* As ws_conn.c's on_sweep(), time for a keepalive ping. */
    if (!conn.is_closing && !conn.is_shutting_down && conn.flow != WS_CLOSING) {
      (void) net_ws_ping(&conn.ws);
    }
    break;
  case OP_CLOSE: {
    /* As on_sweep()'s ping timeout, on_shutdown() and sink_gone(). */
    static const uint16_t codes[] = {1001, 1001, 4404};
    static const char* const reasons[] = {
        "ping timeout", "server shutting down", "the job was deleted"};
    unsigned i = take(in) % 3;
    if (!conn.is_closing) {
      close_with(codes[i], reasons[i]);
    }
    break;
  }
  case OP_PEER_CLOSE:
    if (!conn.is_peer_closed) {
      close(conn.peer_fd);
      conn.is_peer_closed = true;
      uv_run(&loop, UV_RUN_NOWAIT);
    }
    break;
  }
}


static void setup(uint8_t flags) {
  if (!is_loop_ready) {
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
      abort();
    }
    is_loop_ready = true;
  }
  uint8_t* rx = conn.rx;
  size_t rx_cap = conn.rx_cap;
  uint8_t* out = conn.out;
  size_t out_cap = conn.out_cap;
  memset(&conn, 0, sizeof(conn));
  conn.rx = rx;
  conn.rx_cap = rx_cap;
  conn.out = out;
  conn.out_cap = out_cap;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    abort();
  }
  if (flags & FLAG_SMALL_SNDBUF) {
    int size = 4096; /* the kernel's minimum is a little more */
    setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  conn.peer_fd = fds[1];
  if (uv_pipe_init(&loop, &conn.pipe, 0) != 0 ||
      uv_pipe_open(&conn.pipe, fds[0]) != 0) {
    abort();
  }
  net_wq_init(&conn.wq, (uv_stream_t*) &conn.pipe, on_wq, &conn);
  net_ws_init(&conn.ws, &conn.wq, MAX_MSG_LEN, on_msg, &conn);
  conn.wants_read = true;
  update_reading();
  if ((flags & FLAG_REJECTED) || !(flags & FLAG_UPGRADE_READ)) {
    conn.is_upgraded = true;
    upgrade((flags & FLAG_REJECTED) != 0, NULL, 0);
  }
}


static void teardown(void) {
  conn_close();
  while (!conn.is_handle_closed) {
    uv_run(&loop, UV_RUN_ONCE);
  }
  net_wq_free_buffers(&conn.wq);
  net_ws_free(&conn.ws);
  if (!conn.is_peer_closed) {
    close(conn.peer_fd);
  }
}


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  input_t in = {data, size};
  setup(take(&in));
  while (in.n > 0) {
    run_op(&in);
  }
  /* The server reads what is left while it is willing to; the peer reads
   * everything. */
  for (;;) {
    settle();
    if (server_read(READ_BUF_LEN) == 0) {
      break;
    }
  }
  /* Closed with writes in flight, or the peer stopped reading mid-frame. */
  bool is_cut = conn.is_closing || conn.is_peer_closed;
  check_output(is_cut);
  if (!conn.is_closing && !conn.is_shutting_down && !conn.ws.is_closing &&
      !conn.is_peer_closed) {
    if (conn.ws.is_paused) {
      fail(
          "the session is paused (by %s) with its queue written: nothing "
          "will resume it, %zu client bytes wait",
          conn.pause_origin, conn.rx_len - conn.rx_off + conn.ws.backlog_len);
    }
    if (conn.ws.backlog_len > 0) {
      fail("%zu client bytes held back although the session is not paused",
           conn.ws.backlog_len);
    }
    if (!conn.is_reading) {
      fail("the server stopped reading and nothing will restart it");
    }
    for (unsigned s = 0; s < conn.sent_count; s++) {
      if (!conn.sent[s].is_seen && conn.sent[s].cls == NET_WQ_ESSENTIAL) {
        fail("essential data frame %u never arrived", s);
      }
    }
  }
  teardown();
  return 0;
}
