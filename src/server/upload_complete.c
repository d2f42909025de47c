/* upload_complete.c: an upload's completion. See upload_complete.h. The
 * completing record is queued before the validation starts; nothing waits
 * for it, since a restart resumes a receiving upload whose offset is its
 * length all the same (the record that made it so is durable). Waiters are
 * called after the completed record (or the removal) commits. */
#include "server/upload_complete.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

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


static void on_completed_saved(void* arg, int status) {
  srv_upload_t* u = arg;
  wake(u, status, status == 0 ? NULL : "the upload could not be recorded");
  srv_upload_unref(u);
}


static void on_volume(void* arg,
                      int status,
                      srv_volume_t* vol,
                      const char* why) {
  srv_upload_t* u = arg;
  srv_ctx_t* ctx = u->ctx;
  if (status != 0) {
    srv_log(&ctx->log, SRV_LOG_INFO, "upload.invalid", "s:upload_id", u->id,
            "s:why", why, NULL);
    /* Woken now: the removal's commit is no news to a waiter, whose answer
     * says the upload is gone either way. */
    u->state = SRV_UPLOAD_RECEIVING;
    srv_upload_remove(ctx, u, false, NULL, NULL);
    wake(u, status, why);
    srv_upload_unref(u);
    return;
  }
  memcpy(u->volume_id, vol->id, sizeof(u->volume_id));
  u->state = SRV_UPLOAD_COMPLETED;
  srv_log(&ctx->log, SRV_LOG_INFO, "upload.completed", "s:upload_id", u->id,
          "s:volume_id", vol->id, NULL);
  /* The file became the volume's, or a stored volume has the same bytes:
   * either way the upload keeps only its record (until it expires). */
  if (u->is_deleted || srv_upload_save(ctx, u, on_completed_saved, u) != 0) {
    /* The volume is durable; a restart without this record completes
     * the upload again and finds the volume by its sha256. */
    on_completed_saved(u, u->is_deleted ? 0 : -ENOMEM);
  }
}


int srv_upload_complete_start(srv_ctx_t* ctx, srv_upload_t* u) {
  assert(u->state == SRV_UPLOAD_RECEIVING && u->offset == u->length);
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


void srv_upload_complete_wait(srv_upload_t* u, srv_upload_waiter_t* w) {
  assert(u->state == SRV_UPLOAD_COMPLETING);
  core_list_push_back(&u->waiters, &w->link);
}


int srv_uploads_resume(srv_ctx_t* ctx) {
  int started = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    if (u->state != SRV_UPLOAD_COMPLETING) {
      continue;
    }
    u->state = SRV_UPLOAD_RECEIVING;
    int rc = srv_upload_complete_start(ctx, u);
    srv_log(&ctx->log, rc == 0 ? SRV_LOG_INFO : SRV_LOG_WARN,
            "upload.completion_resumed", "s:upload_id", u->id, "i:status",
            (int64_t) rc, NULL);
    started += rc == 0;
  }
  return started;
}
