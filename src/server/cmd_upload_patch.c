/* cmd_upload_patch.c: where a streamed tus request begins and ends: the
 * checks of a PATCH before any byte of its body is read -- first its
 * headers (version, upload, media type, offset, length, checksum, repeated
 * headers), then the upload's state (busy, offset, room, quota), which may
 * have to wait while a PATCH whose client left finishes -- the choice of a
 * sink for a PATCH or a POST with a body, a refusal told at once when the
 * body would be large, and the end of the body. The bytes themselves:
 * cmd_upload_body.c. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tus_header.h"
#include "server/cmd_upload_body.h"
#include "server/cmd_uploads.h"

/* A refused request whose body is larger (or of unknown length) is
 * answered at once and its connection ended; a smaller body is read and
 * dropped, so the connection can carry the client's next request. */
#define DISCARD_MAX (1u << 20)

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


/* Whether header `name` appears more than once: which one counts would
 * depend on who reads it (a proxy may take the other), so it is refused. */
static bool is_repeated(const net_http_reader_t* r, const char* name) {
  unsigned n = 0;
  for (unsigned i = 0; i < r->header_count; i++) {
    n += r->value_off[i] != UINT32_MAX &&
         strcasecmp(r->text + r->name_off[i], name) == 0;
  }
  return n > 1;
}


bool srv_tus_headers_repeated(srv_upload_req_t* p, const net_http_reader_t* r) {
  static const struct {
    const char* name;
    const char* code;
  } tus[] = {{"Upload-Offset", "invalid_offset"},
             {"Upload-Length", "invalid_length"},
             {"Upload-Checksum", "invalid_checksum"},
             {"Upload-Metadata", "invalid_metadata"},
             {"Upload-Concat", "invalid_concat"},
             {"Tus-Resumable", "unsupported_tus_version"}};
  for (size_t i = 0; i < sizeof(tus) / sizeof(tus[0]); i++) {
    if (is_repeated(r, tus[i].name)) {
      char msg[80];
      snprintf(msg, sizeof(msg), "%s is repeated: send it once", tus[i].name);
      srv_upload_req_fail(p, 400, tus[i].code, msg);
      return true;
    }
  }
  return false;
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
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
    return -1;
  }
  memcpy(p->want, sum.digest, sum.len);
  p->want_len = sum.len;
  return 0;
}


/* A PATCH's headers on their own: 0, or -1 after srv_upload_req_fail. */
static int patch_headers(srv_upload_req_t* p,
                         const net_http_reader_t* r,
                         const srv_upload_t* u) {
  const char* v = net_http_header(r, "Tus-Resumable");
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
  } else if (!is_octet_stream(r)) {
    srv_upload_req_fail(
        p, 415, "unsupported_media_type",
        "PATCH needs Content-Type: application/offset+octet-stream");
  } else if (srv_tus_headers_repeated(p, r)) {
    /* failed */
  } else if (!core_tus_parse_u64(net_http_header(r, "Upload-Offset"),
                                 &p->want_offset)) {
    srv_upload_req_fail(p, 400, "invalid_offset",
                        "Upload-Offset must be an integer");
  } else if (net_http_header(r, "Upload-Length") != NULL &&
             !core_tus_parse_u64(net_http_header(r, "Upload-Length"),
                                 &p->want_length)) {
    srv_upload_req_fail(p, 400, "length_changed",
                        "Upload-Length cannot change");
  } else if (net_http_header(r, "Upload-Checksum") != NULL &&
             parse_checksum(p, net_http_header(r, "Upload-Checksum")) != 0) {
    /* failed */
  }
  p->has_length = net_http_header(r, "Upload-Length") != NULL;
  return p->err_status == 0 ? 0 : -1;
}


/* The upload's state against the PATCH's headers: where it may write and
 * how much; taken when the headers are complete, or again once a PATCH
 * whose client left has finished (p->is_parked until then). */
static void patch_state(srv_upload_req_t* p, srv_upload_t* u) {
  uint64_t max = p->ctx->cfg.max_upload_bytes;
  uint64_t end = u->length < max ? u->length : max;
  uint64_t room = end > u->offset ? end - u->offset : 0;
  if (u->is_deleted) {
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "the upload was terminated");
  } else if (u->is_terminating && !p->was_parked) {
    /* Its removal is being committed: answered by the outcome (404, or
     * on as if nothing happened), as a client sees durable state only. */
    p->u = u;
    srv_upload_ref(u);
    p->is_parked = p->was_parked = true;
    srv_upload_termination_wait(u, &p->settle);
  } else if (u->is_terminating) {
    srv_upload_req_fail(p, 409, "upload_terminating",
                        "the upload's termination is being recorded; HEAD "
                        "tells when it is gone (404)");
  } else if (u->final_refs > 0) {
    srv_upload_req_fail(p, 409, "part_in_use",
                        "a final upload is being assembled from this partial "
                        "upload");
  } else if (srv_upload_is_completing(u) && p->want_offset == u->length) {
    p->u = u; /* an empty PATCH at the end: answers after the completion */
    srv_upload_ref(u);
    p->is_discarding = true;
    p->is_waiting = true;
  } else if (u->is_busy && u->is_settling && !p->was_parked) {
    /* The PATCH writing it lost its client and finishes within a write and
     * a commit: this one (its resume, likely) goes on after it. */
    p->u = u;
    srv_upload_ref(u);
    p->is_parked = p->was_parked = true;
    srv_upload_settle_wait(u, &p->settle);
  } else if (u->is_busy) {
    srv_upload_req_fail(p, 409, "upload_busy",
                        "another PATCH is writing this upload");
  } else if (p->want_offset != u->offset) {
    char msg[128];
    snprintf(msg, sizeof(msg), "Upload-Offset is %llu; the upload is at %llu",
             (unsigned long long) p->want_offset,
             (unsigned long long) u->offset);
    srv_upload_req_fail(p, 409, "offset_mismatch", msg);
  } else if (p->has_length && p->want_length != u->length) {
    srv_upload_req_fail(p, 400, "length_changed",
                        "Upload-Length cannot change");
  } else if (u->state != SRV_UPLOAD_RECEIVING) {
    p->u = u; /* complete already: only an empty PATCH fits */
    srv_upload_ref(u);
    p->is_discarding = true;
  } else if (p->has_declared && p->declared > room) {
    /* tus: the server must not take more than Upload-Length; nothing of
     * such a body is written. */
    srv_upload_req_fail(
        p, 413, "payload_too_large",
        "Content-Length goes past Upload-Length (or the server's upload "
        "limit): send at most Upload-Length minus Upload-Offset bytes");
  } else if (srv_upload_patch_over_quota(
                 p->ctx, u, p->has_declared ? p->declared : UINT64_MAX)) {
    srv_upload_req_fail(
        p, 507, "insufficient_storage",
        "the PATCH would take volumes, job artifacts and incomplete uploads "
        "over the storage quota (limits.storage_quota_bytes); delete volumes "
        "or jobs first");
  } else if (srv_upload_req_start(p, u) != 0) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
  }
}


/* A refusal known before the body: told now if the body is large, or if
 * the client waits for "100 Continue" before sending it (it gets the
 * refusal instead, and sends nothing: commands.c sends no 100 on a
 * connection that is ending). */
static void maybe_refuse_now(srv_upload_req_t* p,
                             srv_conn_t* conn,
                             bool expects_continue) {
  if (p->err_status != 0 && conn != NULL && !p->is_ended &&
      (expects_continue || p->is_chunked ||
       (p->has_declared && p->declared > DISCARD_MAX))) {
    srv_upload_req_refuse_now(p, conn);
  }
}


/* A PATCH that waited for a settling one: the state checks now, then the
 * chunk it held, then the rest of its body (or its end). */
static void on_settled(srv_upload_settle_t* s) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(s, srv_upload_req_t, settle);
  srv_upload_t* u = p->u;
  p->u = NULL;
  p->is_parked = false;
  patch_state(p, u);
  srv_upload_unref(u);
  if (p->is_parked) {
    return; /* cannot happen: a request parks once */
  }
  maybe_refuse_now(p, p->conn, false); /* a 100 went out, if asked for */
  if (p->is_answered) {
    return; /* the connection ends; sink_abort frees p */
  }
  srv_upload_req_unpark(p);
}


srv_body_sink_t* srv_cmd_upload_stream(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len) {
  const net_http_reader_t* r = rq->http;
  unsigned method = net_http_method(r);
  const char* concat = net_http_header(r, "Upload-Concat");
  if (method == HTTP_POST &&
      (!is_octet_stream(r) ||
       (concat != NULL && strncmp(concat, "final;", 6) == 0))) {
    /* Creation without a body, or a final upload (which takes none and is
     * refused if it has one): gathered as usual. */
    return NULL;
  }
  srv_upload_req_t* p = srv_upload_req_new(rq);
  if (p == NULL) {
    return NULL; /* the request is then answered without streaming */
  }
  p->settle.cb = on_settled;
  p->is_chunked = net_http_header(r, "Transfer-Encoding") != NULL;
  p->has_declared =
      core_tus_parse_u64(net_http_header(r, "Content-Length"), &p->declared);
  if (method == HTTP_POST) {
    p->is_create = true;
    srv_upload_t* u = srv_upload_create_checked(p, rq);
    if (u != NULL) {
      if (p->has_declared && p->declared > u->length) {
        srv_upload_req_fail(p, 413, "payload_too_large",
                            "Content-Length goes past Upload-Length");
        p->u = u;
        srv_upload_ref(u);
      } else if (u->state != SRV_UPLOAD_RECEIVING) {
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
    srv_upload_t* u = srv_upload_find(p->ctx, id, id_len);
    if (patch_headers(p, r, u) == 0) {
      patch_state(p, u);
    }
  }
  maybe_refuse_now(
      p, rq->conn,
      net_http_value_is(net_http_header(r, "Expect"), "100-continue"));
  return &p->sink;
}


/* The end of a streamed request (PATCH, or POST with a body). */
srv_cmd_result_t srv_cmd_upload_body_done(srv_request_t* rq) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(rq->sink, srv_upload_req_t, sink);
  if (p->is_answered) {
    srv_upload_req_free(p); /* refused at the headers, already told */
    return SRV_CMD_CLOSE;
  }
  p->is_ended = true;
  p->conn = NULL;
  p->mode = rq->mode;
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL) {
    srv_upload_settle_cancel(&p->settle);
    srv_upload_req_free(p);
    return srv_cmd_reply_oom(rq);
  }
  if (p->is_parked) {
    return SRV_CMD_PENDING; /* on_settled goes on */
  }
  if (p->is_create && p->err_status != 0 && p->u != NULL) {
    srv_upload_drop_new(p->ctx, p->u);
  }
  srv_upload_req_finish(p);
  return SRV_CMD_PENDING;
}
