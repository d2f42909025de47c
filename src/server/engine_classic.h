/* engine_classic.h: the built-in `classic` engine: the CPU segmenter of
 * src/core/seg_classic.h run on the job's volume, window by window, on the
 * server's worker pool, writing the job's mask (mask_run.h) so that the
 * previews grow window by window. Server-wide, at most --classic-workers
 * windows run at once (the budget below), each worker with its own scratch
 * (core_seg_scratch_bytes(): ~85 MiB at the default 128^3 window), so the
 * engine's memory is bounded by workers x scratch, whatever the number of
 * running jobs; a job that finds every worker taken waits for one. The
 * files are classic_io.c's. Loop thread only. */
#ifndef SRV_ENGINE_CLASSIC_H
#define SRV_ENGINE_CLASSIC_H

#include <jansson.h>
#include <stddef.h>

#include "core/list.h"
#include "server/job.h"

#define SRV_CLASSIC_WORKERS_MAX 256

/* The ops of `classic`. */
extern const srv_engine_ops_t srv_classic_engine;

/* Windows in flight server-wide: `free` of `workers`, handed to the runs
 * on `waiting` (oldest first) as they come back. */
struct srv_classic_budget_s {
  unsigned workers;
  unsigned free;
  core_list_t waiting;
};
typedef struct srv_classic_budget_s srv_classic_budget_t;

/* A budget of `workers` (>= 1), all free. */
void srv_classic_budget_init(srv_classic_budget_t* b, unsigned workers);

/* The default of --classic-workers: the CPUs this process may use, 1..16. */
unsigned srv_classic_default_workers(void);

/* The engine's check of a new job's params.engine_params (compact JSON or
 * ""): 0, or -EINVAL with a sentence naming the bad parameter in `why`. */
int srv_classic_check_params(const char* engine_params,
                             char* why,
                             size_t why_len);

/* What GET /v1/server/info says of classic's params (a new object, NULL on
 * ENOMEM). */
json_t* srv_classic_params_info(void);

#endif
