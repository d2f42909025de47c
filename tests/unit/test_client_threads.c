/* test_client_threads.c: libcryomamba's subscription calls from threads
 * other than the client's: cm_sub_get_stats() while messages arrive gives
 * consistent, growing snapshots. Own-thread clients without a dispatch
 * hook, so callbacks run on the client thread while the test's threads
 * call in. Every shared test variable is an atomic or behind a mutex, so
 * the file is meaningful under ThreadSanitizer as well as ASan. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "fake_ws.h"

/* A client on its own thread, reconnecting fast, for fake `f`. */
static cm_client_t* thread_client(const fake_t* f) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", f->port);
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = url;
  o.reconnect_initial_ms = 20;
  o.reconnect_max_ms = 100;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  cr_assert_eq(cm_client_start_thread(c), 0);
  return c;
}


/* ---- stats read from another thread ---- */

#define STATS_PROGRESS 400

typedef struct {
  cm_sub_t* sub;
  atomic_bool is_done;
  pthread_t reader;
  /* The reader's findings, read after it was joined. */
  uint64_t reads;
  int inconsistent;
  int went_back;
  /* On the client thread, read after cm_client_free. */
  cm_sub_stats_t final;
  int closed_status;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool is_closed;
  bool is_reader_joined; /* client thread, before on_closed */
} stats_case_t;


static void* stats_reader(void* arg) {
  stats_case_t* t = arg;
  cm_sub_stats_t prev;
  memset(&prev, 0, sizeof(prev));
  while (!atomic_load(&t->is_done)) {
    cm_sub_stats_t s;
    cm_sub_get_stats(t->sub, &s);
    t->reads++;
    /* The connected message and each progress one are counted in
     * `messages` before their seq becomes last_seq, and each is far over
     * 100 bytes, counted before it is parsed: a snapshot taken halfway
     * through an update breaks one of these. */
    if ((s.last_seq > 0 && s.messages < s.last_seq + 1) ||
        s.bytes < 100 * s.messages) {
      t->inconsistent++;
    }
    if (s.messages < prev.messages || s.bytes < prev.bytes ||
        s.last_seq < prev.last_seq) {
      t->went_back++;
    }
    prev = s;
  }
  return NULL;
}


static void stats_on_finished(cm_sub_t* sub,
                              const cm_finished_t* ev,
                              void* user) {
  (void) sub;
  (void) ev;
  stats_case_t* t = user;
  /* Stop and join the reader here, on the client thread: it has read its
   * last snapshot before the sub can go away. */
  atomic_store(&t->is_done, true);
  pthread_join(t->reader, NULL);
  t->is_reader_joined = true;
}


static void stats_on_closed(cm_sub_t* sub, int status, void* user) {
  stats_case_t* t = user;
  cm_sub_get_stats(sub, &t->final);
  pthread_mutex_lock(&t->mu);
  t->closed_status = status;
  t->is_closed = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
}


Test(client_threads, stats_read_while_messages_arrive, .timeout = 60) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  for (unsigned i = 1; i <= STATS_PROGRESS; i++) {
    fake_add(&f, 0, ACT_TEXT, fake_progress(i, 0.5), 0);
  }
  fake_add(&f, 0, ACT_TEXT, fake_completed(STATS_PROGRESS + 1), 0);
  fake_start(&f);
  cm_client_t* c = thread_client(&f);
  stats_case_t t = {.mu = PTHREAD_MUTEX_INITIALIZER,
                    .cv = PTHREAD_COND_INITIALIZER};
  atomic_init(&t.is_done, false);
  static const cm_sub_cbs_t cbs = {.on_finished = stats_on_finished,
                                   .on_closed = stats_on_closed};
  cr_assert_eq(cm_sub_start(c, FAKE_JOB, &cbs, &t, &t.sub), 0);
  cr_assert_eq(pthread_create(&t.reader, NULL, stats_reader, &t), 0);
  pthread_mutex_lock(&t.mu);
  while (!t.is_closed) {
    pthread_cond_wait(&t.cv, &t.mu);
  }
  pthread_mutex_unlock(&t.mu);
  if (!t.is_reader_joined) { /* no on_finished: fail below, do not hang */
    atomic_store(&t.is_done, true);
    pthread_join(t.reader, NULL);
  }
  cm_client_free(c);
  fake_stop(&f);
  cr_assert_eq(t.closed_status, 0);
  cr_assert_gt(t.reads, 0);
  cr_assert_eq(t.inconsistent, 0, "%d torn snapshots of %llu", t.inconsistent,
               (unsigned long long) t.reads);
  cr_assert_eq(t.went_back, 0);
  cr_assert_eq(t.final.messages, STATS_PROGRESS + 2);
  cr_assert_eq(t.final.last_seq, STATS_PROGRESS + 1);
  cr_assert_eq(t.final.duplicates, 0);
}
