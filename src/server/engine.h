/* engine.h: the simulated inference engine. A running job ticks on absolute
 * deadlines (start + k / preview_hz, so a 1 Hz stream never drifts); each
 * tick publishes progress and hands a preview render to the worker pool,
 * which synthesises the mask and encodes the whole message once into a
 * shared frame; the loop then stamps seq and timestamp and fans it out. At
 * progress 1 the final mask is written as an MRC artifact off the loop. */
#ifndef SRV_ENGINE_H
#define SRV_ENGINE_H

#include "server/ctx.h"

/* Starts a queued job: running state, first tick one period from now. */
void srv_engine_start(srv_job_t* job);

/* Stops the job's ticks; renders in flight are discarded when they land. */
void srv_engine_stop(srv_job_t* job);

/* For a completed job restored after a restart: re-renders its final preview
 * (deterministic) off the loop, then sends it and the terminal message to
 * the subscribers waiting. No-op when already pending or present. */
void srv_engine_rebuild_preview(srv_job_t* job);

#endif
