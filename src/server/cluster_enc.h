/* cluster_enc.h: a gateway's raw and zstd previews (docs/protocol.md §10)
 * made from the base64 payload workers publish on cm:ev:<id>. Workers keep
 * publishing only the JSON + base64 message (base64 subscribers stay
 * byte-identical, and Redis carries one copy of each preview); a gateway
 * with raw or zstd subscribers of the job decodes it on the worker pool,
 * once per gateway per preview, compresses it when some subscriber wants
 * zstd, and stamps the same envelope (job id, seq, timestamp, scale,
 * shape) a --role all server would. While that runs, the mirror's later
 * messages wait in a gate (in order, previews latest-only), so every
 * subscriber still sees connected, preview, ..., terminal in seq order.
 * Loop thread only, except the pool work. */
#ifndef SRV_CLUSTER_ENC_H
#define SRV_CLUSTER_ENC_H

#include <stdbool.h>
#include <stddef.h>

#include "net/frame.h"
#include "server/ctx.h"
#include "server/job.h"

/* A mirror's gate. `apply` hands one held message back to the mirror
 * (cluster_sub.c) once the encode in flight has landed. */
typedef struct srv_cluster_enc_s srv_cluster_enc_t;
typedef void (*srv_cluster_enc_apply_fn)(void* arg,
                                         const char* text,
                                         size_t len);

/* A gate for `job`'s mirror (a reference is taken). NULL on ENOMEM. */
srv_cluster_enc_t* srv_cluster_enc_new(srv_job_t* job,
                                       srv_cluster_enc_apply_fn apply,
                                       void* arg);

/* The mirror goes: nothing is applied any more; freed now, or when the
 * encode in flight lands. NULL is a no-op. */
void srv_cluster_enc_free(srv_cluster_enc_t* e);

/* True when a message must wait (an encode is in flight): it is copied
 * into the gate and applied later. A copy that fails drops the message
 * (counted as stale by the caller's seq checks: a later one follows). */
bool srv_cluster_enc_hold(srv_cluster_enc_t* e, const char* text, size_t len);

/* Makes `b64` (a sealed text frame; reference stolen) the job's latest
 * preview: at once when no local subscriber wants raw or zstd, else after
 * the pool made those frames. */
void srv_cluster_enc_preview(srv_cluster_enc_t* e, net_frame_t* b64);

/* A subscriber of `enc` found no latest preview in its encoding: the
 * latest base64 one is encoded on the pool and the topic's waiters are
 * woken (srv_topic_wake) once the frames are in. 0 (the wake will come),
 * or -ENOENT (no base64 preview either), -EBUSY (a new preview is being
 * encoded: it comes to the subscriber as to the others) / -ENOMEM: no
 * wake. */
int srv_cluster_enc_fill(srv_cluster_enc_t* e);

/* Gateway (cluster_sub.c): srv_cluster_enc_fill on `job`'s mirror. */
int srv_cluster_fill_preview(srv_ctx_t* ctx, srv_job_t* job);

#endif
