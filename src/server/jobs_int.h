/* jobs_int.h: what the job registry (jobs.c) shares with the rest of a
 * job's life (jobs_end.c: transitions, delete): the per-state counts,
 * committing a record then continuing, leaving the registry. Private to
 * those two files. Loop thread only. */
#ifndef SRV_JOBS_INT_H
#define SRV_JOBS_INT_H

/* Not jobs.h: jobs.c includes this file, and a module may not include
 * itself back (scripts/check-includes). The callbacks below are
 * srv_job_ack_cb spelled out. */
#include "server/job.h"

/* Adds delta to the count of jobs in `state` (and the queued/running
 * counts the scheduler reads). */
void srv_jobs_count_state(srv_ctx_t* ctx, core_job_state_t state, int delta);

/* Saves the job's record; then(job, status, cb, arg) runs after the commit
 * (or at once, with -ENOMEM, when it cannot even be queued). */
void srv_job_persist_then(
    srv_job_t* job,
    void (*then)(srv_job_t*, int, void (*)(void*, srv_job_t*, int), void*),
    void (*cb)(void* arg, srv_job_t* job, int status),
    void* arg);

/* Removes a registered job from the index and the list (the registry's
 * reference is the caller's to drop). */
void srv_job_unregister(srv_job_t* job);

#endif
