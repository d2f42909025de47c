/* test_client_sub.c: libcryomamba's subscription against a scripted fake
 * server (a blocking socket thread speaking just enough RFC 6455): hostile
 * messages (invalid JSON, bad base64, wrong sizes, huge shapes, shapes that
 * disagree with the volume, unknown types, binary frames) are reported and
 * never handed over; fragmented and large (tens of MB) messages arrive
 * whole; after a dropped connection the sub reconnects and drops replays by
 * seq; fatal close codes end it; own-thread mode delivers through the
 * dispatch hook. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_int.h"
#include "core/base64.h"
#include "core/preview_bin.h"
#include "net/frame.h"
#include "net/ws_handshake.h"

#define JOB "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define TS "2026-11-28T20:00:00.123456Z"

/* ---- the fake server ---- */

typedef enum {
  ACT_TEXT,
  ACT_FRAGMENTS,
  ACT_BINARY,
  ACT_CLOSE,
  ACT_DROP
} act_kind_t;

typedef struct {
  act_kind_t kind;
  char* text; /* owned */
  size_t len;
  uint16_t code;
} act_t;

typedef struct {
  act_t acts[32];
  int count;
} conn_script_t;

typedef struct {
  int listen_fd;
  uint16_t port;
  conn_script_t conns[4];
  int conn_count;
  pthread_t thread;
  int served;
} fake_t;


static void send_all(int fd, const void* p, size_t n) {
  const char* c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return;
    }
    c += w;
    n -= (size_t) w;
  }
}


static void send_frame(int fd,
                       uint8_t opcode,
                       bool fin,
                       const void* p,
                       size_t n) {
  uint8_t hdr[NET_WS_MAX_HEADER_LEN];
  size_t h = net_ws_header_encode(hdr, opcode, n, NULL);
  if (!fin) {
    hdr[0] &= 0x7f;
  }
  send_all(fd, hdr, h);
  send_all(fd, p, n);
}


static void* fake_main(void* arg) {
  fake_t* f = arg;
  for (int c = 0; c < f->conn_count; c++) {
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) {
      break;
    }
    char req[8192];
    size_t got = 0;
    while (got < sizeof(req) - 1) {
      ssize_t r = recv(fd, req + got, sizeof(req) - 1 - got, 0);
      if (r <= 0) {
        break;
      }
      got += (size_t) r;
      req[got] = '\0';
      if (strstr(req, "\r\n\r\n") != NULL) {
        break;
      }
    }
    char key[64] = "";
    const char* k = strstr(req, "Sec-WebSocket-Key: ");
    if (k != NULL) {
      sscanf(k + 19, "%63[^\r]", key);
    }
    char accept_val[NET_WS_ACCEPT_LEN + 1];
    net_ws_accept_for_key(key, accept_val);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                     "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s"
                     "\r\n\r\n",
                     accept_val);
    send_all(fd, resp, (size_t) n);
    conn_script_t* s = &f->conns[c];
    bool dropped = false;
    for (int i = 0; i < s->count && !dropped; i++) {
      act_t* a = &s->acts[i];
      switch (a->kind) {
      case ACT_TEXT:
        send_frame(fd, NET_WS_OP_TEXT, true, a->text, a->len);
        break;
      case ACT_BINARY:
        send_frame(fd, NET_WS_OP_BINARY, true, a->text, a->len);
        break;
      case ACT_FRAGMENTS: {
        size_t part = a->len / 3 + 1;
        for (size_t off = 0; off < a->len; off += part) {
          size_t m = a->len - off < part ? a->len - off : part;
          send_frame(fd, off == 0 ? NET_WS_OP_TEXT : NET_WS_OP_CONT,
                     off + m == a->len, a->text + off, m);
        }
        break;
      }
      case ACT_CLOSE: {
        uint8_t frame[128];
        size_t len = net_ws_close_frame(frame, a->code, "bye");
        send_all(fd, frame, len);
        break;
      }
      case ACT_DROP:
        dropped = true;
        break;
      }
    }
    if (!dropped) {
      /* Wait for the client to close (its close frame, then EOF). */
      char buf[4096];
      while (recv(fd, buf, sizeof(buf), 0) > 0) {
      }
    }
    close(fd);
    f->served++;
  }
  return NULL;
}


static void fake_start(fake_t* f) {
  f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(f->listen_fd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(listen(f->listen_fd, 8), 0);
  socklen_t len = sizeof(a);
  getsockname(f->listen_fd, (struct sockaddr*) &a, &len);
  f->port = ntohs(a.sin_port);
  pthread_create(&f->thread, NULL, fake_main, f);
}


static void fake_stop(fake_t* f) {
  shutdown(f->listen_fd, SHUT_RDWR);
  pthread_join(f->thread, NULL);
  close(f->listen_fd);
  for (int c = 0; c < f->conn_count; c++) {
    for (int i = 0; i < f->conns[c].count; i++) {
      free(f->conns[c].acts[i].text);
    }
  }
}


static void add(fake_t* f,
                int conn,
                act_kind_t kind,
                char* text,
                uint16_t code) {
  conn_script_t* s = &f->conns[conn];
  if (conn + 1 > f->conn_count) {
    f->conn_count = conn + 1;
  }
  s->acts[s->count++] =
      (act_t){kind, text, text != NULL ? strlen(text) : 0, code};
}


/* Adds a binary message of `len` bytes (taken over). */
static void add_bytes(fake_t* f, int conn, uint8_t* bytes, size_t len) {
  add(f, conn, ACT_BINARY, NULL, 0);
  conn_script_t* s = &f->conns[conn];
  s->acts[s->count - 1].text = (char*) bytes;
  s->acts[s->count - 1].len = len;
}


/* A binary preview (raw or zstd) of 4x4x4 voxels of value v. */
static uint8_t* binary_preview(unsigned seq, core_encoding_t enc, uint8_t v,
                               bool corrupt, size_t* len) {
  uint8_t voxels[64];
  memset(voxels, v, sizeof(voxels));
  uint8_t payload[256];
  size_t n = sizeof(voxels);
  if (enc == CORE_ENC_ZSTD) {
    long z = core_zstd_compress(voxels, 64, payload, sizeof(payload), 1);
    cr_assert_gt(z, 0);
    n = (size_t) z;
    if (corrupt) {
      payload[n - 1] ^= 0x5a; /* breaks the frame's checksum or content */
      payload[n / 2] ^= 0xa5;
    }
  } else {
    memcpy(payload, voxels, n);
  }
  core_shape_t shape = {{4, 4, 4}};
  uint8_t* out = malloc(CORE_PREVIEW_BIN_HEAD_MAX + n);
  int head = core_preview_bin_head(JOB, seq, 1795896000123456LL, &shape, 1,
                                   enc, n, out, CORE_PREVIEW_BIN_HEAD_MAX);
  cr_assert_gt(head, 0);
  memcpy(out + head, payload, n);
  *len = (size_t) head + n;
  return out;
}


static char* msgf(const char* type, unsigned seq, const char* data) {
  char* s = NULL;
  cr_assert(asprintf(&s,
                     "{\"type\":\"%s\",\"job_id\":\"" JOB "\",\"seq\":%u,"
                     "\"timestamp\":\"" TS "\",\"data\":%s}",
                     type, seq, data) > 0);
  return s;
}


static char* connected_msg(unsigned last_seq,
                           const char* shape,
                           int scale,
                           const char* pshape) {
  char data[512];
  snprintf(data, sizeof(data),
           "{\"state\":\"running\",\"progress\":0.1,\"last_seq\":%u,"
           "\"volume\":{\"shape\":%s,\"voxel_size\":[1,1,1]},"
           "\"preview_shape\":%s,\"params\":{\"preview_scale\":%d,"
           "\"preview_hz\":1.0}}",
           last_seq, shape, pshape, scale);
  return msgf("connected", 0, data);
}


static char* progress_msg(unsigned seq, double p) {
  char data[256];
  snprintf(data, sizeof(data),
           "{\"progress\":%.2f,\"state\":\"running\",\"message\":\"m\","
           "\"eta_s\":3.5,\"elapsed_s\":1,\"previews_sent\":1}",
           p);
  return msgf("progress", seq, data);
}


/* A preview of `shape` (JSON text) whose payload is `n` bytes of value v,
 * or the literal `payload` when not NULL. */
static char* preview_msg(unsigned seq,
                         const char* shape,
                         size_t n,
                         uint8_t v,
                         const char* payload) {
  char* b64 = NULL;
  if (payload == NULL) {
    uint8_t* raw = malloc(n);
    memset(raw, v, n);
    b64 = malloc(core_base64_encoded_len(n) + 1);
    core_base64_encode(raw, n, b64);
    free(raw);
    payload = b64;
  }
  size_t cap = strlen(payload) + 512;
  char* data = malloc(cap);
  snprintf(data, cap,
           "{\"scale\":[1,1,1],\"shape\":%s,\"dtype\":\"uint8\","
           "\"payload\":\"%s\"}",
           shape, payload);
  char* m = msgf("preview", seq, data);
  free(data);
  free(b64);
  return m;
}


/* ---- the client side ---- */

typedef struct {
  int conn_events[4];
  int connected, reconnected;
  int progress;
  uint64_t progress_seqs[16];
  int previews;
  uint64_t preview_seqs[16];
  size_t preview_len[16];
  bool preview_ok;
  int finished;
  int errors[4];
  int closed;
  int closed_status;
  pthread_t cb_thread;
  bool wrong_thread;
} seen_t;

static void note_thread(seen_t* s) {
  if (!pthread_equal(pthread_self(), s->cb_thread)) {
    s->wrong_thread = true;
  }
}

static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  s->conn_events[ev->state]++;
}

static void on_connected(cm_sub_t* sub, const cm_connected_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  s->connected++;
  s->reconnected += ev->is_reconnect;
}

static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  s->progress_seqs[s->progress++ % 16] = ev->seq;
}

static void on_preview(cm_sub_t* sub, cm_preview_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  bool ok = ev->len == (size_t) ev->shape[0] * ev->shape[1] * ev->shape[2];
  for (size_t i = 0; ok && i < ev->len; i++) {
    ok = ev->voxels[i] == ev->voxels[0];
  }
  s->preview_ok = (s->previews == 0 || s->preview_ok) && ok;
  s->preview_len[s->previews % 16] = ev->len;
  s->preview_seqs[s->previews++ % 16] = ev->seq;
  if (s->previews == 1) {
    uint8_t* mine = ev->voxels; /* taking ownership is allowed */
    ev->voxels = NULL;
    cm_free(mine);
  }
}

static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* u) {
  (void) sub;
  (void) ev;
  seen_t* s = u;
  note_thread(s);
  s->finished++;
}

static void on_error(cm_sub_t* sub, const cm_sub_error_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  s->errors[ev->kind]++;
}

static void on_closed(cm_sub_t* sub, int status, void* u) {
  (void) sub;
  seen_t* s = u;
  note_thread(s);
  s->closed++;
  s->closed_status = status;
}

static const cm_sub_cbs_t cbs = {
    .on_state = on_state,
    .on_connected = on_connected,
    .on_progress = on_progress,
    .on_preview = on_preview,
    .on_finished = on_finished,
    .on_error = on_error,
    .on_closed = on_closed,
};


static cm_client_t* client_for(const fake_t* f, cm_client_options_t* o) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", f->port);
  o->server_url = url;
  o->reconnect_initial_ms = 20;
  o->reconnect_max_ms = 100;
  o->connect_timeout_ms = 20000;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(o, &c), 0);
  return c;
}


static void run_sub(fake_t* f, seen_t* seen, cm_client_options_t* o) {
  fake_start(f);
  cm_client_t* c = client_for(f, o);
  seen->cb_thread = pthread_self();
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start(c, JOB, &cbs, seen, &sub), 0);
  cr_assert_eq(seen->conn_events[CM_CONN_CONNECTING], 0,
               "no callback before cm_sub_start returns");
  cr_assert_eq(cm_client_run(c), 0);
  cm_client_free(c);
  fake_stop(f);
}


Test(client_sub,
     hostile_messages_are_reported_never_handed_over,
     .timeout = 60) {
  fake_t f = {0};
  add(&f, 0, ACT_TEXT, connected_msg(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  add(&f, 0, ACT_TEXT, strdup("{not json"), 0);
  add(&f, 0, ACT_TEXT, strdup("[1,2,3]"), 0);
  add(&f, 0, ACT_TEXT,
      preview_msg(1, "[4,4,4]", 0, 0,
                  "!!!!"
                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                  "AAAAAAAAAAAAAAAAAAAAAAAA"),
      0); /* bad base64 of the right length */
  add(&f, 0, ACT_TEXT, preview_msg(2, "[4,4,4]", 63, 1, NULL), 0); /* short */
  add(&f, 0, ACT_TEXT, preview_msg(3, "[4,4,4]", 65, 1, NULL), 0); /* long */
  add(&f, 0, ACT_TEXT, preview_msg(4, "[4096,4096,4096]", 64, 1, NULL), 0);
  add(&f, 0, ACT_TEXT, preview_msg(5, "[2,4,4]", 32, 1, NULL), 0); /* != vol */
  add(&f, 0, ACT_TEXT, preview_msg(6, "[4,4,4]", 64, 1, NULL), 0); /* valid */
  add(&f, 0, ACT_TEXT, msgf("frobnicate", 7, "{}"), 0);
  add(&f, 0, ACT_TEXT, progress_msg(8, 0.5), 0);
  add(&f, 0, ACT_TEXT, progress_msg(8, 0.5), 0);       /* duplicate */
  add(&f, 0, ACT_TEXT, progress_msg(9, 1.5), 0);       /* out of range */
  add(&f, 0, ACT_TEXT, msgf("progress", 10, "[]"), 0); /* data not object */
  add(&f, 0, ACT_BINARY, strdup("\x01\x02"), 0);
  add(&f, 0, ACT_FRAGMENTS, preview_msg(11, "[4,4,4]", 64, 2, NULL), 0);
  add(&f, 0, ACT_TEXT,
      msgf("completed", 12, "{\"state\":\"completed\",\"artifacts\":[]}"), 0);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.previews, 2, "previews %d", seen.previews);
  cr_assert_eq(seen.preview_seqs[0], 6);
  cr_assert_eq(seen.preview_seqs[1], 11);
  cr_assert(seen.preview_ok);
  cr_assert_eq(seen.progress, 1);
  cr_assert_eq(seen.errors[CM_SUB_ERR_UNKNOWN], 1);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 10, "invalid %d",
               seen.errors[CM_SUB_ERR_INVALID]);
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed, 1);
  cr_assert_eq(seen.closed_status, 0);
  cr_assert_eq(seen.conn_events[CM_CONN_RECONNECTING], 0);
}


Test(client_sub, binary_previews_are_decoded_and_checked, .timeout = 60) {
  fake_t f = {0};
  size_t len = 0;
  uint8_t* b;
  add(&f, 0, ACT_TEXT, connected_msg(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  b = binary_preview(1, CORE_ENC_RAW, 3, false, &len);
  add_bytes(&f, 0, b, len);
  b = binary_preview(2, CORE_ENC_ZSTD, 4, true, &len); /* corrupt zstd */
  add_bytes(&f, 0, b, len);
  b = binary_preview(3, CORE_ENC_ZSTD, 5, false, &len);
  add_bytes(&f, 0, b, len);
  b = binary_preview(3, CORE_ENC_RAW, 5, false, &len); /* replayed seq */
  add_bytes(&f, 0, b, len);
  b = binary_preview(4, CORE_ENC_RAW, 6, false, &len);
  add_bytes(&f, 0, b, len - 1); /* truncated */
  add(&f, 0, ACT_TEXT, preview_msg(5, "[4,4,4]", 64, 7, NULL), 0); /* text */
  add(&f, 0, ACT_TEXT,
      msgf("completed", 6, "{\"state\":\"completed\",\"artifacts\":[]}"), 0);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.preview_encoding = CM_ENCODING_ZSTD;
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.previews, 3, "previews %d", seen.previews);
  cr_assert_eq(seen.preview_seqs[0], 1);
  cr_assert_eq(seen.preview_seqs[1], 3);
  cr_assert_eq(seen.preview_seqs[2], 5);
  cr_assert(seen.preview_ok);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 2, "invalid %d",
               seen.errors[CM_SUB_ERR_INVALID]);
  cr_assert_eq(seen.finished, 1);
}


Test(client_sub, reconnects_and_drops_replays_by_seq, .timeout = 60) {
  fake_t f = {0};
  add(&f, 0, ACT_TEXT, connected_msg(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  add(&f, 0, ACT_TEXT, progress_msg(1, 0.2), 0);
  add(&f, 0, ACT_TEXT, preview_msg(2, "[2,2,2]", 8, 1, NULL), 0);
  add(&f, 0, ACT_DROP, NULL, 0);
  add(&f, 1, ACT_CLOSE, NULL, 1001); /* going away, before `connected` */
  add(&f, 2, ACT_TEXT, connected_msg(3, "[2,2,2]", 1, "[2,2,2]"), 0);
  add(&f, 2, ACT_TEXT, preview_msg(2, "[2,2,2]", 8, 1, NULL), 0); /* replay */
  add(&f, 2, ACT_TEXT, progress_msg(1, 0.2), 0);                  /* replay */
  add(&f, 2, ACT_TEXT, progress_msg(4, 0.6), 0);
  add(&f, 2, ACT_TEXT,
      msgf("error", 5,
           "{\"code\":\"interrupted\",\"message\":\"stopped\","
           "\"hint\":null,\"retryable\":true}"),
      0);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.connected, 2);
  cr_assert_eq(seen.reconnected, 1);
  cr_assert_eq(seen.conn_events[CM_CONN_RECONNECTING], 2);
  cr_assert_eq(seen.conn_events[CM_CONN_CLOSED], 1);
  cr_assert_eq(seen.progress, 2);
  cr_assert_eq(seen.progress_seqs[0], 1);
  cr_assert_eq(seen.progress_seqs[1], 4);
  cr_assert_eq(seen.previews, 1);
  cr_assert_eq(seen.errors[CM_SUB_ERR_JOB], 1);
  cr_assert_eq(seen.closed_status, 0);
}


Test(client_sub, unknown_job_close_is_final, .timeout = 60) {
  fake_t f = {0};
  add(&f, 0, ACT_CLOSE, NULL, 4404);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.closed_status, CM_ENOTFOUND);
  cr_assert_eq(seen.conn_events[CM_CONN_RECONNECTING], 0);
  cr_assert_eq(seen.errors[CM_SUB_ERR_SERVER], 1);
}


Test(client_sub, gives_up_after_max_attempts, .timeout = 60) {
  fake_t f = {0};
  for (int c = 0; c < 3; c++) {
    add(&f, c, ACT_DROP, NULL, 0);
  }
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.max_reconnect_attempts = 2;
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.closed_status, CM_EGAVEUP);
  cr_assert_eq(seen.conn_events[CM_CONN_RECONNECTING], 2);
  cr_assert_eq(seen.conn_events[CM_CONN_CONNECTING], 3);
}


Test(client_sub, large_fragmented_preview_arrives_whole, .timeout = 120) {
  fake_t f = {0};
  /* 256^3 voxels: a ~22 MB message in three fragments. */
  add(&f, 0, ACT_TEXT, connected_msg(0, "[256,256,256]", 1, "[256,256,256]"),
      0);
  add(&f, 0, ACT_FRAGMENTS,
      preview_msg(1, "[256,256,256]", (size_t) 256 * 256 * 256, 7, NULL), 0);
  add(&f, 0, ACT_TEXT,
      msgf("cancelled", 2, "{\"state\":\"cancelled\",\"progress\":0.5}"), 0);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.previews, 1);
  cr_assert_eq(seen.preview_len[0], (size_t) 256 * 256 * 256);
  cr_assert(seen.preview_ok);
  cr_assert_eq(seen.finished, 1);
}


Test(client_sub, message_over_the_limit_is_refused, .timeout = 60) {
  fake_t f = {0};
  add(&f, 0, ACT_TEXT, connected_msg(0, "[16,16,16]", 1, "[16,16,16]"), 0);
  add(&f, 0, ACT_TEXT, preview_msg(1, "[16,16,16]", 4096, 1, NULL), 0);
  add(&f, 1, ACT_CLOSE, NULL, 4404);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.max_message_bytes = 2048;
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.previews, 0);
  cr_assert_eq(seen.conn_events[CM_CONN_RECONNECTING], 1);
  cr_assert_eq(seen.closed_status, CM_ENOTFOUND);
}


/* ---- own thread + dispatch hook ---- */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  void (*fns[256])(void*);
  void* args[256];
  int head, tail;
} mailbox_t;

static void dispatch(void (*fn)(void*), void* arg, void* user) {
  mailbox_t* m = user;
  pthread_mutex_lock(&m->mu);
  m->fns[m->tail % 256] = fn;
  m->args[m->tail % 256] = arg;
  m->tail++;
  pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
}


Test(client_sub, own_thread_delivers_through_dispatch, .timeout = 60) {
  fake_t f = {0};
  add(&f, 0, ACT_TEXT, connected_msg(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  add(&f, 0, ACT_TEXT, progress_msg(1, 0.2), 0);
  add(&f, 0, ACT_TEXT,
      msgf("completed", 2, "{\"state\":\"completed\",\"artifacts\":[]}"), 0);
  fake_start(&f);
  static mailbox_t m = {.mu = PTHREAD_MUTEX_INITIALIZER,
                        .cv = PTHREAD_COND_INITIALIZER};
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.dispatch = dispatch;
  o.dispatch_data = &m;
  cm_client_t* c = client_for(&f, &o);
  cr_assert_eq(cm_client_start_thread(c), 0);
  seen_t seen = {0};
  seen.cb_thread = pthread_self();
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start(c, JOB, &cbs, &seen, &sub), 0);
  while (seen.closed == 0) {
    pthread_mutex_lock(&m.mu);
    while (m.head == m.tail) {
      pthread_cond_wait(&m.cv, &m.mu);
    }
    void (*fn)(void*) = m.fns[m.head % 256];
    void* arg = m.args[m.head % 256];
    m.head++;
    pthread_mutex_unlock(&m.mu);
    fn(arg);
  }
  cm_client_free(c);
  fake_stop(&f);
  cr_assert(!seen.wrong_thread, "callbacks ran on the dispatch thread");
  cr_assert_eq(seen.progress, 1);
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed_status, 0);
}


Test(client_url, parses_and_refuses) {
  char host[64], prefix[64];
  uint16_t port;
  cr_assert_eq(client_parse_url("http://127.0.0.1:8123/api/", host,
                                sizeof(host), &port, prefix, sizeof(prefix)),
               0);
  cr_assert_str_eq(host, "127.0.0.1");
  cr_assert_eq(port, 8123);
  cr_assert_str_eq(prefix, "/api");
  cr_assert_eq(client_parse_url("localhost", host, sizeof(host), &port, prefix,
                                sizeof(prefix)),
               0);
  cr_assert_eq(port, 80);
  cr_assert_eq(client_parse_url("http://[::1]:9000", host, sizeof(host), &port,
                                prefix, sizeof(prefix)),
               0);
  cr_assert_str_eq(host, "::1");
  cr_assert_eq(client_parse_url("https://x", host, sizeof(host), &port, prefix,
                                sizeof(prefix)),
               CM_ETLS);
  cr_assert_eq(client_parse_url("ftp://x", host, sizeof(host), &port, prefix,
                                sizeof(prefix)),
               CM_EBADURL);
  cr_assert_eq(client_parse_url("http://x:99999", host, sizeof(host), &port,
                                prefix, sizeof(prefix)),
               CM_EBADURL);
  cr_assert_eq(client_parse_url("http://", host, sizeof(host), &port, prefix,
                                sizeof(prefix)),
               CM_EBADURL);
}


Test(client_preview, decode_checks_sizes) {
  char* ok = preview_msg(3, "[2,3,4]", 24, 9, NULL);
  cm_preview_t p;
  char err[256];
  uint32_t vol[3] = {2, 3, 4};
  cr_assert_eq(cm_preview_decode(ok, strlen(ok), vol, &p, err, sizeof(err)), 0);
  cr_assert_eq(p.len, 24);
  cr_assert_eq(p.voxels[5], 9);
  cr_assert_eq(p.seq, 3);
  cm_free(p.voxels);
  uint32_t other[3] = {4, 3, 4};
  cr_assert_eq(cm_preview_decode(ok, strlen(ok), other, &p, err, sizeof(err)),
               CM_EPROTO);
  free(ok);
  char* bad = preview_msg(3, "[2,3,4]", 23, 9, NULL);
  cr_assert_eq(cm_preview_decode(bad, strlen(bad), NULL, &p, err, sizeof(err)),
               CM_EPROTO);
  free(bad);
}
