/* upload_limits.c: what uploads count against the limits (per token, per
 * address, the storage quota) and their expiry, over the registry of
 * uploads.c. See uploads.h. Loop thread only. */
#include <string.h>

#include "server/uploads.h"


/* Counted against the per-token and per-address limits: what a client
 * is still sending, and the partial uploads it has sent (they hold disk
 * until a final consumes them or they expire). A final holds no slot: its
 * parts do. */
static bool is_open(const srv_upload_t* u) {
  return u->concat == SRV_CONCAT_PARTIAL ||
         (u->concat == SRV_CONCAT_NONE && u->state != SRV_UPLOAD_COMPLETED);
}


/* Bytes `u` holds or will hold on disk beside volumes and artifacts (its
 * length when `reserved`, else its durable offset); a final being
 * assembled holds a copy of its parts. */
static uint64_t upload_bytes(const srv_upload_t* u, bool reserved) {
  if (u->concat == SRV_CONCAT_FINAL) {
    return u->state == SRV_UPLOAD_COMPLETING ? u->length : 0;
  }
  if (!is_open(u)) {
    return 0;
  }
  return reserved ? u->length : u->offset;
}


unsigned srv_uploads_count_token(srv_ctx_t* ctx, const char* token) {
  unsigned n = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    n += is_open(u) && strcmp(u->owner_token, token) == 0;
  }
  return n;
}


unsigned srv_uploads_count_ip(srv_ctx_t* ctx, const char* ip) {
  unsigned n = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    n += is_open(u) && strcmp(u->owner_ip, ip) == 0;
  }
  return n;
}


uint64_t srv_uploads_reserved_bytes(srv_ctx_t* ctx) {
  uint64_t n = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    n += upload_bytes(CORE_CONTAINER_OF(it, srv_upload_t, link), true);
  }
  return n;
}


uint64_t srv_uploads_stored_bytes(srv_ctx_t* ctx) {
  uint64_t n = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    n += upload_bytes(CORE_CONTAINER_OF(it, srv_upload_t, link), false);
  }
  return n;
}


void srv_uploads_housekeeping(srv_ctx_t* ctx) {
  int64_t now = srv_now_us();
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    /* A part a final is being assembled from stays until it is done, and
     * a record being committed is not removed under its save. */
    if (u->is_busy || u->is_terminating || u->state == SRV_UPLOAD_COMPLETING ||
        u->final_refs > 0 || u->saves_in_flight > 0 || now < u->expires_us) {
      continue;
    }
    srv_log(&ctx->log, SRV_LOG_INFO, "upload.expired", "s:upload_id", u->id,
            "i:offset", (int64_t) u->offset, NULL);
    srv_upload_remove(ctx, u, false, NULL, NULL);
  }
}
