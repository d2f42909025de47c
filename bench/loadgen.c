/* loadgen.c: the benchmark's WebSocket load generator. Opens N subscribers
 * to one job or many (ramped), measures delivery in a window (previews/s,
 * MB/s, end-to-end latency, inter-arrival jitter and drift, connect time),
 * its own CPU and, given --server-pid, the server's CPU and memory from
 * /proc. One libuv loop; the receive path parses frame headers itself and
 * copies only the first LG_PREFIX bytes of each message (to read its type
 * and timestamp); one sample connection keeps whole previews to validate
 * them. Neighbours: lg_stats.c (samples, /proc), lg_http.c (job set-up),
 * lg_report.c (results). Usage: loadgen --help. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/base64.h"
#include "core/msg.h"
#include "core/timefmt.h"
#include "net/frame.h"
#include "net/ws_handshake.h"
#include "lg.h"

#define LG_READ_BUF_LEN (256 * 1024)
#define LG_HS_MAX 4096
#define LG_VALIDATE_COUNT 2

static lg_t g;
static uint8_t read_buf[LG_READ_BUF_LEN]; /* every read is consumed in its
                                             callback, so one serves all */


static uint64_t rand64(void) {
  static uint64_t s = 0x9e3779b97f4a7c15ull;
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}


static void on_closed(uv_handle_t* h) {
  (void) h;
}


static void conn_close(lg_conn_t* c) {
  if (c->is_closing) {
    return;
  }
  c->is_closing = true;
  free(c->hs);
  c->hs = NULL;
  free(c->full);
  c->full = NULL;
  uv_close((uv_handle_t*) &c->tcp, on_closed);
}


static void maybe_all_connected(void);
static bool all_ended(void);
static void on_window_end(uv_timer_t* t);


static void conn_fail(lg_conn_t* c) {
  if (c->state == LG_CONNECTING || c->state == LG_HANDSHAKE) {
    g.failed++;
    c->state = LG_DONE;
    maybe_all_connected();
  } else if (c->state == LG_OPEN) {
    c->state = LG_DONE;
    if (!c->is_stalled) {
      g.dropped++;
    }
  }
  conn_close(c);
  if (all_ended()) {
    on_window_end(NULL);
  }
}


typedef struct {
  uv_write_t req;
  uint8_t bytes[];
} lg_write_t;


static void on_write(uv_write_t* req, int status) {
  (void) status;
  free(req);
}


/* Writes a copy of `len` bytes (a handshake or a small control frame). */
static void conn_write(lg_conn_t* c, const void* data, size_t len) {
  lg_write_t* w = malloc(sizeof(*w) + len);
  if (w == NULL) {
    conn_fail(c);
    return;
  }
  memcpy(w->bytes, data, len);
  uv_buf_t buf = uv_buf_init((char*) w->bytes, (unsigned) len);
  if (uv_write(&w->req, (uv_stream_t*) &c->tcp, &buf, 1, on_write) != 0) {
    free(w);
    conn_fail(c);
  }
}


/* A masked client control frame (pong) of at most 125 payload bytes. */
static void conn_send_control(lg_conn_t* c,
                              uint8_t opcode,
                              const uint8_t* payload,
                              size_t len) {
  uint8_t frame[NET_WS_MAX_HEADER_LEN + 125];
  uint64_t r = rand64();
  uint8_t mask[4];
  memcpy(mask, &r, 4);
  size_t n = net_ws_header_encode(frame, opcode, len, mask);
  for (size_t i = 0; i < len; i++) {
    frame[n + i] = payload[i] ^ mask[i % 4];
  }
  conn_write(c, frame, n + len);
}


/* Finds `"key"` in the prefix and returns its string value's start (after
 * the opening quote; JSON with or without spaces), or NULL. */
static const char* prefix_value(const lg_conn_t* c, const char* key) {
  const char* end = c->prefix + c->prefix_len;
  const char* p = memmem(c->prefix, c->prefix_len, key, strlen(key));
  if (p == NULL) {
    return NULL;
  }
  p += strlen(key);
  while (p < end && (*p == ' ' || *p == ':')) {
    p++;
  }
  return p < end && *p == '"' ? p + 1 : NULL;
}


static void validate_sample(lg_conn_t* c) {
  core_server_msg_t msg;
  core_preview_t preview;
  char err[256];
  g.validated++;
  int rc = core_msg_decode((const char*) c->full, c->full_len, &msg, err,
                           sizeof(err));
  if (rc == 0) {
    rc = core_msg_decode_preview(msg.data, g.has_shape ? &g.shape : NULL,
                                 &preview, err, sizeof(err));
    core_msg_clear(&msg);
  }
  if (rc == 0) {
    uint64_t bad = 0;
    for (size_t i = 0; i < preview.len; i++) {
      bad += preview.voxels[i] > 2;
    }
    free(preview.voxels);
    if (bad != 0) {
      snprintf(err, sizeof(err), "%" PRIu64 " voxels are not labels", bad);
      rc = -EINVAL;
    }
  }
  if (rc != 0) {
    g.invalid++;
    fprintf(stderr, "loadgen: invalid preview: %s\n", err);
  }
}


/* Parses the message timestamp in the prefix into *ts_us. Returns 0, or -1
 * (counted as unparsed). */
static int prefix_timestamp(lg_conn_t* c, int64_t* ts_us) {
  char ts_text[CORE_TIMESTAMP_LEN + 1];
  const char* ts = prefix_value(c, "\"timestamp\"");
  if (ts == NULL || ts + CORE_TIMESTAMP_LEN > c->prefix + c->prefix_len) {
    g.unparsed++;
    return -1;
  }
  memcpy(ts_text, ts, CORE_TIMESTAMP_LEN);
  ts_text[CORE_TIMESTAMP_LEN] = '\0';
  if (core_timestamp_parse(ts_text, ts_us) != 0) {
    g.unparsed++;
    return -1;
  }
  return 0;
}


/* A whole preview arrived now (a full frame, or the last chunk of a
 * complete delta) whose message says it was made at `ts_us`. */
static void on_arrival(lg_conn_t* c, int64_t ts_us) {
  int64_t now_real = lg_real_us();
  int64_t now = lg_mono_us();
  if (c->is_stall_client) {
    /* Stops reading for good: the kernel buffers fill, then the server's. */
    uv_read_stop((uv_stream_t*) &c->tcp);
    c->is_stalled = true;
    return;
  }
  if (!g.is_window_open) {
    return;
  }
  c->previews++;
  c->last_ts_us = ts_us;
  lg_samples_add(&g.latency, now_real - ts_us);
  if (c->first_us == 0) {
    c->first_us = now;
    c->prev_us = now;
    c->first_ts_us = ts_us;
    return;
  }
  int64_t period = g.period_us;
  int64_t d = now - c->prev_us;
  int64_t k = llround((double) d / (double) period);
  k = k < 1 ? 1 : k;
  lg_samples_add(&g.jitter, llabs(d - k * period));
  c->prev_us = now;
  int64_t total = now - c->first_us;
  c->drift_us = total - llround((double) total / (double) period) * period;
  int64_t total_ts = ts_us - c->first_ts_us;
  c->ts_drift_us =
      total_ts - llround((double) total_ts / (double) period) * period;
}


static void on_preview(lg_conn_t* c) {
  int64_t ts_us = 0;
  if (prefix_timestamp(c, &ts_us) != 0) {
    return;
  }
  if (c->full != NULL && g.validated < LG_VALIDATE_COUNT) {
    validate_sample(c);
  }
  on_arrival(c, ts_us);
}


/* A delta's text message: its chunk messages follow; a complete delta has
 * arrived with its last chunk. */
static void on_delta(lg_conn_t* c) {
  const char* end = c->prefix + c->prefix_len;
  const char* n = memmem(c->prefix, c->prefix_len, "\"chunks\":", 9);
  int64_t ts_us = 0;
  if (n == NULL || prefix_timestamp(c, &ts_us) != 0) {
    g.unparsed += n == NULL;
    return;
  }
  if (g.is_window_open) {
    g.deltas++;
  }
  char num[16] = {0};
  n += 9;
  size_t k = (size_t) (end - n) < sizeof(num) - 1 ? (size_t) (end - n)
                                                  : sizeof(num) - 1;
  memcpy(num, n, k);
  c->chunks_pending = (uint32_t) strtoul(num, NULL, 10);
  c->is_delta_complete =
      memmem(c->prefix, c->prefix_len, "\"complete\":true", 15) != NULL;
  c->delta_ts_us = ts_us;
  if (c->is_delta_complete && g.is_window_open) {
    g.deltas_complete++;
  }
  if (c->chunks_pending == 0 && c->is_delta_complete) {
    on_arrival(c, ts_us);
  }
}


static void on_chunk(lg_conn_t* c) {
  if (g.is_window_open) {
    g.chunk_msgs++;
    g.chunk_bytes += c->msg_len;
  }
  if (c->chunks_pending == 0) {
    g.protocol_errors++; /* a chunk outside a delta */
    return;
  }
  if (--c->chunks_pending == 0 && c->is_delta_complete) {
    on_arrival(c, c->delta_ts_us);
  }
}


/* --until-end: every connection has had the terminal message or is gone. */
static bool all_ended(void) {
  if (!g.opt.until_end || !g.is_window_open || !g.is_ramp_done) {
    return false;
  }
  for (uint32_t i = 0; i < g.n; i++) {
    const lg_conn_t* c = &g.conns[i];
    if (!c->is_ended && c->state != LG_DONE && !c->is_stall_client) {
      return false;
    }
  }
  return true;
}


/* completed, cancelled or a job's error (seq > 0): with --until-end the
 * window closes once every connection has had it (or failed). */
static void on_terminal(lg_conn_t* c) {
  if (memmem(c->prefix, c->prefix_len, "\"seq\":0,", 8) != NULL ||
      c->is_ended) {
    return;
  }
  c->is_ended = true;
  g.ended++;
  if (all_ended()) {
    on_window_end(NULL);
  }
}


static bool prefix_type_is(const lg_conn_t* c, const char* type) {
  const char* t = prefix_value(c, "\"type\"");
  size_t n = strlen(type);
  return t != NULL && (size_t) (c->prefix + c->prefix_len - t) > n &&
         memcmp(t, type, n) == 0 && t[n] == '"';
}


static void on_message(lg_conn_t* c) {
  g.messages++;
  if (c->msg_opcode == NET_WS_OP_TEXT) {
    if (prefix_type_is(c, "preview")) {
      on_preview(c);
    } else if (prefix_type_is(c, "delta")) {
      on_delta(c);
    } else if (prefix_type_is(c, "completed") ||
               prefix_type_is(c, "cancelled") || prefix_type_is(c, "error")) {
      on_terminal(c);
    }
  } else if (c->msg_opcode == NET_WS_OP_BINARY) {
    if (c->prefix_len >= 4 && memcmp(c->prefix, "CMK1", 4) == 0) {
      on_chunk(c);
    } else if (prefix_type_is(c, "preview")) {
      if (g.is_window_open) {
        g.bin_previews++;
        /* zstd is encoded only for previews rendered while the job had a
         * zstd subscriber: others come raw (docs/protocol.md §10). */
        if (memmem(c->prefix, c->prefix_len, "\"encoding\":\"raw\"", 16) !=
            NULL) {
          g.raw_previews++;
          g.raw_bytes += c->msg_len;
        }
      }
      on_preview(c);
    }
  }
  c->prefix_len = 0;
  c->msg_len = 0;
  c->full_len = 0;
}


static void on_control(lg_conn_t* c) {
  if (c->opcode == NET_WS_OP_PING) {
    conn_send_control(c, NET_WS_OP_PONG, c->ctl, c->ctl_len);
  } else if (c->opcode == NET_WS_OP_CLOSE) {
    g.closed_by_server++;
    if (c->ctl_len >= 2) {
      g.last_close_code = (c->ctl[0] << 8) | c->ctl[1];
    }
    c->state = LG_DONE;
    conn_close(c);
  }
}


/* Appends payload bytes of a data frame: the prefix, and the whole message
 * on the sample connection. */
static void take_payload(lg_conn_t* c, const uint8_t* p, size_t n) {
  if (c->prefix_len < LG_PREFIX) {
    size_t k = LG_PREFIX - c->prefix_len;
    k = k < n ? k : n;
    memcpy(c->prefix + c->prefix_len, p, k);
    c->prefix_len = (uint16_t) (c->prefix_len + k);
  }
  if (c->full != NULL && g.validated < LG_VALIDATE_COUNT) {
    if (c->full_len + n > c->full_cap) {
      size_t cap = (c->full_len + n) * 2;
      uint8_t* full = realloc(c->full, cap);
      if (full == NULL) {
        return;
      }
      c->full = full;
      c->full_cap = cap;
    }
    memcpy(c->full + c->full_len, p, n);
    c->full_len += n;
  }
  c->msg_len += n;
}


/* Parses a complete frame header in c->hdr. Returns 0 or -1 (protocol
 * error: masked server frame, or a control frame over 125 bytes). */
static int header_done(lg_conn_t* c) {
  c->fin = (c->hdr[0] & 0x80) != 0;
  c->opcode = c->hdr[0] & 0x0f;
  uint64_t len = c->hdr[1] & 0x7f;
  if (len == 126) {
    len = (uint64_t) c->hdr[2] << 8 | c->hdr[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) {
      len = len << 8 | c->hdr[i];
    }
  }
  c->remain = len;
  c->is_control = (c->opcode & 0x08) != 0;
  c->ctl_len = 0;
  c->in_payload = true;
  c->hdr_len = 0;
  if ((c->hdr[1] & 0x80) != 0 || (c->is_control && len > 125)) {
    return -1;
  }
  if (!c->is_control && c->opcode != NET_WS_OP_CONT) {
    c->msg_opcode = c->opcode;
  }
  return 0;
}


static void frame_done(lg_conn_t* c) {
  c->in_payload = false;
  if (c->is_control) {
    on_control(c);
  } else if (c->fin) {
    on_message(c);
  }
}


/* Consumes `n` received bytes of WebSocket frames. */
static void parse_frames(lg_conn_t* c, const uint8_t* p, size_t n) {
  while (n > 0 && !c->is_closing && !c->is_stalled) {
    if (!c->in_payload) {
      c->hdr[c->hdr_len++] = *p++;
      n--;
      if (c->hdr_len == 2) {
        uint8_t l7 = c->hdr[1] & 0x7f;
        c->hdr_need = (uint8_t) (2 +
                                 (l7 == 126   ? 2
                                  : l7 == 127 ? 8
                                              : 0) +
                                 ((c->hdr[1] & 0x80) ? 4 : 0));
      }
      if (c->hdr_len >= 2 && c->hdr_len == c->hdr_need) {
        if (header_done(c) != 0) {
          g.protocol_errors++;
          conn_fail(c);
          return;
        }
        if (c->remain == 0) {
          frame_done(c);
        }
      }
      continue;
    }
    size_t k = c->remain < n ? (size_t) c->remain : n;
    if (c->is_control) {
      memcpy(c->ctl + c->ctl_len, p, k);
      c->ctl_len = (uint8_t) (c->ctl_len + k);
    } else {
      take_payload(c, p, k);
    }
    p += k;
    n -= k;
    c->remain -= k;
    if (c->remain == 0) {
      frame_done(c);
    }
  }
}


/* Handshake answer: status 101 and the right Sec-WebSocket-Accept. Returns
 * the length of the header block when complete and valid, 0 when more
 * bytes are needed, -1 when invalid. */
static long handshake_check(lg_conn_t* c) {
  c->hs[c->hs_len] = '\0';
  char* end = strstr(c->hs, "\r\n\r\n");
  if (end == NULL) {
    return c->hs_len >= LG_HS_MAX - 1 ? -1 : 0;
  }
  *end = '\0';
  char want[NET_WS_ACCEPT_LEN + 1];
  net_ws_accept_for_key(c->key, want);
  const char* acc = strcasestr(c->hs, "\r\nSec-WebSocket-Accept:");
  if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || acc == NULL) {
    return -1;
  }
  acc += strlen("\r\nSec-WebSocket-Accept:");
  acc += strspn(acc, " ");
  if (strncmp(acc, want, NET_WS_ACCEPT_LEN) != 0) {
    return -1;
  }
  return end + 4 - c->hs;
}


static void on_alloc(uv_handle_t* h, size_t hint, uv_buf_t* buf) {
  (void) h;
  (void) hint;
  *buf = uv_buf_init((char*) read_buf, sizeof(read_buf));
}


static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  lg_conn_t* c = s->data;
  if (nread < 0) {
    conn_fail(c);
    return;
  }
  const uint8_t* p = (const uint8_t*) buf->base;
  size_t n = (size_t) nread;
  if (c->state == LG_HANDSHAKE) {
    size_t k = LG_HS_MAX - 1 - c->hs_len;
    k = k < n ? k : n;
    memcpy(c->hs + c->hs_len, p, k);
    c->hs_len += k;
    long hdr_len = handshake_check(c);
    if (hdr_len < 0) {
      fprintf(stderr, "loadgen: bad handshake answer: %.200s\n", c->hs);
      conn_fail(c);
      return;
    }
    if (hdr_len == 0) {
      return;
    }
    /* The bytes after the header block are already frames. */
    size_t used = (size_t) hdr_len - (c->hs_len - k);
    p += used;
    n -= used;
    free(c->hs);
    c->hs = NULL;
    c->state = LG_OPEN;
    c->was_open = true;
    g.established++;
    lg_samples_add(&g.connect, lg_mono_us() - c->t_start_us);
    maybe_all_connected();
  }
  if (g.is_window_open && !c->is_stall_client) {
    g.window_bytes += n;
  }
  parse_frames(c, p, n);
}


static void on_connect(uv_connect_t* req, int status) {
  lg_conn_t* c = req->data;
  if (status != 0) {
    if (g.failed < 5) {
      fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
    }
    conn_fail(c);
    return;
  }
  c->state = LG_HANDSHAKE;
  c->hs = malloc(LG_HS_MAX);
  if (c->hs == NULL ||
      uv_read_start((uv_stream_t*) &c->tcp, on_alloc, on_read) != 0) {
    conn_fail(c);
    return;
  }
  uint8_t raw[16];
  uint64_t r1 = rand64();
  uint64_t r2 = rand64();
  memcpy(raw, &r1, 8);
  memcpy(raw + 8, &r2, 8);
  core_base64_encode(raw, 16, c->key);
  char req_text[1024];
  int n = snprintf(req_text, sizeof(req_text),
                   "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   g.paths[c->job], g.host, g.port, c->key);
  conn_write(c, req_text, (size_t) n);
}


static void conn_open(lg_conn_t* c) {
  c->state = LG_CONNECTING;
  c->t_start_us = lg_mono_us();
  uv_tcp_init(g.loop, &c->tcp);
  c->tcp.data = c;
  c->connect_req.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  int err = uv_tcp_connect(&c->connect_req, &c->tcp,
                           (const struct sockaddr*) &g.addr, on_connect);
  if (err != 0) {
    if (g.failed < 5) {
      fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(err));
    }
    conn_fail(c);
  }
}


static void on_window_end(uv_timer_t* t) {
  (void) t;
  if (g.is_finished) {
    return;
  }
  g.is_finished = true;
  lg_window_close(&g);
  for (uint32_t i = 0; i < g.n; i++) {
    if (g.conns[i].state != LG_IDLE) {
      conn_close(&g.conns[i]);
    }
  }
  uv_close((uv_handle_t*) &g.ramp_timer, NULL);
  uv_close((uv_handle_t*) &g.phase_timer, NULL);
}


static void on_warmup_end(uv_timer_t* t) {
  lg_window_open(&g);
  uv_timer_start(t, on_window_end, (uint64_t) (g.opt.duration_s * 1000), 0);
}


static void maybe_all_connected(void) {
  if (g.is_ramp_done || g.established + g.failed < g.n) {
    return;
  }
  g.is_ramp_done = true;
  g.ramp_s = (double) (lg_mono_us() - g.start_us) / 1e6;
  if (g.opt.until_end) {
    /* The window is open since the start; --duration-s bounds the wait. */
    uv_timer_start(&g.phase_timer, on_window_end,
                   (uint64_t) (g.opt.duration_s * 1000), 0);
    if (all_ended()) {
      on_window_end(NULL);
    }
    return;
  }
  uv_timer_start(&g.phase_timer, on_warmup_end,
                 (uint64_t) (g.opt.warmup_s * 1000), 0);
}


static void on_ramp_guard(uv_timer_t* t) {
  (void) t;
  fprintf(stderr, "loadgen: %u of %u connected when the ramp timed out\n",
          g.established, g.n);
  g.failed = g.n - g.established; /* the rest count as failed */
  maybe_all_connected();
}


static void on_ramp(uv_timer_t* t) {
  double elapsed_s = (double) (lg_mono_us() - g.start_us) / 1e6;
  uint32_t target = g.n;
  if (g.opt.ramp_per_s > 0) {
    double want = g.opt.ramp_per_s * elapsed_s + 1;
    target = want < (double) g.n ? (uint32_t) want : g.n;
  }
  while (g.opened < target) {
    conn_open(&g.conns[g.opened++]);
  }
  if (g.opened == g.n) {
    uv_timer_stop(t);
    if (!g.is_ramp_done) {
      uv_timer_start(&g.phase_timer, on_ramp_guard, 30000, 0);
    }
  }
}


int main(int argc, char** argv) {
  int rc = lg_setup(&g, argc, argv);
  if (rc != 0) {
    return rc == 1 ? 0 : 2;
  }
  g.loop = uv_default_loop();
  for (uint32_t i = 0; i < g.n; i++) {
    lg_conn_t* c = &g.conns[i];
    c->idx = i;
    c->job = i % g.job_count;
    c->is_stall_client = i < g.opt.stall;
    if (i == g.n - 1 && !c->is_stall_client && lg_is_base64(&g.opt)) {
      c->full = malloc(1);
      c->full_cap = 1;
    }
  }
  uv_timer_init(g.loop, &g.ramp_timer);
  uv_timer_init(g.loop, &g.phase_timer);
  g.start_us = lg_mono_us();
  if (g.opt.until_end) {
    lg_window_open(&g);
  }
  uv_timer_start(&g.ramp_timer, on_ramp, 0, 10);
  uv_run(g.loop, UV_RUN_DEFAULT);
  rc = lg_report(&g);
  uv_loop_close(g.loop);
  return rc;
}
