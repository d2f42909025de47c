/* cmd_uploads.c: tus creation (POST /v1/uploads, docs/protocol.md
 * "Uploads"): the checks of Upload-Length, Upload-Metadata, Upload-Concat
 * (a partial upload, or a final one made of parts: upload_concat.c) and the
 * limits (per token, per address, the storage quota), dedup by an announced
 * sha256, and the creation without a body, answered 201 once the record
 * commits. A POST with a body streams like a PATCH (cmd_upload_patch.c,
 * cmd_upload_body.c); OPTIONS, HEAD, DELETE: cmd_tus.c. Loop thread only. */
#include "server/cmd_uploads.h"

#include <stdio.h>
#include <string.h>

#include "core/tus_header.h"
#include "server/cmd_upload_body.h"
#include "server/upload_concat.h"
#include "server/volumes.h"


/* The owner of a new upload: a digest prefix of its bearer token ("" when
 * tokens are off), into token[17]. */
static void owner_token(const srv_ctx_t* ctx,
                        const net_http_reader_t* r,
                        char token[17]) {
  token[0] = '\0';
  const char* auth = net_http_header(r, "Authorization");
  if (ctx->auth.count > 0 && auth != NULL) {
    unsigned char d[32];
    unsigned dlen = 0;
    EVP_Digest(auth, strlen(auth), d, &dlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++) {
      snprintf(token + 2 * i, 3, "%02x", d[i]);
    }
  }
}


static bool over_quota(const srv_upload_req_t* p, uint64_t length) {
  srv_ctx_t* ctx = p->ctx;
  if (ctx->cfg.role == SRV_ROLE_GATEWAY && !p->has_declared && !p->is_chunked) {
    /* No body: the admission checks Redis's count (cluster_uploads.c). A
     * creation with a body uses the count this gateway read last. */
    return false;
  }
  uint64_t quota = ctx->cfg.storage_quota_bytes;
  return quota > 0 && srv_storage_used_bytes(ctx) +
                              srv_uploads_reserved_bytes(ctx) + length >
                          quota;
}


/* A POST with `Upload-Concat: final;<urls>`: no Upload-Length, no body;
 * its parts are checked and held, it completes at once when a stored
 * volume has its announced sha256, else it is assembled once its record
 * commits (cmd_upload_body.c, maybe_complete). */
static srv_upload_t* create_final(srv_upload_req_t* p,
                                  srv_request_t* rq,
                                  const char* concat) {
  const net_http_reader_t* r = rq->http;
  srv_ctx_t* ctx = p->ctx;
  if (net_http_header(r, "Upload-Length") != NULL ||
      net_http_header(r, "Upload-Defer-Length") != NULL) {
    srv_upload_req_fail(p, 400, "invalid_length",
                        "a final upload's length is the sum of its parts: "
                        "send no Upload-Length");
    return NULL;
  }
  if (r->body_len > 0) {
    /* Never streamed (srv_cmd_upload_stream): a body, if any, is here. */
    srv_upload_req_fail(p, 400, "invalid_concat",
                        "a final upload takes no body");
    return NULL;
  }
  srv_upload_t* u = srv_upload_new(ctx);
  if (u == NULL) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
    return NULL;
  }
  u->concat = SRV_CONCAT_FINAL;
  u->state = SRV_UPLOAD_COMPLETING;
  snprintf(u->owner_ip, sizeof(u->owner_ip), "%s", rq->conn->client_ip);
  owner_token(ctx, r, u->owner_token);
  srv_concat_err_t err = {0};
  char why[160];
  const char* v = net_http_header(r, "Upload-Metadata");
  if (srv_concat_parse_final(u, concat, &err) != 0 ||
      srv_concat_check_parts(ctx, u, &err) != 0) {
    srv_upload_req_fail(p, err.status, err.code, err.msg);
    srv_upload_unref(u);
    return NULL;
  }
  if (v != NULL && srv_upload_parse_metadata(u, v, why, sizeof(why)) != 0) {
    srv_upload_req_fail(p, 400, "invalid_metadata", why);
    srv_upload_unref(u);
    return NULL;
  }
  srv_volume_t* same = srv_volume_find_sha(ctx, u->sha256);
  if (same != NULL) {
    /* Dedup: no join; the parts go once the record commits. */
    u->state = SRV_UPLOAD_COMPLETED;
    u->offset = u->length;
    memcpy(u->volume_id, same->id, sizeof(u->volume_id));
  } else if (over_quota(p, u->length)) {
    srv_upload_req_fail(
        p, 507, "insufficient_storage",
        "assembling the final upload would exceed the server's storage "
        "quota (limits.storage_quota_bytes): it needs its length again "
        "while the parts exist");
    srv_upload_unref(u);
    return NULL;
  }
  if (srv_upload_register(ctx, u) != 0) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
    srv_upload_unref(u);
    return NULL;
  }
  srv_concat_hold(ctx, u); /* until it completed, failed or was terminated */
  return u;
}


/* Checks a POST's headers and builds its upload (registered, not yet
 * committed). Returns NULL after srv_upload_req_fail(). */
srv_upload_t* srv_upload_create_checked(srv_upload_req_t* p,
                                        srv_request_t* rq) {
  const net_http_reader_t* r = rq->http;
  srv_ctx_t* ctx = p->ctx;
  const srv_config_t* c = &ctx->cfg;
  const char* v = net_http_header(r, "Tus-Resumable");
  uint64_t length = 0;
  if (v == NULL || strcmp(v, "1.0.0") != 0) {
    srv_upload_req_fail(p, 412, "unsupported_tus_version",
                        "send Tus-Resumable: 1.0.0");
    return NULL;
  }
  if (srv_tus_headers_repeated(p, r)) {
    return NULL;
  }
  const char* concat = net_http_header(r, "Upload-Concat");
  srv_concat_t kind = SRV_CONCAT_NONE;
  if (concat != NULL && strncmp(concat, "final;", 6) == 0) {
    return create_final(p, rq, concat);
  }
  if (concat != NULL && strcmp(concat, "partial") != 0) {
    srv_upload_req_fail(p, 400, "invalid_concat",
                        "Upload-Concat must be 'partial' or 'final;' and the "
                        "URLs of the partial uploads, separated by spaces");
    return NULL;
  }
  if (concat != NULL) {
    kind = SRV_CONCAT_PARTIAL;
  }
  if (!core_tus_parse_u64(net_http_header(r, "Upload-Length"), &length)) {
    srv_upload_req_fail(
        p, 400, "invalid_length",
        net_http_header(r, "Upload-Defer-Length") != NULL
            ? "Upload-Defer-Length is not supported: send Upload-Length"
            : "Upload-Length must be a non-negative integer");
    return NULL;
  }
  if (length > c->max_upload_bytes) {
    srv_upload_req_fail(
        p, 413, "payload_too_large",
        "Upload-Length is over Tus-Max-Size (limits.max_upload_bytes)");
    return NULL;
  }
  char token[17];
  owner_token(ctx, r, token);
  if (c->max_uploads_per_token > 0 && ctx->auth.count > 0 &&
      srv_uploads_count_token(ctx, token) >= c->max_uploads_per_token) {
    srv_upload_req_fail(
        p, 429, "too_many_uploads",
        "this token has as many incomplete uploads as the server allows "
        "(limits.max_uploads_per_token)");
    return NULL;
  }
  if (c->max_uploads_per_ip > 0 &&
      srv_uploads_count_ip(ctx, rq->conn->client_ip) >= c->max_uploads_per_ip) {
    srv_upload_req_fail(
        p, 429, "too_many_uploads",
        "this address has as many incomplete uploads as the server allows "
        "(limits.max_uploads_per_ip)");
    return NULL;
  }
  srv_upload_t* u = srv_upload_new(ctx);
  if (u == NULL) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
    return NULL;
  }
  u->length = length;
  u->concat = kind;
  snprintf(u->owner_ip, sizeof(u->owner_ip), "%s", rq->conn->client_ip);
  memcpy(u->owner_token, token, sizeof(token));
  char err[160];
  v = net_http_header(r, "Upload-Metadata");
  if (v != NULL && srv_upload_parse_metadata(u, v, err, sizeof(err)) != 0) {
    srv_upload_req_fail(p, 400, "invalid_metadata", err);
    srv_upload_unref(u);
    return NULL;
  }
  /* A part's bytes are not the volume's: only a whole upload dedups. */
  srv_volume_t* same =
      kind == SRV_CONCAT_NONE ? srv_volume_find_sha(ctx, u->sha256) : NULL;
  if (same != NULL) {
    /* Dedup: these bytes are stored already; nothing needs to be sent. */
    u->state = SRV_UPLOAD_COMPLETED;
    u->offset = length;
    memcpy(u->volume_id, same->id, sizeof(u->volume_id));
  } else if (over_quota(p, length)) {
    srv_upload_req_fail(
        p, 507, "insufficient_storage",
        "the upload would exceed the server's storage quota "
        "(limits.storage_quota_bytes); delete volumes or jobs first");
    srv_upload_unref(u);
    return NULL;
  }
  if (srv_upload_register(ctx, u) != 0) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
    srv_upload_unref(u);
    return NULL;
  }
  return u;
}


bool srv_upload_patch_over_quota(srv_ctx_t* ctx,
                                 const srv_upload_t* u,
                                 uint64_t declared) {
  uint64_t quota = ctx->cfg.storage_quota_bytes;
  if (quota == 0) {
    return false;
  }
  /* What is on disk, not what creation reserved: a quota lowered across a
   * restart, or artifacts written since, may leave less room than the
   * reservation promised. */
  uint64_t more = u->length - u->offset;
  if (declared < more) {
    more = declared;
  }
  uint64_t used = srv_storage_used_bytes(ctx) + srv_uploads_stored_bytes(ctx);
  return used > quota || more > quota - used;
}


/* POST without a body: creation. */
srv_cmd_result_t srv_cmd_upload_create(srv_request_t* rq) {
  srv_upload_req_t* p = srv_upload_req_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  p->is_create = true;
  srv_upload_t* u = srv_upload_create_checked(p, rq);
  if (u == NULL) {
    srv_tus_reply_error(rq->conn, &rq->mode, p->err_status, p->err_code,
                        p->err_msg);
    srv_upload_req_free(p);
    return SRV_CMD_DONE;
  }
  p->u = u; /* takes the reference */
  u->is_busy = true;
  p->owns_busy = true;
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL || srv_cluster_upload_admit(p) != 0) {
    srv_upload_drop_new(p->ctx, u);
    srv_upload_req_free(p);
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING;
}
