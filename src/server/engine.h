/* engine.h: the simulated inference engine (srv_engine_ops_t). A running
 * job ticks on absolute deadlines (start + k / preview_hz, so a 1 Hz stream
 * never drifts; on Linux a timerfd gives them sub-millisecond precision).
 * Previews are rendered one tick ahead on the worker pool (the mask
 * synthesised and the whole message encoded once into shared frames), so
 * at each tick the loop only stamps seq and timestamp and hands the frames
 * to the job's topic. At progress 1 the final mask is written as an MRC
 * artifact off the loop, then the job completes. */
#ifndef SRV_ENGINE_H
#define SRV_ENGINE_H

#include "server/jobs.h"

/* The simulator's operations, for ctx->engine. */
extern const srv_engine_ops_t srv_sim_engine;

#endif
