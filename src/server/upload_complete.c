/* upload_complete.c: an upload's completion. See upload_complete.h. The
 * completing record of a plain upload is queued before the validation
 * starts; nothing waits for it, since a restart resumes a receiving upload
 * whose offset is its length all the same (the record that made it so is
 * durable). A final's first record already says completing. Waiters are
 * called after the completed record (or the removal) commits; the upload's
 * file goes only after that, so a crash at any point leaves either a file
 * to complete again or a record that no longer needs it. */
#include "server/upload_complete.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/upload_concat.h"
#include "server/upload_join.h"
#include "server/volumes.h"


/* Calls every waiter of `u` with the outcome. */
static void wake(srv_upload_t* u, int status, const char* why) {
  while (!core_list_is_empty(&u->waiters)) {
    core_list_t* node = core_list_front(&u->waiters);
    core_list_remove(node);
    srv_upload_waiter_t* w = CORE_CONTAINER_OF(node, srv_upload_waiter_t, link);
    w->cb(w, status, why);
  }
}


static void on_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


/* Removes the upload's file (on the pool). */
static void remove_file(srv_ctx_t* ctx, const srv_upload_t* u) {
  uv_fs_t* req = malloc(sizeof(*req));
  if (req == NULL) {
    return; /* left for the start-up's orphan removal */
  }
  char path[1200];
  srv_upload_path(ctx, u->id, path, sizeof(path));
  if (uv_fs_unlink(ctx->loop, req, path, on_unlinked) != 0) {
    free(req);
  }
}


static void on_completed_saved(void* arg, int status) {
  srv_upload_t* u = arg;
  if (status == 0 || u->is_deleted) {
    /* The record names the volume: the upload's copy of the bytes (a second
     * link to the volume's file, or a duplicate) can go, and so can the
     * parts of a final. Not when it was terminated: then the parts were
     * let go of, and are the client's to use again. */
    remove_file(u->ctx, u);
    if (u->concat == SRV_CONCAT_FINAL && !u->is_deleted) {
      srv_concat_consume(u->ctx, u);
    }
  } else {
    /* Not recorded, but the volume is: a restart completes the upload
     * again from its file (kept) and finds that volume by its sha256, so
     * that is what HEAD tells from now on (as jobs.c does). */
    srv_log(&u->ctx->log, SRV_LOG_ERROR, "upload.completion_not_durable",
            "s:upload_id", u->id, NULL);
    srv_upload_show_as_durable(u);
  }
  wake(u, u->is_deleted ? -ECANCELED : status,
       u->is_deleted ? "the upload was terminated"
                     : "the upload could not be recorded");
  srv_upload_unref(u);
}


static void on_failed_saved(void* arg, int status) {
  srv_upload_t* u = arg;
  if (status != 0 && !u->is_deleted) {
    /* A restart joins and validates the final again, and fails alike. */
    srv_log(&u->ctx->log, SRV_LOG_ERROR, "upload.failure_not_durable",
            "s:upload_id", u->id, NULL);
    srv_upload_show_as_durable(u);
  }
}


/* A final that cannot become a volume stays, failed, until it expires, so
 * HEAD can say why (once that is recorded); its file goes and its parts
 * are free again. */
static void final_failed(srv_ctx_t* ctx,
                         srv_upload_t* u,
                         int status,
                         const char* why) {
  srv_log(&ctx->log, SRV_LOG_INFO, "upload.final_failed", "s:upload_id", u->id,
          "s:why", why, NULL);
  srv_concat_release(ctx, u);
  remove_file(ctx, u);
  if (u->is_deleted) {
    return;
  }
  u->state = SRV_UPLOAD_FAILED;
  snprintf(u->error_code, sizeof(u->error_code), "%s",
           status == -EINVAL   ? "invalid_volume"
           : status == -ENOSPC ? "insufficient_storage"
                               : "internal");
  snprintf(u->error_msg, sizeof(u->error_msg), "%s", why);
  int rc = srv_upload_save(ctx, u, on_failed_saved, u);
  if (rc != 0 && rc != -ESHUTDOWN) {
    on_failed_saved(u, rc);
  }
}


static void on_invalid_removed(void* arg, int status) {
  srv_upload_t* u = arg;
  /* Answered once the removal is durable: a restart before would complete
   * the upload again (and fail alike), so a 422 then would be news from
   * the future. */
  wake(u, status == 0 ? -EINVAL : status,
       status == 0 ? u->error_msg
                   : "the upload's removal could not be recorded");
  srv_upload_unref(u);
}


static void on_volume(void* arg,
                      int status,
                      srv_volume_t* vol,
                      const char* why) {
  srv_upload_t* u = arg;
  srv_ctx_t* ctx = u->ctx;
  if (status == -ESHUTDOWN) {
    /* The store closed first: the record still says completing, and the
     * restart completes it again from the file, which stays. */
    wake(u, status, "the server is stopping");
    srv_upload_unref(u);
    return;
  }
  if (status != 0 && u->concat == SRV_CONCAT_FINAL) {
    final_failed(ctx, u, status, why);
    srv_upload_unref(u);
    return;
  }
  if (status == -EINVAL && !u->is_deleted) {
    srv_log(&ctx->log, SRV_LOG_INFO, "upload.invalid", "s:upload_id", u->id,
            "s:why", why, NULL);
    u->state = SRV_UPLOAD_RECEIVING;
    snprintf(u->error_msg, sizeof(u->error_msg), "%s", why);
    int rc = srv_upload_remove(ctx, u, false, on_invalid_removed, u);
    if (rc == 0) {
      return; /* on_invalid_removed has the completion's reference */
    }
    /* -EALREADY: a DELETE's removal is being committed meanwhile. */
    status = rc == -EALREADY ? -ECANCELED : rc;
    why = rc == -EALREADY ? "the upload was terminated"
                          : "the upload's removal could not be recorded";
  }
  if (status != 0) {
    /* Terminated meanwhile, or a failure that says nothing of the bytes
     * (I/O, memory, the store): the upload stays, all bytes in, and an
     * empty PATCH at its end (or a restart) completes it again. */
    if (!u->is_deleted) {
      srv_log(&ctx->log, SRV_LOG_WARN, "upload.completion_failed",
              "s:upload_id", u->id, "s:why", why, NULL);
      u->state = SRV_UPLOAD_RECEIVING;
    }
    wake(u, u->is_deleted ? -ECANCELED : status, why);
    srv_upload_unref(u);
    return;
  }
  memcpy(u->volume_id, vol->id, sizeof(u->volume_id));
  u->state = SRV_UPLOAD_COMPLETED;
  u->offset = u->length; /* a final's offset is its length once complete */
  srv_log(&ctx->log, SRV_LOG_INFO, "upload.completed", "s:upload_id", u->id,
          "s:volume_id", vol->id, NULL);
  int rc = u->is_deleted ? 0 : srv_upload_save(ctx, u, on_completed_saved, u);
  if (u->is_deleted || rc != 0) {
    /* The volume is durable; a restart without this record completes
     * the upload again and finds the volume by its sha256. */
    on_completed_saved(u, rc);
  }
}


int srv_upload_complete_start(srv_ctx_t* ctx, srv_upload_t* u) {
  assert(u->state == SRV_UPLOAD_RECEIVING && u->offset == u->length);
  assert(u->concat == SRV_CONCAT_NONE);
  u->state = SRV_UPLOAD_COMPLETING;
  int rc = srv_volume_complete(ctx, u, on_volume, u);
  if (rc != 0) {
    u->state = SRV_UPLOAD_RECEIVING;
    return rc;
  }
  srv_upload_ref(u);                   /* until on_completed_saved */
  srv_upload_save(ctx, u, NULL, NULL); /* informative: see above */
  return 0;
}


/* A step of a final's join landed: the next one, or the validation. The
 * join holds a reference on the final, which the validation takes over. */
static void on_join_step(srv_upload_join_t* j) {
  srv_upload_t* u = j->data;
  srv_ctx_t* ctx = u->ctx;
  if (u->is_deleted || ctx->is_stopping) {
    /* Terminated: its file goes (DELETE left it to us, since a step could
     * have made it again). Stopping: the restart joins again. */
    if (u->is_deleted) {
      remove_file(ctx, u);
    }
    free(j);
    srv_upload_unref(u);
    return;
  }
  int rc = j->status;
  char why[sizeof(j->why) + 32];
  snprintf(why, sizeof(why), "%s", j->why);
  if (rc == 0 && !j->is_done) {
    rc = srv_upload_join_step(ctx->loop, j, on_join_step);
    if (rc == 0) {
      return;
    }
    snprintf(why, sizeof(why), "the join could not go on");
  }
  free(j);
  if (rc == 0) {
    rc = srv_volume_complete(ctx, u, on_volume, u);
    if (rc == 0) {
      return;
    }
    snprintf(why, sizeof(why), "the validation could not start");
  }
  final_failed(ctx, u, rc == -ENOSPC ? rc : -EIO, why);
  srv_upload_unref(u);
}


void srv_upload_final_start(srv_ctx_t* ctx, srv_upload_t* u) {
  assert(u->concat == SRV_CONCAT_FINAL && u->state == SRV_UPLOAD_COMPLETING);
  char path[1200];
  srv_upload_path(ctx, u->id, path, sizeof(path));
  srv_upload_join_t* j = srv_upload_join_new(path, u->part_count, u);
  if (j == NULL) {
    final_failed(ctx, u, -ENOMEM, "out of memory");
    return;
  }
  for (unsigned i = 0; i < u->part_count; i++) {
    srv_upload_t* part = srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
    if (part == NULL || part->concat != SRV_CONCAT_PARTIAL ||
        part->state != SRV_UPLOAD_COMPLETED) {
      char why[96];
      snprintf(why, sizeof(why), "part %s is gone", u->parts[i]);
      free(j);
      final_failed(ctx, u, -EIO, why);
      return;
    }
    srv_upload_path(ctx, part->id, j->parts[i].path, sizeof(j->parts[i].path));
    j->parts[i].len = part->length;
  }
  srv_upload_ref(u); /* until the completion's end */
  if (srv_upload_join_step(ctx->loop, j, on_join_step) != 0) {
    free(j);
    final_failed(ctx, u, -ENOMEM, "the join could not start");
    srv_upload_unref(u);
  }
}


bool srv_upload_is_completing(const srv_upload_t* u) {
  return u->concat == SRV_CONCAT_NONE && !u->is_deleted &&
         (u->state == SRV_UPLOAD_COMPLETING ||
          (u->state == SRV_UPLOAD_COMPLETED &&
           u->durable_state != SRV_UPLOAD_COMPLETED));
}


void srv_upload_complete_wait(srv_upload_t* u, srv_upload_waiter_t* w) {
  assert(srv_upload_is_completing(u));
  core_list_push_back(&u->waiters, &w->link);
}


int srv_uploads_resume(srv_ctx_t* ctx) {
  srv_concat_restore(ctx);
  /* Collected first: a final that fails at once lets go of its parts,
   * which may remove some, and the list must not change under the loop. */
  size_t count = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    count += CORE_CONTAINER_OF(it, srv_upload_t, link)->state ==
             SRV_UPLOAD_COMPLETING;
  }
  srv_upload_t** todo = calloc(count > 0 ? count : 1, sizeof(*todo));
  if (todo == NULL) {
    return 0; /* they stay completing: the next start-up resumes them */
  }
  size_t n = 0;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    if (u->state == SRV_UPLOAD_COMPLETING) {
      srv_upload_ref(u);
      todo[n++] = u;
    }
  }
  int started = 0;
  for (size_t i = 0; i < n; i++) {
    srv_upload_t* u = todo[i];
    int rc = 0;
    if (u->concat == SRV_CONCAT_FINAL) {
      srv_upload_final_start(ctx, u);
    } else {
      u->state = SRV_UPLOAD_RECEIVING;
      rc = srv_upload_complete_start(ctx, u);
    }
    srv_log(&ctx->log, rc == 0 ? SRV_LOG_INFO : SRV_LOG_WARN,
            "upload.completion_resumed", "s:upload_id", u->id, "i:status",
            (int64_t) rc, NULL);
    started += rc == 0;
    srv_upload_unref(u);
  }
  free(todo);
  return started;
}
