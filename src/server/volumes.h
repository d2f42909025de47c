/* volumes.h: volumes made from completed uploads (docs/protocol.md,
 * "Volumes"): the registry (by id and by sha256, for dedup), their records
 * (store table volumes; in a cluster, Redis: cluster_volumes.c, and no
 * local registry nor dedup), their files (volumes/<id>.mrc under
 * srv_config_files_dir), and the
 * completion of an upload on the worker pool: MRC2014 validation and the
 * whole file's sha256, then a new volume or the stored one with the same
 * sha256. Loop thread only but the completion's work function. */
#ifndef SRV_VOLUMES_H
#define SRV_VOLUMES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/shape.h"
#include "core/uuid.h"
#include "server/ctx.h"
#include "server/store.h"
#include "server/uploads.h"

typedef struct srv_volume_s {
  core_list_t link; /* ctx->volumes, oldest first */
  char id[CORE_UUID_STR_LEN + 1];
  char sha256[65];
  core_shape_t shape;
  double voxel_size[3]; /* Z, Y, X */
  double origin[3];     /* Z, Y, X, from the header's origin field */
  int32_t mode;
  uint64_t size_bytes;
  char filename[SRV_UPLOAD_FILENAME_MAX];
  int64_t created_us;
  bool is_deleting; /* its record's removal is being committed */
} srv_volume_t;

/* The outcome of a completion, on the loop: status 0 with the volume (new
 * or deduplicated), or -EINVAL (not a valid MRC, or not the announced
 * sha256: `why` says which), or another negative errno (I/O, store). */
typedef void (*srv_volume_done_cb)(void* arg,
                                   int status,
                                   srv_volume_t* vol,
                                   const char* why);

/* Validates and hashes upload `u`'s file off the loop, then makes it a
 * volume (its file hard-linked into volumes/, the volume record committed)
 * or finds the stored one with the same sha256, and calls cb. The upload's
 * file stays: the caller removes it once the upload's record names the
 * volume. The validation goes in steps (volume_check.c): -ECANCELED when
 * `u` was terminated meanwhile (it stops after the step in flight),
 * -ESHUTDOWN when the server began stopping or the store closed first. */
int srv_volume_complete(srv_ctx_t* ctx,
                        srv_upload_t* u,
                        srv_volume_done_cb cb,
                        void* arg);

srv_volume_t* srv_volume_find(srv_ctx_t* ctx, const char* id, size_t len);
srv_volume_t* srv_volume_find_sha(srv_ctx_t* ctx, const char* sha256);

/* The volume object of the API. */
json_t* srv_volume_to_json(const srv_volume_t* v);

/* Removes `v`: its record first (until that commits the volume stays
 * registered; a failed commit leaves it as it was, cb gets the error), then
 * it is unregistered, its file unlinked and freed, and cb(arg, 0) runs.
 * Returns 0, -EBUSY (a deletion is in flight) or a negative errno. */
int srv_volume_delete(srv_ctx_t* ctx,
                      srv_volume_t* v,
                      srv_store_done_cb cb,
                      void* arg);

/* Start-up: restores stored volumes. Returns the count or -1. */
int srv_volumes_restore(srv_ctx_t* ctx);

/* Start-up, after srv_volumes_restore, before the loop runs: removes the
 * files of volumes/ that belong to no volume (linked there by a completion
 * whose volume record never committed), and the volumes whose file is
 * missing. Returns the count of files removed. */
int srv_volumes_remove_orphans(srv_ctx_t* ctx);

/* Bytes of every volume and every job artifact, for the storage quota. */
uint64_t srv_storage_used_bytes(srv_ctx_t* ctx);

void srv_volumes_free_all(srv_ctx_t* ctx);

#endif
