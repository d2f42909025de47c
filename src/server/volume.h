/* volume.h: server-side volumes named by jobs (volume_path): confined to the
 * data root, read for their MRC header only. */
#ifndef SRV_VOLUME_H
#define SRV_VOLUME_H

#include <stddef.h>

#include "server/ctx.h"

/* Resolves `rel` under cfg.data_root (symlinks included: the real path must
 * stay inside the root), reads and validates its MRC header. Fills the
 * shape and voxel size. Returns 0, or -1 with a sentence in `why`. The only
 * disk access on the loop thread: one open and a 1 KiB read. */
int srv_volume_resolve(srv_ctx_t* ctx,
                       const char* rel,
                       core_shape_t* shape,
                       double voxel_size[3],
                       char* why,
                       size_t why_len);

#endif
