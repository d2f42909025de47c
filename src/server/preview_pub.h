/* preview_pub.h: the loop side of a preview every engine shares: the
 * envelope (seq, timestamp, scale, shape) stamped into the headroom of the
 * frames a worker encoded, the WebSocket headers sealed, and the frames
 * made the job's latest preview (handed to every sink by the hub). The
 * sim engine (engine.c) and the mask engines (mask_run.c) publish through
 * here, so clients see the same messages whatever the engine. Loop thread
 * only. */
#ifndef SRV_PREVIEW_PUB_H
#define SRV_PREVIEW_PUB_H

#include "core/preview_bin.h"
#include "net/frame.h"
#include "server/chunks.h"
#include "server/job.h"

/* Stamps the envelope of preview `seq` at `ts_us` in front of each encoded
 * payload of `frames` (NULL where not produced) and seals its WebSocket
 * header. Returns 0 or -EINVAL. */
int srv_preview_seal(const srv_job_t* job,
                     net_frame_t* frames[CORE_ENC_COUNT],
                     const core_shape_t* preview_shape,
                     uint32_t scale,
                     uint64_t seq,
                     int64_t ts_us);

/* Seals `frames` with the job's next seq and now, and makes them the job's
 * latest preview (references stolen; the entries are NULLed); the chunk
 * pass that rode on the render, if *pass is not NULL, is applied with the
 * same seq (and *pass NULLed). Returns 0, or -EINVAL with the frames left
 * to the caller (to release). */
int srv_preview_publish(srv_job_t* job,
                        net_frame_t* frames[CORE_ENC_COUNT],
                        const core_shape_t* preview_shape,
                        uint32_t scale,
                        srv_chunk_pass_t** pass);

#endif
