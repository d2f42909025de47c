/* cluster_files.h: --shared-dir, the directory every gateway and worker of
 * a cluster mounts (an NFS-style mount). Layout (docs/operations.md,
 * "Cluster"):
 *   volumes/<volume_id>.mrc      a volume (gateways write, workers read)
 *   artifacts/<job_id>-mask.mrc  a job's artifact (workers write through
 *                                <name>.tmp, fsync, rename, fsync of the
 *                                directory; gateways serve and delete it)
 *   uploads/<node id>/<id>.part  a gateway's uploads in progress: one
 *                                directory per gateway, so that a gateway's
 *                                start-up sweep of orphans never touches
 *                                another's files
 * The node id is a uuid kept in state_dir/node-id (made at the first
 * start). Without --shared-dir uploads are state_dir/uploads/. Start-up
 * only (blocking file work before the loop runs). */
#ifndef SRV_CLUSTER_FILES_H
#define SRV_CLUSTER_FILES_H

#include <stddef.h>

#include "server/ctx.h"

/* Sets ctx->uploads_dir; with --shared-dir, resolves it (it must exist),
 * makes its subdirectories and checks that each takes a new file. 0, or
 * -1 with a sentence in `why`. After the state directory is made. */
int srv_cluster_files_prepare(srv_ctx_t* ctx, char* why, size_t why_len);

/* The shared file of job `id` with `suffix` ("-mask.mrc", ...): 0 or
 * -ENAMETOOLONG. */
int srv_cluster_job_file(const srv_ctx_t* ctx,
                         const char* id,
                         const char* suffix,
                         char* out,
                         size_t cap);

/* Gateway with --shared-dir: starts a sweep of the shared directory's
 * orphans when one is due and Redis is reachable (cluster_sweep.c). From
 * the housekeeping timer; a no-op in other roles. */
void srv_cluster_sweep_tick(srv_ctx_t* ctx);

/* Gateway with a storage quota: reads cm:storage:used again (the PATCH's
 * quota check; cluster_usage.c). From the housekeeping timer. */
void srv_cluster_usage_tick(srv_ctx_t* ctx);

#endif
