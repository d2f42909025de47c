/* classic_run.h: a classic run's state, shared by the two halves of the
 * engine: its life (engine_classic.c: start, open, final pass, stop, free)
 * and its workers (classic_windows.c: the budget, slots, windows). Private
 * to those two files. Loop thread, except where a field says the pool. */
#ifndef SRV_CLASSIC_RUN_H
#define SRV_CLASSIC_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/list.h"
#include "server/classic_io.h"
#include "server/mask_run.h"

struct srv_classic_budget_s; /* engine_classic.h */

typedef enum {
  SRV_CLASSIC_ALLOC, /* allocate the slot's scratch */
  SRV_CLASSIC_WINDOW,
  SRV_CLASSIC_FREE /* free it */
} srv_classic_slot_kind_t;

typedef struct srv_classic_run_s srv_classic_run_t;

/* One worker of a run: what it does in flight, and its scratch. */
typedef struct {
  uv_work_t req;
  srv_classic_run_t* run;
  srv_classic_slot_kind_t kind;
  uint64_t window;             /* SRV_CLASSIC_WINDOW: its plan index */
  core_seg_scratch_t* scratch; /* the slot's; only its work in flight uses it */
  int err;
  bool has_run; /* the window was segmented (not skipped after a stop) */
  bool is_held; /* holds one of the budget's workers */
  bool is_busy; /* a work is in flight */
} srv_classic_slot_t;

/* Owned by the job (job->run) until ops->stop, then by itself until no
 * work of it is in flight; holds a job reference until freed. Every
 * after-work callback keeps its own work counted in `works` until its last
 * line, so that a failure inside it (which stops the run) cannot free the
 * run under it. */
struct srv_classic_run_s {
  srv_job_t* job;
  srv_mask_run_t* mask; /* NULL once released */
  struct srv_classic_budget_s* budget;
  srv_classic_io_t io; /* the pool's while an io work is in flight; windows
                          only read it */
  uv_work_t io_req;    /* open, final pass + close, or close */
  int io_err;
  atomic_bool stop;    /* read by the windows on the pool */
  bool is_stopped;     /* ops->stop ran: publish nothing, free when idle */
  bool is_open;        /* opened: windows may run */
  bool is_closing;     /* a close is queued */
  unsigned works;      /* works in flight (io_req and slots) */
  unsigned held;       /* slots holding a worker */
  unsigned held_max;   /* the most it held at once */
  unsigned cap;        /* the most it may hold */
  uint64_t next, done; /* windows handed out, windows landed */
  uint64_t windows_start_ns;
  double windows_s, finish_s;
  core_seg_summary_t sum;
  core_list_t wait_link; /* budget->waiting */
  unsigned slot_count;
  srv_classic_slot_t slots[]; /* budget->workers of them */
};

/* engine_classic.c. Whether what lands is still wanted. */
bool srv_classic_run_is_live(const srv_classic_run_t* run);

/* engine_classic.c. Fails the job (which stops the run) while it is live. */
void srv_classic_run_fail(srv_classic_run_t* run,
                          const char* code,
                          bool retryable,
                          const char* message,
                          const char* hint);

/* engine_classic.c. Fails the job for `err` (srv_classic_io_failure), with
 * the sentence `why`, or srv_classic_io_describe()'s when NULL. */
void srv_classic_run_fail_with(srv_classic_run_t* run,
                               int err,
                               const char* why);

/* engine_classic.c. Every window landed: the final pass. */
void srv_classic_run_windows_done(srv_classic_run_t* run);

/* engine_classic.c. A stopped, idle run closes its files, then is freed;
 * nothing may touch `run` after this call. */
void srv_classic_run_maybe_free(srv_classic_run_t* run);

/* classic_windows.c. The run is open: it takes free workers (or waits for
 * one) and its windows start. */
void srv_classic_claim(srv_classic_run_t* run);

/* classic_windows.c. The run stopped: its idle workers free their scratch
 * and go back; busy ones follow when their work lands. */
void srv_classic_release_idle(srv_classic_run_t* run);

#endif
