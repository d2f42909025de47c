/* seg_driver.c: the pthread driver of seg_driver.h. Each thread owns one
 * scratch and claims window indices from an atomic counter until none is
 * left; the first error stops the others at their next claim. */
#include "seg_driver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  const core_seg_input_t* in;
  const core_seg_params_t* p;
  const core_seg_stats_t* st;
  const core_seg_plan_t* plan;
  const uint64_t* order; /* plan.windows indices */
  uint8_t* mask;
  atomic_uint_fast64_t next;
  atomic_int err;
} shared_t;


static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static uint64_t splitmix(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}


static void* worker(void* arg) {
  shared_t* sh = arg;
  core_seg_scratch_t* s = NULL;
  int err = core_seg_scratch_new(sh->plan, &s);
  while (err == 0 && atomic_load(&sh->err) == 0) {
    uint64_t i = atomic_fetch_add(&sh->next, 1);
    if (i >= sh->plan->windows) {
      break;
    }
    core_seg_window_t w;
    core_seg_plan_window(sh->plan, sh->order[i], &w);
    err = core_seg_window(sh->in, sh->p, sh->st, sh->plan, &w, s, sh->mask);
  }
  if (err != 0) {
    int zero = 0;
    atomic_compare_exchange_strong(&sh->err, &zero, err);
  }
  core_seg_scratch_free(s);
  return NULL;
}


int seg_driver_run(const core_seg_input_t* in,
                   const core_seg_params_t* p,
                   unsigned threads,
                   uint64_t shuffle_seed,
                   uint8_t* mask,
                   core_seg_summary_t* sum,
                   seg_driver_times_t* times) {
  seg_driver_times_t t = {0, 0, 0};
  core_seg_stats_t st;
  core_seg_plan_t plan;
  double t0 = now_s();
  int err = core_seg_stats(in, p, &st);
  if (err == 0) {
    err = core_seg_plan_init(&plan, &in->shape, p);
  }
  if (err != 0) {
    return err;
  }
  double t1 = now_s();
  t.stats_s = t1 - t0;
  uint64_t* order = malloc(plan.windows * sizeof(uint64_t));
  pthread_t* tids = calloc(threads ? threads : 1, sizeof(pthread_t));
  if (order == NULL || tids == NULL || threads == 0) {
    free(order);
    free(tids);
    return threads == 0 ? -EINVAL : -ENOMEM;
  }
  for (uint64_t i = 0; i < plan.windows; i++) {
    order[i] = i;
  }
  for (uint64_t i = plan.windows; shuffle_seed != 0 && i > 1; i--) {
    uint64_t j = splitmix(&shuffle_seed) % i;
    uint64_t x = order[i - 1];
    order[i - 1] = order[j];
    order[j] = x;
  }
  shared_t sh = {in, p, &st, &plan, order, mask, 0, 0};
  unsigned started = 0;
  for (; started < threads; started++) {
    if (pthread_create(&tids[started], NULL, worker, &sh) != 0) {
      atomic_store(&sh.err, -EAGAIN);
      break;
    }
  }
  for (unsigned i = 0; i < started; i++) {
    pthread_join(tids[i], NULL);
  }
  free(order);
  free(tids);
  err = atomic_load(&sh.err);
  double t2 = now_s();
  t.windows_s = t2 - t1;
  if (err == 0) {
    err = core_seg_finish(in, p, &st, mask, sum);
  }
  t.finish_s = now_s() - t2;
  if (times != NULL) {
    *times = t;
  }
  return err;
}
