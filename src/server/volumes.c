/* volumes.c: the volume registry and the completion of uploads. See
 * volumes.h. The validation runs in steps (volume_check.c), stopped
 * between steps by a termination or a shutdown; the loop then decides
 * between a new volume and a stored one, links the upload's file into
 * volumes/ on the pool and commits.
 * Linked, not renamed: until the upload's own record is durable its file
 * stays where a restart's completion looks for it, and a volume record
 * never names a file that is not there (the link and the directory are
 * synced before the record is queued). */
#include "server/volumes.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dirent.h>
#include <unistd.h>

#include "core/timefmt.h"
#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/file_sync.h"
#include "server/jobs.h"
#include "server/volume_check.h"

typedef struct {
  uv_work_t work; /* the link */
  srv_ctx_t* ctx;
  srv_upload_t* u; /* a reference */
  srv_volume_t* vol;
  srv_volume_done_cb cb;
  void* arg;
  srv_volume_check_t* check; /* owned; the validation, in steps */
  char path[1200];
  char to[1200]; /* the volume's file */
  int status;
} complete_t;


static void volume_path(const srv_ctx_t* ctx,
                        const char* id,
                        char* out,
                        size_t cap) {
  snprintf(out, cap, "%s/volumes/%s.mrc", srv_config_files_dir(&ctx->cfg), id);
}


static void complete_finish(complete_t* c, int status, const char* why) {
  c->cb(c->arg, status, status == 0 ? c->vol : NULL, why);
  srv_upload_unref(c->u);
  srv_volume_check_free(c->check);
  free(c);
}


static json_t* to_record(const srv_volume_t* v) {
  json_t* rec = srv_volume_to_json(v);
  json_object_set_new(rec, "created_us", json_integer(v->created_us));
  return rec;
}


static int register_volume(srv_ctx_t* ctx, srv_volume_t* v) {
  if (core_idmap_put(&ctx->volume_index, v->id, v) != 0) {
    return -ENOMEM;
  }
  if (core_idmap_put(&ctx->volume_by_sha, v->sha256, v) != 0) {
    core_idmap_remove(&ctx->volume_index, v->id);
    return -ENOMEM;
  }
  core_list_push_back(&ctx->volumes, &v->link);
  return 0;
}


static void on_volume_saved(void* arg, int status) {
  complete_t* c = arg;
  if (status != 0) {
    complete_finish(c, status, "the volume could not be recorded");
    return;
  }
  if (c->ctx->cfg.role != SRV_ROLE_ALL) {
    /* In Redis (cluster_volumes.c), for every gateway: no local copy,
     * which a DELETE on another gateway would leave stale. */
    srv_volume_t* v = c->vol;
    complete_finish(c, 0, NULL);
    free(v);
    return;
  }
  if (register_volume(c->ctx, c->vol) != 0) {
    free(c->vol);
    complete_finish(c, -ENOMEM, "out of memory");
    return;
  }
  complete_finish(c, 0, NULL);
}


static void on_dup_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


/* A cluster's volume is in Redis: `id` is the volume the upload names, v's
 * or, when another gateway stored the same bytes first, that one's (then
 * v's link goes; a failed unlink leaves an orphan for the sweep). */
static void on_cluster_saved(void* arg, int status, const char* id) {
  complete_t* c = arg;
  if (status == 0 && strcmp(id, c->vol->id) != 0) {
    uv_fs_t* req = malloc(sizeof(*req));
    if (req != NULL &&
        uv_fs_unlink(c->ctx->loop, req, c->to, on_dup_unlinked) != 0) {
      free(req);
    }
    snprintf(c->vol->id, sizeof(c->vol->id), "%s", id);
  }
  on_volume_saved(c, status);
}


/* Worker: the upload's file becomes the volume's too (a hard link), and
 * volumes/ is synced so the name survives a power cut. */
static void link_work(uv_work_t* req) {
  complete_t* c = req->data;
  c->status = link(c->path, c->to) == 0 ? 0 : -errno;
  bool moved = false;
  if (c->status == -EPERM || c->status == -EOPNOTSUPP || c->status == -EMLINK) {
    /* A file system without hard links: moved instead, and a crash before
     * the volume's record commits then loses the upload's bytes. */
    c->status = rename(c->path, c->to) == 0 ? 0 : -errno;
    moved = c->status == 0;
  }
  if (c->status != 0) {
    return;
  }
  c->status = srv_fsync_parent(c->to);
  if (c->status == 0 && moved) {
    srv_fsync_parent(c->path); /* the old name is gone for good too */
  }
  if (c->status != 0 && !moved) {
    unlink(c->to);
  }
}


static void on_linked(uv_work_t* req, int status) {
  complete_t* c = req->data;
  int rc = status != 0 ? status : c->status;
  if (rc == 0 && !srv_store_is_open(c->ctx->store)) {
    rc = -ESHUTDOWN; /* the file is an orphan now; a restart redoes this */
  }
  if (rc != 0) {
    free(c->vol);
    complete_finish(c, rc, "the volume file could not be stored");
    return;
  }
  if (c->ctx->cfg.role != SRV_ROLE_ALL) {
    rc = srv_cluster_volume_put(c->ctx, c->vol, on_cluster_saved, c);
  } else {
    json_t* rec = to_record(c->vol);
    rc = rec != NULL ? srv_store_put(c->ctx->store, SRV_STORE_VOLUMES,
                                     c->vol->id, rec, on_volume_saved, c)
                     : -ENOMEM;
    json_decref(rec);
  }
  if (rc != 0) {
    free(c->vol);
    complete_finish(c, rc, "the volume could not be recorded");
  }
}


/* A step of the validation landed: the next one, unless the upload was
 * terminated or the server is stopping (then the record still says
 * completing, and the restart validates again); once done, a new volume
 * or the stored one with the same sha256. */
static void on_check_step(srv_volume_check_t* check) {
  complete_t* c = check->data;
  srv_ctx_t* ctx = c->ctx;
  if (c->u->is_deleted ||
      (check->status == 0 && !check->is_done && ctx->is_stopping)) {
    srv_log(&ctx->log, SRV_LOG_INFO, "upload.validation_stopped", "s:upload_id",
            c->u->id, "i:hashed", (int64_t) check->off, "i:size",
            (int64_t) check->size, NULL);
    if (c->u->is_deleted) {
      /* Terminated while it was validated: it makes no volume. */
      complete_finish(c, -ECANCELED, "the upload was terminated");
    } else {
      complete_finish(c, -ESHUTDOWN, "the server is stopping");
    }
    return;
  }
  if (check->status != 0) {
    complete_finish(c, check->status, check->why);
    return;
  }
  if (!check->is_done) {
    int rc = srv_volume_check_step(ctx->loop, check, on_check_step);
    if (rc != 0) {
      complete_finish(c, rc, "the validation could not go on");
    }
    return;
  }
  if (c->u->sha256[0] != '\0' && strcmp(c->u->sha256, check->sha256) != 0) {
    complete_finish(c, -EINVAL,
                    "the file's sha256 is not the one given in "
                    "Upload-Metadata");
    return;
  }
  srv_volume_t* same = srv_volume_find_sha(ctx, check->sha256);
  if (same != NULL) {
    /* Dedup: the caller removes the upload's copy of the bytes once its
     * record names the volume (not before: a crash in between would leave
     * an upload to complete again without its file). */
    c->vol = same;
    complete_finish(c, 0, NULL);
    return;
  }
  uint8_t random16[16];
  srv_volume_t* v = calloc(1, sizeof(*v));
  if (v == NULL || RAND_bytes(random16, sizeof(random16)) != 1) {
    free(v);
    complete_finish(c, -ENOMEM, "out of memory");
    return;
  }
  core_uuid4_format(random16, v->id);
  core_list_init(&v->link);
  memcpy(v->sha256, check->sha256, sizeof(v->sha256));
  v->shape = check->h.shape;
  memcpy(v->voxel_size, check->h.voxel_size, sizeof(v->voxel_size));
  memcpy(v->origin, check->origin, sizeof(v->origin));
  v->mode = check->h.mode;
  v->size_bytes = check->size;
  snprintf(v->filename, sizeof(v->filename), "%s", c->u->filename);
  v->created_us = srv_now_us();
  c->vol = v;
  volume_path(ctx, v->id, c->to, sizeof(c->to));
  int rc = uv_queue_work(ctx->loop, &c->work, link_work, on_linked);
  if (rc != 0) {
    free(v);
    complete_finish(c, rc, "the volume file could not be stored");
  }
}


int srv_volume_complete(srv_ctx_t* ctx,
                        srv_upload_t* u,
                        srv_volume_done_cb cb,
                        void* arg) {
  complete_t* c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return -ENOMEM;
  }
  c->ctx = ctx;
  c->u = u;
  c->cb = cb;
  c->arg = arg;
  c->work.data = c;
  srv_upload_path(ctx, u->id, c->path, sizeof(c->path));
  c->check = srv_volume_check_new(c->path, c);
  int rc = c->check != NULL
               ? srv_volume_check_step(ctx->loop, c->check, on_check_step)
               : -ENOMEM;
  if (rc != 0) {
    srv_volume_check_free(c->check);
    free(c);
    return rc;
  }
  srv_upload_ref(u);
  return 0;
}


srv_volume_t* srv_volume_find(srv_ctx_t* ctx, const char* id, size_t len) {
  /* The map compares exactly CORE_UUID_STR_LEN bytes: no copy needed. */
  return core_uuid_is_valid(id, len) ? core_idmap_get(&ctx->volume_index, id)
                                     : NULL;
}


srv_volume_t* srv_volume_find_sha(srv_ctx_t* ctx, const char* sha256) {
  /* A cluster's volumes are in Redis, not deduplicated in this version. */
  return strlen(sha256) == 64 && ctx->cfg.role == SRV_ROLE_ALL
             ? core_idmap_get(&ctx->volume_by_sha, sha256)
             : NULL;
}


json_t* srv_volume_to_json(const srv_volume_t* v) {
  char created[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(v->created_us, created);
  return json_pack(
      "{s:s, s:s, s:[I,I,I], s:[f,f,f], s:i, s:[f,f,f], s:I, s:s, s:s}",
      "volume_id", v->id, "sha256", v->sha256, "shape",
      (json_int_t) v->shape.d[0], (json_int_t) v->shape.d[1],
      (json_int_t) v->shape.d[2], "voxel_size", v->voxel_size[0],
      v->voxel_size[1], v->voxel_size[2], "mode", (int) v->mode, "origin",
      v->origin[0], v->origin[1], v->origin[2], "size_bytes",
      (json_int_t) v->size_bytes, "filename", v->filename, "created_at",
      created);
}


/* A deletion in flight: the record's removal, then the file's. */
typedef struct {
  uv_fs_t req;
  srv_ctx_t* ctx;
  srv_volume_t* v;
  srv_store_done_cb cb;
  void* arg;
} vol_delete_t;


static void delete_finish(vol_delete_t* d, int status) {
  if (d->cb != NULL) {
    d->cb(d->arg, status);
  }
  free(d);
}


static void on_file_removed(uv_fs_t* req) {
  vol_delete_t* d = req->data;
  uv_fs_req_cleanup(req);
  free(d->v);
  delete_finish(d, 0);
}


/* The record's removal committed: only now is the volume gone for clients
 * (a failed commit leaves it as it was), and its file is removed before the
 * answer, so a 200 means the bytes are freed (an open run keeps its inode). */
static void on_record_removed(void* arg, int status) {
  vol_delete_t* d = arg;
  srv_ctx_t* ctx = d->ctx;
  srv_volume_t* v = d->v;
  if (status != 0) {
    v->is_deleting = false;
    delete_finish(d, status);
    return;
  }
  core_idmap_remove(&ctx->volume_index, v->id);
  core_idmap_remove(&ctx->volume_by_sha, v->sha256);
  core_list_remove(&v->link);
  char path[1200];
  volume_path(ctx, v->id, path, sizeof(path));
  d->req.data = d;
  if (uv_fs_unlink(ctx->loop, &d->req, path, on_file_removed) != 0) {
    free(v); /* a file left over is removed at the next start-up */
    delete_finish(d, 0);
  }
}


int srv_volume_delete(srv_ctx_t* ctx,
                      srv_volume_t* v,
                      srv_store_done_cb cb,
                      void* arg) {
  if (v->is_deleting) {
    return -EBUSY;
  }
  vol_delete_t* d = calloc(1, sizeof(*d));
  if (d == NULL) {
    return -ENOMEM;
  }
  *d = (vol_delete_t){.ctx = ctx, .v = v, .cb = cb, .arg = arg};
  int rc = srv_store_remove(ctx->store, SRV_STORE_VOLUMES, v->id,
                            on_record_removed, d);
  if (rc != 0) {
    free(d);
    return rc;
  }
  v->is_deleting = true;
  return 0;
}


static int restore_one(void* arg, const json_t* rec) {
  srv_ctx_t* ctx = arg;
  srv_volume_t* v = calloc(1, sizeof(*v));
  if (v == NULL) {
    return -1;
  }
  core_list_init(&v->link);
  const char* id = NULL;
  const char* sha = NULL;
  const char* filename = NULL;
  json_int_t dims[3] = {0, 0, 0};
  json_int_t size = 0;
  json_int_t created = 0;
  int mode = 0;
  if (json_unpack((json_t*) rec,
                  "{s:s, s:s, s:[I,I,I], s:[F,F,F], s:i, s:[F,F,F], s:I, "
                  "s:s, s:I}",
                  "volume_id", &id, "sha256", &sha, "shape", &dims[0], &dims[1],
                  &dims[2], "voxel_size", &v->voxel_size[0], &v->voxel_size[1],
                  &v->voxel_size[2], "mode", &mode, "origin", &v->origin[0],
                  &v->origin[1], &v->origin[2], "size_bytes", &size, "filename",
                  &filename, "created_us", &created) != 0 ||
      !core_uuid_is_valid(id, strlen(id)) || strlen(sha) != 64) {
    free(v);
    return -1;
  }
  memcpy(v->id, id, CORE_UUID_STR_LEN + 1);
  memcpy(v->sha256, sha, 65);
  for (int i = 0; i < 3; i++) {
    v->shape.d[i] = (uint32_t) dims[i];
  }
  v->mode = mode;
  v->size_bytes = (uint64_t) size;
  v->created_us = created;
  snprintf(v->filename, sizeof(v->filename), "%s", filename);
  if (register_volume(ctx, v) != 0) {
    free(v);
    return -1;
  }
  return 0;
}


int srv_volumes_restore(srv_ctx_t* ctx) {
  int bad = 0;
  return srv_store_restore_table(ctx->store, SRV_STORE_VOLUMES, restore_one,
                                 ctx, &bad);
}


int srv_volumes_remove_orphans(srv_ctx_t* ctx) {
  char path[1100];
  snprintf(path, sizeof(path), "%s/volumes", ctx->cfg.state_dir);
  DIR* dir = opendir(path);
  if (dir == NULL) {
    return 0;
  }
  int removed = 0;
  struct dirent* e;
  while ((e = readdir(dir)) != NULL) {
    char id[CORE_UUID_STR_LEN + 1];
    if (e->d_name[0] == '.' || (srv_orphan_id(e->d_name, ".mrc", id) &&
                                srv_volume_find(ctx, id, strlen(id)) != NULL)) {
      continue;
    }
    if (unlinkat(dirfd(dir), e->d_name, 0) == 0) {
      removed++;
      srv_log(&ctx->log, SRV_LOG_INFO, "volumes.orphan_removed", "s:file",
              e->d_name, NULL);
    }
  }
  /* A record whose file is gone (a crash of an older server between its
   * rename and its record, or a file removed by hand) names nothing a job
   * could read: it goes too. */
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->volumes) {
    srv_volume_t* v = CORE_CONTAINER_OF(it, srv_volume_t, link);
    char name[CORE_UUID_STR_LEN + 8];
    snprintf(name, sizeof(name), "%s.mrc", v->id);
    struct stat st;
    if (fstatat(dirfd(dir), name, &st, 0) != 0 && errno == ENOENT) {
      srv_log(&ctx->log, SRV_LOG_WARN, "volumes.file_missing", "s:volume_id",
              v->id, NULL);
      /* Nothing to read, nothing to unlink: gone for clients at once (a
       * crash before the removal commits only brings back a record the
       * next start-up drops again). */
      srv_store_remove(ctx->store, SRV_STORE_VOLUMES, v->id, NULL, NULL);
      core_idmap_remove(&ctx->volume_index, v->id);
      core_idmap_remove(&ctx->volume_by_sha, v->sha256);
      core_list_remove(&v->link);
      free(v);
    }
  }
  closedir(dir);
  return removed;
}


uint64_t srv_storage_used_bytes(srv_ctx_t* ctx) {
  if (ctx->cfg.role != SRV_ROLE_ALL) {
    /* The cluster's volumes and artifacts (cluster_uploads.c). */
    return ctx->cluster != NULL ? ctx->cluster->shared_used_bytes : 0;
  }
  uint64_t n = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->volumes) {
    n += CORE_CONTAINER_OF(it, srv_volume_t, link)->size_bytes;
  }
  for (srv_job_t* job = srv_jobs_next(ctx, NULL); job != NULL;
       job = srv_jobs_next(ctx, job)) {
    n += job->artifact_bytes;
  }
  return n;
}


void srv_volumes_free_all(srv_ctx_t* ctx) {
  while (!core_list_is_empty(&ctx->volumes)) {
    core_list_t* node = core_list_front(&ctx->volumes);
    core_list_remove(node);
    free(CORE_CONTAINER_OF(node, srv_volume_t, link));
  }
  core_idmap_free(&ctx->volume_index);
  core_idmap_free(&ctx->volume_by_sha);
}
