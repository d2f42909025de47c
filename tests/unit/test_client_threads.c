/* test_client_threads.c: libcryomamba's subscription calls from threads
 * other than the client's: cm_sub_get_stats() while messages arrive gives
 * consistent, growing snapshots; cm_sub_close() from other threads racing
 * the library's own close, and after on_closed or cm_client_free(), is
 * safe until cm_sub_free(). Own-thread clients without a dispatch
 * hook, so callbacks run on the client thread while the test's threads
 * call in. Every shared test variable is an atomic or behind a mutex, so
 * the file is meaningful under ThreadSanitizer as well as ASan. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
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
  cm_sub_free(t.sub);
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


/* ---- cm_sub_close from other threads, racing the library's own close ---- */

#define RACE_SUBS 24

typedef struct race_s race_t;

typedef struct {
  race_t* race;
  int index;
  cm_sub_t* sub;
  pthread_t closer;
  atomic_bool is_finishing; /* on_finished has begun */
  atomic_int closed;        /* on_closed calls */
  atomic_int status;
} race_rec_t;

struct race_s {
  race_rec_t recs[RACE_SUBS];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int closed; /* under mu */
};


/* Even closers wait until the library is ending the sub by itself (its
 * terminal message is being delivered) and close it then; odd ones close
 * it at once, while it is still starting or connecting. */
static void* race_closer(void* arg) {
  race_rec_t* r = arg;
  if (r->index % 2 == 0) {
    while (!atomic_load(&r->is_finishing)) {
      sched_yield();
    }
  }
  cm_sub_close(r->sub);
  cm_sub_close(r->sub); /* idempotent */
  return NULL;
}


static void race_on_finished(cm_sub_t* sub,
                             const cm_finished_t* ev,
                             void* user) {
  (void) sub;
  (void) ev;
  race_rec_t* r = user;
  atomic_store(&r->is_finishing, true);
}


static void race_on_closed(cm_sub_t* sub, int status, void* user) {
  race_rec_t* r = user;
  cr_assert_eq(sub, r->sub);
  atomic_store(&r->status, status);
  atomic_fetch_add(&r->closed, 1);
  pthread_mutex_lock(&r->race->mu);
  r->race->closed++;
  pthread_cond_signal(&r->race->cv);
  pthread_mutex_unlock(&r->race->mu);
}


Test(client_threads,
     close_from_other_threads_races_the_library_close,
     .timeout = 60) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, fake_connected(0, "[2,2,2]", 1, "[2,2,2]"), 0);
  fake_add(&f, 0, ACT_TEXT, fake_completed(1), 0);
  f.serve_count = RACE_SUBS;
  fake_start(&f);
  cm_client_t* c = thread_client(&f);
  static race_t race = {.mu = PTHREAD_MUTEX_INITIALIZER,
                        .cv = PTHREAD_COND_INITIALIZER};
  static const cm_sub_cbs_t cbs = {.on_finished = race_on_finished,
                                   .on_closed = race_on_closed};
  for (int i = 0; i < RACE_SUBS; i++) {
    race_rec_t* r = &race.recs[i];
    r->race = &race;
    r->index = i;
    atomic_init(&r->is_finishing, false);
    atomic_init(&r->closed, 0);
    atomic_init(&r->status, -1);
    cr_assert_eq(cm_sub_start(c, FAKE_JOB, &cbs, r, &r->sub), 0);
    cr_assert_eq(pthread_create(&r->closer, NULL, race_closer, r), 0);
  }
  pthread_mutex_lock(&race.mu);
  while (race.closed < RACE_SUBS) {
    pthread_cond_wait(&race.cv, &race.mu);
  }
  pthread_mutex_unlock(&race.mu);
  for (int i = 0; i < RACE_SUBS; i++) {
    pthread_join(race.recs[i].closer, NULL);
    /* After on_closed, before the free: still allowed, still a no-op. */
    cm_sub_close(race.recs[i].sub);
  }
  cm_client_free(c);
  for (int i = 0; i < RACE_SUBS; i++) {
    cm_sub_close(race.recs[i].sub); /* the client is gone: still allowed */
    cr_assert_eq(cm_sub_job_id(race.recs[i].sub)[0], FAKE_JOB[0]);
    cm_sub_free(race.recs[i].sub);
  }
  fake_stop(&f);
  for (int i = 0; i < RACE_SUBS; i++) {
    cr_assert_eq(atomic_load(&race.recs[i].closed), 1, "sub %d: on_closed %d",
                 i, atomic_load(&race.recs[i].closed));
    cr_assert_eq(atomic_load(&race.recs[i].status), 0);
  }
}
