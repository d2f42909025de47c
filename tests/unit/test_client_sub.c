/* test_client_sub.c: libcryomamba's subscription against a scripted fake
 * server (tests/support/fake_ws.c): hostile messages (invalid JSON, bad
 * base64, wrong sizes, huge shapes, shapes that disagree with the volume,
 * unknown types, binary frames) are reported and never handed over;
 * fragmented and large (tens of MB) messages arrive whole (those over the
 * limit: test_client_sizes.c); after a dropped connection the sub
 * reconnects and drops replays by seq; fatal close codes end it; own-thread
 * mode delivers through the dispatch hook. */
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
#include "fake_ws.h"

#define JOB FAKE_JOB

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
  int errors[8]; /* by cm_sub_err_kind_t */
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
  cr_assert_eq(seen->closed, 1, "the run ends after on_closed");
  cm_sub_free(sub);
  cm_client_free(c);
  fake_stop(f);
}


Test(client_sub,
     hostile_messages_are_reported_never_handed_over,
     .timeout = 60) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  fake_add(&f, 0, ACT_TEXT, strdup("{not json"), 0);
  fake_add(&f, 0, ACT_TEXT, strdup("[1,2,3]"), 0);
  fake_add(&f, 0, ACT_TEXT,
           fake_preview(
               1, "[4,4,4]", 0, 0,
               "!!!!"
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
               "AAAAAAAAAAAAAAAAAAAAAAAA"),
           0); /* bad base64 of the right length */
  fake_add(&f, 0, ACT_TEXT, fake_preview(2, "[4,4,4]", 63, 1, NULL),
           0); /* short */
  fake_add(&f, 0, ACT_TEXT, fake_preview(3, "[4,4,4]", 65, 1, NULL),
           0); /* long */
  fake_add(&f, 0, ACT_TEXT, fake_preview(4, "[4096,4096,4096]", 64, 1, NULL),
           0);
  fake_add(&f, 0, ACT_TEXT, fake_preview(5, "[2,4,4]", 32, 1, NULL),
           0); /* != vol */
  fake_add(&f, 0, ACT_TEXT, fake_preview(6, "[4,4,4]", 64, 1, NULL),
           0); /* valid */
  fake_add(&f, 0, ACT_TEXT, fake_msg("frobnicate", 7, "{}"), 0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(8, 0.5), 0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(8, 0.5), 0); /* duplicate */
  fake_add(&f, 0, ACT_TEXT, fake_progress(9, 1.5), 0); /* out of range */
  fake_add(&f, 0, ACT_TEXT, fake_msg("progress", 10, "[]"),
           0); /* data not object */
  fake_add(&f, 0, ACT_BINARY, strdup("\x01\x02"), 0);
  fake_add(&f, 0, ACT_FRAGMENTS, fake_preview(11, "[4,4,4]", 64, 2, NULL), 0);
  fake_add(
      &f, 0, ACT_TEXT,
      fake_msg("completed", 12, "{\"state\":\"completed\",\"artifacts\":[]}"),
      0);
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
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  b = fake_binary_preview(1, CORE_ENC_RAW, 3, false, &len);
  fake_add_bytes(&f, 0, b, len);
  b = fake_binary_preview(2, CORE_ENC_ZSTD, 4, true, &len); /* corrupt zstd */
  fake_add_bytes(&f, 0, b, len);
  b = fake_binary_preview(3, CORE_ENC_ZSTD, 5, false, &len);
  fake_add_bytes(&f, 0, b, len);
  b = fake_binary_preview(3, CORE_ENC_RAW, 5, false, &len); /* replayed seq */
  fake_add_bytes(&f, 0, b, len);
  b = fake_binary_preview(4, CORE_ENC_RAW, 6, false, &len);
  fake_add_bytes(&f, 0, b, len - 1); /* truncated */
  fake_add(&f, 0, ACT_TEXT, fake_preview(5, "[4,4,4]", 64, 7, NULL),
           0); /* text */
  fake_add(
      &f, 0, ACT_TEXT,
      fake_msg("completed", 6, "{\"state\":\"completed\",\"artifacts\":[]}"),
      0);
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
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(1, 0.2), 0);
  fake_add(&f, 0, ACT_TEXT, fake_preview(2, "[2,2,2]", 8, 1, NULL), 0);
  fake_add(&f, 0, ACT_DROP, NULL, 0);
  fake_add(&f, 1, ACT_CLOSE, NULL, 1001); /* going away, before `connected` */
  fake_add(&f, 2, ACT_TEXT, fake_connected(3, "[2,2,2]", 1, "[2,2,2]"), 0);
  fake_add(&f, 2, ACT_TEXT, fake_preview(2, "[2,2,2]", 8, 1, NULL),
           0);                                         /* replay */
  fake_add(&f, 2, ACT_TEXT, fake_progress(1, 0.2), 0); /* replay */
  fake_add(&f, 2, ACT_TEXT, fake_progress(4, 0.6), 0);
  fake_add(&f, 2, ACT_TEXT,
           fake_msg("error", 5,
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
  fake_add(&f, 0, ACT_CLOSE, NULL, 4404);
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
    fake_add(&f, c, ACT_DROP, NULL, 0);
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
  fake_add(&f, 0, ACT_TEXT,
           fake_connected(0, "[256,256,256]", 1, "[256,256,256]"), 0);
  fake_add(&f, 0, ACT_FRAGMENTS,
           fake_preview(1, "[256,256,256]", (size_t) 256 * 256 * 256, 7, NULL),
           0);
  fake_add(
      &f, 0, ACT_TEXT,
      fake_msg("cancelled", 2, "{\"state\":\"cancelled\",\"progress\":0.5}"),
      0);
  seen_t seen = {0};
  cm_client_options_t o;
  cm_client_options_init(&o);
  run_sub(&f, &seen, &o);
  cr_assert_eq(seen.previews, 1);
  cr_assert_eq(seen.preview_len[0], (size_t) 256 * 256 * 256);
  cr_assert(seen.preview_ok);
  cr_assert_eq(seen.finished, 1);
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
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(1, 0.2), 0);
  fake_add(
      &f, 0, ACT_TEXT,
      fake_msg("completed", 2, "{\"state\":\"completed\",\"artifacts\":[]}"),
      0);
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
  cm_sub_free(sub);
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
  bool tls = true;
  cr_assert_eq(
      client_parse_url("http://127.0.0.1:8123/api/", host, sizeof(host), &port,
                       prefix, sizeof(prefix), &tls),
      0);
  cr_assert_str_eq(host, "127.0.0.1");
  cr_assert_eq(port, 8123);
  cr_assert_str_eq(prefix, "/api");
  cr_assert_eq(client_parse_url("localhost", host, sizeof(host), &port, prefix,
                                sizeof(prefix), &tls),
               0);
  cr_assert_eq(port, 80);
  cr_assert_eq(client_parse_url("http://[::1]:9000", host, sizeof(host), &port,
                                prefix, sizeof(prefix), &tls),
               0);
  cr_assert_str_eq(host, "::1");
  cr_assert(!tls);
  cr_assert_eq(client_parse_url("https://x", host, sizeof(host), &port, prefix,
                                sizeof(prefix), &tls),
               0);
  cr_assert(tls);
  cr_assert_eq(port, 443);
  cr_assert_eq(client_parse_url("wss://[::1]:8443/p", host, sizeof(host), &port,
                                prefix, sizeof(prefix), &tls),
               0);
  cr_assert(tls);
  cr_assert_eq(port, 8443);
  cr_assert_str_eq(host, "::1");
  cr_assert_str_eq(prefix, "/p");
  cr_assert_eq(client_parse_url("ftp://x", host, sizeof(host), &port, prefix,
                                sizeof(prefix), &tls),
               CM_EBADURL);
  cr_assert_eq(client_parse_url("http://x:99999", host, sizeof(host), &port,
                                prefix, sizeof(prefix), &tls),
               CM_EBADURL);
  cr_assert_eq(client_parse_url("http://", host, sizeof(host), &port, prefix,
                                sizeof(prefix), &tls),
               CM_EBADURL);
}


Test(client_preview, decode_checks_sizes) {
  char* ok = fake_preview(3, "[2,3,4]", 24, 9, NULL);
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
  char* bad = fake_preview(3, "[2,3,4]", 23, 9, NULL);
  cr_assert_eq(cm_preview_decode(bad, strlen(bad), NULL, &p, err, sizeof(err)),
               CM_EPROTO);
  free(bad);
}
