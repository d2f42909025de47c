/* classic_windows.c: classic's workers. The budget holds --classic-workers
 * server-wide; an open run takes as many as it has windows for (a run that
 * finds none waits on the budget's list, oldest first). Each worker is a
 * slot of the run: its scratch is allocated on the pool, then it runs
 * windows handed out one at a time in plan order (0, 1, 2, ...), each
 * reported as a region and progress when it lands, then its scratch is
 * freed on the pool and the worker goes back. Which slot runs which window,
 * and in which order they land, do not matter: windows write disjoint cores
 * and the library's result is the same either way. Loop thread, except
 * slot_work (pool). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "server/classic_run.h"
#include "server/engine_classic.h"
#include "server/jobs.h"


void srv_classic_budget_init(srv_classic_budget_t* b, unsigned workers) {
  assert(workers >= 1);
  b->workers = workers;
  b->free = workers;
  core_list_init(&b->waiting);
}


unsigned srv_classic_default_workers(void) {
  unsigned n = uv_available_parallelism();
  return n < 1 ? 1 : n > 16 ? 16 : n;
}


static void slot_work(uv_work_t* req);
static void after_slot(uv_work_t* req, int status);


static void dispatch(srv_classic_slot_t* slot, srv_classic_slot_kind_t kind) {
  srv_classic_run_t* run = slot->run;
  slot->kind = kind;
  slot->err = 0;
  slot->has_run = false;
  if (kind == SRV_CLASSIC_WINDOW) {
    slot->window = run->next++;
  }
  slot->is_busy = true;
  run->works++;
  int rc =
      uv_queue_work(run->job->ctx->loop, &slot->req, slot_work, after_slot);
  assert(rc == 0); /* fails only for a NULL work callback */
  (void) rc;
}


/* The budget has a worker back: the waiting runs, oldest first, take it. */
static void give_back(srv_classic_budget_t* b) {
  b->free++;
  core_list_t *it, *tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &b->waiting) {
    if (b->free == 0) {
      break;
    }
    srv_classic_claim(CORE_CONTAINER_OF(it, srv_classic_run_t, wait_link));
  }
}


static void release_slot(srv_classic_slot_t* slot) {
  assert(slot->is_held && !slot->is_busy && slot->scratch == NULL);
  srv_classic_run_t* run = slot->run;
  slot->is_held = false;
  run->held--;
  give_back(run->budget);
}


static bool wants_workers(const srv_classic_run_t* run) {
  return !run->is_stopped && run->is_open && run->held < run->cap &&
         run->next < run->io.plan.windows;
}


void srv_classic_claim(srv_classic_run_t* run) {
  srv_classic_budget_t* b = run->budget;
  for (unsigned i = 0; i < run->slot_count && b->free > 0; i++) {
    srv_classic_slot_t* slot = &run->slots[i];
    if (!wants_workers(run)) {
      break;
    }
    if (!slot->is_held) {
      slot->is_held = true;
      run->held++;
      b->free--;
      run->held_max = run->held > run->held_max ? run->held : run->held_max;
      dispatch(slot, SRV_CLASSIC_ALLOC);
    }
  }
  bool waits = wants_workers(run);
  if (waits && !core_list_is_linked(&run->wait_link)) {
    core_list_push_back(&b->waiting, &run->wait_link);
  } else if (!waits) {
    core_list_remove(&run->wait_link);
  }
  if (run->held == 0 && waits && run->mask != NULL) {
    srv_mask_run_progress(run->mask, 0, "waiting for a classic worker");
  }
}


/* What a slot does next: another window, or it is done with. */
static void next_for(srv_classic_slot_t* slot) {
  srv_classic_run_t* run = slot->run;
  if (!run->is_stopped && run->next < run->io.plan.windows) {
    dispatch(slot, SRV_CLASSIC_WINDOW);
  } else if (slot->scratch != NULL) {
    dispatch(slot, SRV_CLASSIC_FREE);
  } else {
    release_slot(slot);
  }
}


void srv_classic_release_idle(srv_classic_run_t* run) {
  core_list_remove(&run->wait_link);
  for (unsigned i = 0; i < run->slot_count; i++) {
    srv_classic_slot_t* slot = &run->slots[i];
    if (slot->is_held && !slot->is_busy) {
      next_for(slot); /* never a window now: its scratch goes */
    }
  }
}


static void slot_work(uv_work_t* req) {
  srv_classic_slot_t* slot = req->data;
  srv_classic_run_t* run = slot->run;
  srv_classic_io_t* io = &run->io;
  switch (slot->kind) {
  case SRV_CLASSIC_ALLOC:
    slot->err = core_seg_scratch_new(&io->plan, &slot->scratch);
    return;
  case SRV_CLASSIC_WINDOW:
    if (!atomic_load(&run->stop)) { /* stopped while queued: skip it */
      core_seg_window_t w;
      core_seg_plan_window(&io->plan, slot->window, &w);
      slot->err = core_seg_window(&io->in, &io->params, &io->stats, &io->plan,
                                  &w, slot->scratch, io->mask);
      slot->has_run = slot->err == 0;
    }
    return;
  case SRV_CLASSIC_FREE:
    core_seg_scratch_free(slot->scratch);
    slot->scratch = NULL;
    return;
  }
}


/* A window is in the mask: the next preview shows it. */
static void window_landed(srv_classic_run_t* run,
                          const srv_classic_slot_t* slot) {
  run->done++;
  core_seg_window_t w;
  core_seg_plan_window(&run->io.plan, slot->window, &w);
  core_box_t box;
  memcpy(box.lo, w.lo, sizeof(box.lo));
  memcpy(box.hi, w.hi, sizeof(box.hi));
  int rc = srv_mask_run_region(run->mask, &box);
  assert(rc == 0); /* a window's core is within the volume */
  (void) rc;
  char message[96];
  snprintf(message, sizeof(message), "window %llu of %llu",
           (unsigned long long) run->done,
           (unsigned long long) run->io.plan.windows);
  srv_mask_run_progress(
      run->mask, 0.95 * (double) run->done / (double) run->io.plan.windows,
      message);
  if (run->done == run->io.plan.windows) {
    srv_classic_run_windows_done(run);
  }
}


static void after_slot(uv_work_t* req, int status) {
  (void) status; /* never cancelled: uv_cancel is not used */
  srv_classic_slot_t* slot = req->data;
  srv_classic_run_t* run = slot->run;
  slot->is_busy = false;
  if (slot->kind == SRV_CLASSIC_ALLOC && slot->err != 0) {
    /* Fewer workers for this run from now on (set before the worker goes
     * back, or the run would take it again); none at all: fail. */
    run->cap = run->held - 1;
    core_list_remove(&run->wait_link);
    release_slot(slot);
    if (run->held == 0) {
      char message[200];
      snprintf(message, sizeof(message),
               "out of memory: a classic worker needs %zu MiB of scratch for "
               "windows of %u voxels",
               run->io.scratch_bytes >> 20, run->io.plan.window);
      srv_classic_run_fail(run, "insufficient_memory", true, message,
                           "retry later, or use a smaller "
                           "engine_params.window; the operator may lower "
                           "--classic-workers");
    }
  } else if (slot->kind == SRV_CLASSIC_FREE) {
    release_slot(slot);
  } else {
    if (slot->kind == SRV_CLASSIC_WINDOW && slot->err != 0) {
      srv_classic_run_fail_with(run, slot->err, NULL); /* e.g. truncated */
    } else if (slot->has_run && srv_classic_run_is_live(run)) {
      window_landed(run, slot);
    }
    if (!slot->is_busy) { /* a failure's stop may have sent it on already */
      next_for(slot);
    }
  }
  run->works--;
  srv_classic_run_maybe_free(run);
}
