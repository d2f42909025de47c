/* cmd_upload_patch.c: where a streamed tus request begins and ends: the
 * checks of a PATCH's headers (version, upload, media type, offset,
 * length, checksum) before any byte of its body is read, the choice of a
 * sink for a PATCH or a POST with a body, and the end of the body. The
 * bytes themselves: cmd_upload_body.c. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tus_header.h"
#include "server/cmd_upload_body.h"
#include "server/cmd_uploads.h"

bool srv_cmd_tus_version_ok(srv_request_t* rq) {
  const char* v = net_http_header(rq->http, "Tus-Resumable");
  if (v != NULL && strcmp(v, "1.0.0") == 0) {
    return true;
  }
  srv_tus_reply_error(rq->conn, &rq->mode, 412, "unsupported_tus_version",
                      "send Tus-Resumable: 1.0.0");
  return false;
}


static bool is_octet_stream(const net_http_reader_t* r) {
  const char* ct = net_http_header(r, "Content-Type");
  return ct != NULL &&
         strncasecmp(ct, "application/offset+octet-stream", 31) == 0 &&
         (ct[31] == '\0' || ct[31] == ';' || ct[31] == ' ');
}


/* Upload-Checksum: "<algorithm> <base64>" (core_tus_parse_checksum); the
 * digest of the body is computed as it is written. */
static int parse_checksum(srv_upload_req_t* p, const char* v) {
  core_tus_checksum_t sum;
  char err[160];
  int rc = core_tus_parse_checksum(v, &sum, err, sizeof(err));
  if (rc != 0) {
    srv_upload_req_fail(
        p, 400, rc == -ENOTSUP ? "unsupported_checksum" : "invalid_checksum",
        err);
    return -1;
  }
  p->md = EVP_MD_CTX_new();
  const EVP_MD* type = sum.algo == CORE_TUS_SHA1 ? EVP_sha1() : EVP_sha256();
  if (p->md == NULL || EVP_DigestInit_ex(p->md, type, NULL) != 1) {
    return -ENOMEM;
  }
  memcpy(p->want, sum.digest, sum.len);
  p->want_len = sum.len;
  return 0;
}


/* A PATCH's headers: every check that can be made before the body. */
static void patch_check(srv_upload_req_t* p,
                        srv_request_t* rq,
                        srv_upload_t* u) {
  const net_http_reader_t* r = rq->http;
  const char* v = net_http_header(r, "Tus-Resumable");
  uint64_t offset = 0;
  uint64_t length = 0;
  if (v == NULL || strcmp(v, "1.0.0") != 0) {
    srv_upload_req_fail(p, 412, "unsupported_tus_version",
                        "send Tus-Resumable: 1.0.0");
  } else if (u == NULL || !u->is_committed) {
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "no upload has this id (it may have "
                        "expired or been terminated)");
  } else if (u->concat == SRV_CONCAT_FINAL) {
    /* tus: 403, and neither the final nor its parts change. */
    srv_upload_req_fail(p, 403, "upload_is_final",
                        "a final upload takes no PATCH: it is assembled from "
                        "its parts");
  } else if (u->final_refs > 0) {
    srv_upload_req_fail(p, 409, "part_in_use",
                        "a final upload is being assembled from this partial "
                        "upload");
  } else if (!is_octet_stream(r)) {
    srv_upload_req_fail(
        p, 415, "unsupported_media_type",
        "PATCH needs Content-Type: application/offset+octet-stream");
  } else if (!core_tus_parse_u64(net_http_header(r, "Upload-Offset"),
                                 &offset)) {
    srv_upload_req_fail(p, 400, "invalid_offset",
                        "Upload-Offset must be an integer");
  } else if (srv_upload_is_completing(u) && offset == u->length) {
    p->u = u; /* an empty PATCH at the end: answers after the completion */
    srv_upload_ref(u);
    p->is_discarding = true;
    p->is_waiting = true;
  } else if (u->is_busy) {
    srv_upload_req_fail(p, 409, "upload_busy",
                        "another PATCH is writing this upload");
  } else if (offset != u->offset) {
    char msg[128];
    snprintf(msg, sizeof(msg), "Upload-Offset is %llu; the upload is at %llu",
             (unsigned long long) offset, (unsigned long long) u->offset);
    srv_upload_req_fail(p, 409, "offset_mismatch", msg);
  } else if (net_http_header(r, "Upload-Length") != NULL &&
             (!core_tus_parse_u64(net_http_header(r, "Upload-Length"),
                                  &length) ||
              length != u->length)) {
    srv_upload_req_fail(p, 400, "length_changed",
                        "Upload-Length cannot change");
  } else if (net_http_header(r, "Upload-Checksum") != NULL &&
             parse_checksum(p, net_http_header(r, "Upload-Checksum")) != 0) {
    srv_upload_req_fail(p, 400, "invalid_checksum",
                        "Upload-Checksum is not valid");
  } else if (u->state != SRV_UPLOAD_RECEIVING) {
    p->u = u; /* complete already: only an empty PATCH fits */
    srv_upload_ref(u);
    p->is_discarding = true;
  } else if (srv_upload_patch_over_quota(p->ctx, u, r)) {
    srv_upload_req_fail(
        p, 507, "insufficient_storage",
        "the PATCH would take volumes, job artifacts and incomplete uploads "
        "over the storage quota (limits.storage_quota_bytes); delete volumes "
        "or jobs first");
  } else if (srv_upload_req_start(p, u) != 0) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
  }
}


srv_body_sink_t* srv_cmd_upload_stream(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len) {
  unsigned method = net_http_method(rq->http);
  const char* concat = net_http_header(rq->http, "Upload-Concat");
  if (method == HTTP_POST &&
      (!is_octet_stream(rq->http) ||
       (concat != NULL && strncmp(concat, "final;", 6) == 0))) {
    /* Creation without a body, or a final upload (which takes none and is
     * refused if it has one): gathered as usual. */
    return NULL;
  }
  srv_upload_req_t* p = srv_upload_req_new(rq);
  if (p == NULL) {
    return NULL; /* the request is then answered without streaming */
  }
  if (method == HTTP_POST) {
    p->is_create = true;
    srv_upload_t* u = srv_upload_create_checked(p, rq);
    if (u != NULL) {
      if (u->state != SRV_UPLOAD_RECEIVING) {
        p->u = u;
        srv_upload_ref(u);
        p->is_discarding = true;
      } else if (srv_upload_req_start(p, u) != 0) {
        srv_upload_req_fail(p, 503, "overloaded",
                            "the server is out of memory");
      }
      srv_upload_unref(u);
    }
  } else {
    patch_check(p, rq, srv_upload_find(p->ctx, id, id_len));
  }
  return &p->sink;
}


/* The end of a streamed request (PATCH, or POST with a body). */
srv_cmd_result_t srv_cmd_upload_body_done(srv_request_t* rq) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(rq->sink, srv_upload_req_t, sink);
  p->is_ended = true;
  p->conn = NULL;
  p->mode = rq->mode;
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL) {
    srv_upload_req_free(p);
    return srv_cmd_reply_oom(rq);
  }
  if (p->is_create && p->err_status != 0 && p->u != NULL) {
    srv_upload_drop_new(p->ctx, p->u);
  }
  srv_upload_req_finish(p);
  return SRV_CMD_PENDING;
}
