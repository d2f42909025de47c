/* engine.h: the simulated inference engine. A running job ticks on absolute
 * deadlines (start + k / preview_hz, so a 1 Hz stream never drifts; on Linux
 * a timerfd gives them sub-millisecond precision). Previews are rendered one
 * tick ahead on the worker pool (the mask synthesised and the whole message
 * encoded once into a shared frame), so at each tick the loop only stamps
 * seq and timestamp and fans the frame out: what subscribers see is as
 * regular as the clock. At progress 1 the final mask is written as an MRC
 * artifact off the loop. */
#ifndef SRV_ENGINE_H
#define SRV_ENGINE_H

#include "server/ctx.h"

/* Starts a queued job: running state, first tick one period from now. */
void srv_engine_start(srv_job_t* job);

/* Stops the job's ticks for good (it ended, or the server stops) and drops
 * a preview rendered ahead; renders in flight are discarded when they land.
 * Idempotent. */
void srv_engine_stop(srv_job_t* job);

/* For a completed job restored after a restart: re-renders its final preview
 * (deterministic) off the loop, then sends it and the terminal message to
 * the subscribers waiting. No-op when already pending or present. */
void srv_engine_rebuild_preview(srv_job_t* job);

#endif
