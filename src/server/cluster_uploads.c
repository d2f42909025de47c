/* cluster_uploads.c: a gateway's admission of a new tus upload
 * (POST /v1/uploads without a body), between its checks (cmd_uploads.c)
 * and its first record. One script reads what the cluster shares: the
 * volume with the announced sha256, if there is one (cm:vol:sha256:<hex>
 * and that volume's record: then the upload completes at once with it and
 * the client sends no bytes, as on --role all), and the bytes of the
 * cluster's volumes and artifacts (cm:storage:used), which the storage
 * quota counts together with this gateway's own uploads (507 past it).
 * The counter read is kept (srv_cluster_t.shared_used_bytes): a PATCH's
 * quota check, which cannot wait for Redis, uses the latest value this
 * gateway read. Redis down: 503 redis_unavailable and no upload (no
 * Location was given). Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/cmd_upload_body.h"
#include "server/volumes.h"

/* KEYS: the sha256 key ("" when none was announced), the usage counter.
 * {the volume's id or nil, the counter}. */
static const char k_admit_script[] =
    "local id = false\n"
    "if KEYS[1] ~= '' then\n"
    "  local other = redis.call('GET', KEYS[1])\n"
    "  if other and redis.call('EXISTS', 'cm:vol:' .. other) == 1 then\n"
    "    id = other\n"
    "  end\n"
    "end\n"
    "return {id, tonumber(redis.call('GET', KEYS[2]) or '0')}\n";


static void refuse(srv_upload_req_t* p,
                   int status,
                   const char* code,
                   const char* msg) {
  srv_upload_drop_new(p->ctx, p->u); /* the client got no Location */
  srv_upload_req_fail(p, status, code, msg);
  srv_upload_req_answer(p);
}


static void save(srv_upload_req_t* p) {
  if (srv_upload_save(p->ctx, p->u, srv_upload_req_on_saved, p) != 0) {
    refuse(p, 503, "overloaded", "the server is out of memory");
  }
}


static void on_admit(void* arg, redisReply* reply, int status) {
  srv_upload_req_t* p = arg;
  srv_ctx_t* ctx = p->ctx;
  srv_upload_t* u = p->u;
  if (status == 0 &&
      (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
       reply->element[1]->type != REDIS_REPLY_INTEGER)) {
    status = -EIO;
  }
  if (status != 0) {
    refuse(p, 503, status == -ETIMEDOUT ? "redis_timeout" : "redis_unavailable",
           "Redis did not answer, so the upload was not created");
    return;
  }
  long long used = reply->element[1]->integer;
  ctx->cluster->shared_used_bytes = used > 0 ? (uint64_t) used : 0;
  const redisReply* id = reply->element[0];
  if (id->type == REDIS_REPLY_STRING && core_uuid_is_valid(id->str, id->len) &&
      u->concat == SRV_CONCAT_NONE) {
    /* Dedup: these bytes are stored already; nothing needs to be sent. */
    u->state = SRV_UPLOAD_COMPLETED;
    u->offset = u->length;
    memcpy(u->volume_id, id->str, id->len);
    u->volume_id[id->len] = '\0';
    save(p);
    return;
  }
  uint64_t quota = ctx->cfg.storage_quota_bytes;
  /* This upload is registered: the reservations count its length. */
  if (quota > 0 &&
      ctx->cluster->shared_used_bytes + srv_uploads_reserved_bytes(ctx) >
          quota) {
    refuse(p, 507, "insufficient_storage",
           u->concat == SRV_CONCAT_FINAL
               ? "assembling the final upload would exceed the cluster's "
                 "storage quota (limits.storage_quota_bytes): it needs its "
                 "length again while the parts exist"
               : "the upload would exceed the cluster's storage quota "
                 "(limits.storage_quota_bytes); delete volumes or jobs "
                 "first");
    return;
  }
  save(p);
}


int srv_cluster_upload_admit(srv_upload_req_t* p) {
  srv_ctx_t* ctx = p->ctx;
  srv_upload_t* u = p->u;
  bool dedup = u->sha256[0] != '\0' && u->concat == SRV_CONCAT_NONE &&
               u->state != SRV_UPLOAD_COMPLETED;
  if (ctx->cfg.role != SRV_ROLE_GATEWAY || ctx->cluster == NULL ||
      (!dedup && ctx->cfg.storage_quota_bytes == 0)) {
    return srv_upload_save(ctx, u, srv_upload_req_on_saved, p);
  }
  char sha_key[96] = "";
  if (dedup) {
    srv_cluster_sha_key(u->sha256, sha_key, sizeof(sha_key));
  }
  const char* argv[] = {"EVAL", k_admit_script, "2", sha_key,
                        SRV_CLUSTER_USED_KEY};
  int rc = srv_redis_command_str(ctx->cluster->cmd, on_admit, p, 5, argv);
  if (rc == -ENOMEM) {
    return rc;
  }
  if (rc != 0) {
    refuse(p, 503, rc == -EBUSY ? "overloaded" : "redis_unavailable",
           rc == -EBUSY ? "too many Redis commands are in flight"
                        : "Redis is not reachable, so the upload was not "
                          "created");
  }
  return 0;
}
