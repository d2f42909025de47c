/* cmd_tus.c: the tus routes that carry no body: OPTIONS (what the server
 * supports), HEAD (the durable offset) and DELETE (termination, answered
 * after the removal commits). See cmd_uploads.h. Loop thread only. */
#include <stdio.h>
#include <string.h>

#include "server/cmd_uploads.h"
#include "server/uploads.h"

#define TUS_HEADERS "Tus-Resumable: 1.0.0\r\n"


void srv_cmd_upload_options(srv_request_t* rq) {
  char headers[512];
  snprintf(headers, sizeof(headers),
           TUS_HEADERS
           "Tus-Version: 1.0.0\r\n"
           "Tus-Extension: creation,creation-with-upload,checksum,"
           "termination,expiration\r\n"
           "Tus-Max-Size: %llu\r\n"
           "Tus-Checksum-Algorithm: sha1,sha256\r\n",
           (unsigned long long) rq->conn->ctx->cfg.max_upload_bytes);
  srv_http_reply(rq->conn, &rq->mode, 204, "application/json", NULL, 0,
                 headers);
}


static void reply_not_found(srv_request_t* rq) {
  srv_http_reply_error(rq->conn, &rq->mode, 404, "upload_not_found",
                       "no upload has this id (it may have expired or been "
                       "terminated)",
                       "create a new upload with POST /v1/uploads", false,
                       TUS_HEADERS);
}


void srv_cmd_upload_head(srv_request_t* rq, const char* id, size_t id_len) {
  if (!srv_cmd_tus_version_ok(rq)) {
    return;
  }
  srv_upload_t* u = srv_upload_find(rq->conn->ctx, id, id_len);
  if (u == NULL || !u->is_committed) {
    reply_not_found(rq);
    return;
  }
  char headers[SRV_UPLOAD_METADATA_MAX + 512];
  char date[40];
  srv_http_date(u->expires_us, date);
  int n =
      snprintf(headers, sizeof(headers),
               TUS_HEADERS "Upload-Offset: %llu\r\nUpload-Length: %llu\r\n",
               (unsigned long long) u->offset, (unsigned long long) u->length);
  if (u->metadata[0] != '\0') {
    n += snprintf(headers + n, sizeof(headers) - (size_t) n,
                  "Upload-Metadata: %s\r\n", u->metadata);
  }
  if (u->concat == SRV_CONCAT_PARTIAL) {
    n += snprintf(headers + n, sizeof(headers) - (size_t) n,
                  "Upload-Concat: partial\r\n");
  }
  if (u->state == SRV_UPLOAD_COMPLETED && u->volume_id[0] != '\0') {
    snprintf(headers + n, sizeof(headers) - (size_t) n,
             "CryoMamba-Volume-Id: %s\r\n", u->volume_id);
  } else if (u->state != SRV_UPLOAD_COMPLETED) {
    snprintf(headers + n, sizeof(headers) - (size_t) n,
             "Upload-Expires: %s\r\n", date);
  }
  /* A HEAD answer with the headers a GET would have, and no body. */
  srv_http_reply(rq->conn, &rq->mode, 200, "application/json", NULL, 0,
                 headers);
}


static void on_removed(void* arg, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status != 0) {
    srv_http_reply_error(conn, &p->mode, 503, "store_unavailable",
                         "the termination could not be recorded", "retry later",
                         true, TUS_HEADERS);
  } else if (conn != NULL) {
    srv_http_reply(conn, &p->mode, 204, "application/json", NULL, 0,
                   TUS_HEADERS);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_upload_delete(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len) {
  if (!srv_cmd_tus_version_ok(rq)) {
    return SRV_CMD_DONE;
  }
  srv_upload_t* u = srv_upload_find(rq->conn->ctx, id, id_len);
  if (u == NULL || !u->is_committed) {
    reply_not_found(rq);
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  /* A PATCH still writing sees is_deleted and keeps nothing. */
  if (srv_upload_remove(rq->conn->ctx, u, false, on_removed, p) != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING;
}
