/* test_client_sizes.c: a message over the client's max_message_bytes is
 * skipped as it streams, never held whole: reported (CM_SUB_ERR_SKIPPED,
 * with the seq its first bytes show) and counted (previews_skipped), and
 * the subscription goes on without reconnecting, so the messages after it,
 * the terminal one included, still arrive. Caller's-thread clients against
 * the fake server of tests/support/fake_ws.c; the run ends with on_closed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "client/client_int.h"
#include "fake_ws.h"

typedef struct {
  int reconnecting;
  int previews;
  uint64_t preview_seq;
  int progress;
  int finished;
  int skipped;
  uint64_t skipped_seqs[4];
  char skipped_msg[256];
  int other_errors;
  int closed;
  int status;
  cm_sub_stats_t stats; /* at on_closed */
} sizes_seen_t;

static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* u) {
  (void) sub;
  sizes_seen_t* s = u;
  s->reconnecting += ev->state == CM_CONN_RECONNECTING;
}

static void on_preview(cm_sub_t* sub, cm_preview_t* ev, void* u) {
  (void) sub;
  sizes_seen_t* s = u;
  s->previews++;
  s->preview_seq = ev->seq;
}

static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* u) {
  (void) sub;
  (void) ev;
  sizes_seen_t* s = u;
  s->progress++;
}

static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* u) {
  (void) sub;
  (void) ev;
  sizes_seen_t* s = u;
  s->finished++;
}

static void on_error(cm_sub_t* sub, const cm_sub_error_t* ev, void* u) {
  (void) sub;
  sizes_seen_t* s = u;
  if (ev->kind != CM_SUB_ERR_SKIPPED) {
    s->other_errors++;
    return;
  }
  s->skipped_seqs[s->skipped++ % 4] = ev->seq;
  snprintf(s->skipped_msg, sizeof(s->skipped_msg), "%s", ev->message);
}

static void on_closed(cm_sub_t* sub, int status, void* u) {
  sizes_seen_t* s = u;
  s->closed++;
  s->status = status;
  cm_sub_get_stats(sub, &s->stats);
  cm_sub_free(sub);
}


static sizes_seen_t run(fake_t* f, uint64_t max_message_bytes) {
  fake_start(f);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", f->port);
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = url;
  o.reconnect_initial_ms = 20;
  o.max_message_bytes = max_message_bytes;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  static const cm_sub_cbs_t cbs = {
      .on_state = on_state,
      .on_progress = on_progress,
      .on_preview = on_preview,
      .on_finished = on_finished,
      .on_error = on_error,
      .on_closed = on_closed,
  };
  sizes_seen_t s = {0};
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start(c, FAKE_JOB, &cbs, &s, &sub), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cm_client_free(c);
  fake_stop(f);
  cr_assert_eq(s.closed, 1);
  return s;
}


Test(client_sizes,
     messages_over_the_limit_are_skipped_and_the_end_arrives,
     .timeout = 10) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[8,8,8]", 1, "[8,8,8]"), 0);
  fake_add(&f, 0, ACT_TEXT, fake_preview(1, "[8,8,8]", 512, 1, NULL), 0);
  /* ~5.6 kB: over the limit in its only frame, then in its second one. */
  fake_add(&f, 0, ACT_TEXT, fake_preview(2, "[8,8,8]", 4096, 1, NULL), 0);
  fake_add(&f, 0, ACT_FRAGMENTS, fake_preview(3, "[8,8,8]", 4096, 1, NULL), 0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(4, 0.9), 0);
  fake_add(&f, 0, ACT_TEXT, fake_completed(5), 0);
  sizes_seen_t s = run(&f, 2048);
  cr_assert_eq(s.previews, 1);
  cr_assert_eq(s.preview_seq, 1);
  cr_assert_eq(s.skipped, 2);
  cr_assert_eq(s.skipped_seqs[0], 2);
  cr_assert_eq(s.skipped_seqs[1], 3);
  cr_assert(strstr(s.skipped_msg, "preview seq 3") != NULL, "%s",
            s.skipped_msg);
  cr_assert_eq(s.other_errors, 0);
  cr_assert_eq(s.progress, 1);
  cr_assert_eq(s.finished, 1);
  cr_assert_eq(s.status, 0);
  cr_assert_eq(s.reconnecting, 0, "no reconnect for a large message");
  cr_assert_eq(s.stats.previews_skipped, 2);
  cr_assert_eq(s.stats.last_seq, 5);
}


Test(client_sizes, binary_message_over_the_limit_is_skipped, .timeout = 10) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  /* A binary preview's layout: a 4-byte envelope length, the envelope,
   * then 4000 payload bytes, never looked at. */
  static const char env[] =
      "{\"type\":\"preview\",\"job_id\":\"" FAKE_JOB "\",\"seq\":7}";
  size_t n = 4 + sizeof(env) - 1 + 4000;
  uint8_t* b = calloc(1, n);
  cr_assert_not_null(b);
  b[3] = (uint8_t) (sizeof(env) - 1);
  memcpy(b + 4, env, sizeof(env) - 1);
  fake_add_bytes(&f, 0, b, n);
  fake_add(&f, 0, ACT_TEXT, fake_completed(8), 0);
  sizes_seen_t s = run(&f, 1024);
  cr_assert_eq(s.skipped, 1);
  cr_assert_eq(s.skipped_seqs[0], 7);
  cr_assert_eq(s.finished, 1);
  cr_assert_eq(s.reconnecting, 0);
  cr_assert_eq(s.stats.previews_skipped, 1);
}


static long max_rss_kib(void) {
  struct rusage ru;
  cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_maxrss;
}


Test(client_sizes, huge_message_streams_through_unheld, .timeout = 60) {
  /* 256 MiB against a 1 MiB limit, in 16 MiB frames: had it been gathered
   * (as it would be under a 1 GiB limit) the peak memory would show it. */
  const uint64_t total = (uint64_t) 256 << 20;
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  fake_add_big_preview(&f, 0, 1, total, (uint64_t) 16 << 20);
  fake_add(&f, 0, ACT_TEXT, fake_completed(2), 0);
  long before_kib = max_rss_kib();
  sizes_seen_t s = run(&f, (uint64_t) 1 << 20);
  long grew_mib = (max_rss_kib() - before_kib) / 1024;
  cr_assert_eq(s.skipped, 1);
  cr_assert_eq(s.skipped_seqs[0], 1);
  cr_assert_eq(s.finished, 1);
  cr_assert_eq(s.reconnecting, 0);
  cr_assert_geq(s.stats.bytes, total);
  cr_assert_lt(grew_mib, 64, "peak memory grew by %ld MiB", grew_mib);
}
