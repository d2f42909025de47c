/* cmd_tus.c: the tus routes that carry no body: OPTIONS (what the server
 * supports), HEAD (the durable offset; a final's state) and DELETE
 * (termination, answered after the removal commits). See cmd_uploads.h.
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cmd_upload_body.h"
#include "server/cmd_uploads.h"
#include "server/upload_concat.h"
#include "server/uploads.h"

#define TUS_HEADERS SRV_TUS_HEADERS


void srv_cmd_upload_options(srv_request_t* rq) {
  char headers[512];
  snprintf(headers, sizeof(headers),
           TUS_HEADERS
           "Tus-Version: 1.0.0\r\n"
           "Tus-Extension: creation,creation-with-upload,checksum,"
           "termination,expiration,concatenation\r\n"
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


/* HEAD's answer for `u`, as it is committed. */
static void reply_head(srv_conn_t* conn,
                       const srv_http_mode_t* mode,
                       const srv_upload_t* u) {
  char headers[SRV_TUS_HEADERS_MAX + 256];
  if (u->durable_state == SRV_UPLOAD_FAILED) {
    /* A final that did not become a volume: the answer its PATCH would have
     * had, the reason in a header (a HEAD answer has no body). */
    char concat[SRV_TUS_CONCAT_MAX];
    srv_concat_header(u, concat, sizeof(concat));
    char why[sizeof(u->error_msg)];
    snprintf(why, sizeof(why), "%s", u->error_msg);
    for (char* c = why; *c != '\0'; c++) {
      *c = (unsigned char) *c < 0x20 ? ' ' : *c; /* one header line */
    }
    bool invalid = strcmp(u->error_code, "invalid_volume") == 0;
    int status = invalid                                              ? 422
                 : strcmp(u->error_code, "insufficient_storage") == 0 ? 507
                                                                      : 500;
    snprintf(headers, sizeof(headers),
             TUS_HEADERS
             "Upload-Length: %llu\r\nUpload-Concat: %s\r\n"
             "CryoMamba-Upload-Error: %s %s\r\n",
             (unsigned long long) u->length, concat, u->error_code, why);
    srv_http_reply_error(conn, mode, status, u->error_code, u->error_msg,
                         "the parts are kept: create another final upload, "
                         "or send the file again",
                         false, headers);
    return;
  }
  srv_tus_upload_headers(u, true, headers, sizeof(headers));
  /* A HEAD answer with the headers a GET would have, and no body. */
  srv_http_reply(conn, mode, 200, "application/json", NULL, 0, headers);
}


/* A HEAD waiting for a PATCH whose bytes are on their way to the disk. */
typedef struct {
  pending_t* pending;
  srv_upload_t* u; /* a reference */
  srv_upload_settle_t settle;
} head_wait_t;


static void on_head_settled(srv_upload_settle_t* s) {
  head_wait_t* w = CORE_CONTAINER_OF(s, head_wait_t, settle);
  srv_conn_t* conn = srv_cmd_pending_conn(w->pending);
  if (conn != NULL && w->u->is_deleted) {
    srv_http_reply_error(conn, &w->pending->mode, 404, "upload_not_found",
                         "the upload was terminated", NULL, false, TUS_HEADERS);
  } else if (conn != NULL) {
    reply_head(conn, &w->pending->mode, w->u);
  }
  srv_cmd_pending_done(w->pending);
  srv_upload_unref(w->u);
  free(w);
}


srv_cmd_result_t srv_cmd_upload_head(srv_request_t* rq,
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
  if (!u->is_settling) {
    reply_head(rq->conn, &rq->mode, u);
    return SRV_CMD_DONE;
  }
  /* A PATCH has all the bytes it will get (its client may be gone) and
   * commits them within a write and a commit: the offset a resume needs
   * is the one after that. */
  head_wait_t* w = malloc(sizeof(*w));
  pending_t* pending = w != NULL ? srv_cmd_pending_new(rq) : NULL;
  if (pending == NULL) {
    free(w);
    return srv_cmd_reply_oom(rq);
  }
  w->pending = pending;
  w->u = u;
  srv_upload_ref(u);
  core_list_init(&w->settle.link);
  w->settle.cb = on_head_settled;
  srv_upload_settle_wait(u, &w->settle);
  return SRV_CMD_PENDING;
}


/* A DELETE waiting for its upload's removal to commit (its own, or one
 * already under way). */
typedef struct {
  pending_t* pending;
  srv_upload_t* u; /* a reference */
  srv_upload_settle_t settle;
} delete_t;


/* Answers by the removal's outcome: 204 once it is durable (the upload is
 * gone for everyone only then), 503 when it failed (the upload stays as it
 * was, a restart too finds it). */
static void delete_answer(delete_t* d, bool is_removed) {
  srv_conn_t* conn = srv_cmd_pending_conn(d->pending);
  if (conn != NULL && !is_removed) {
    srv_http_reply_error(conn, &d->pending->mode, 503, "store_unavailable",
                         "the termination could not be recorded; the upload "
                         "is as it was",
                         "retry later", true, TUS_HEADERS);
  } else if (conn != NULL) {
    srv_http_reply(conn, &d->pending->mode, 204, "application/json", NULL, 0,
                   TUS_HEADERS);
  }
  srv_cmd_pending_done(d->pending);
  srv_upload_unref(d->u);
  free(d);
}


static void on_removed(void* arg, int status) {
  delete_t* d = arg;
  if (status == 0) {
    /* A final lets go of its parts now: they are the client's again. */
    srv_concat_release(d->u->ctx, d->u);
  }
  delete_answer(d, status == 0);
}


static void on_other_removal(srv_upload_settle_t* s) {
  delete_t* d = CORE_CONTAINER_OF(s, delete_t, settle);
  delete_answer(d, d->u->is_deleted);
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
  if (u->final_refs > 0) {
    srv_http_reply_error(rq->conn, &rq->mode, 409, "part_in_use",
                         "a final upload is being assembled from this partial "
                         "upload",
                         "once the final is complete its parts are removed; "
                         "terminate the final upload first",
                         false, TUS_HEADERS);
    return SRV_CMD_DONE;
  }
  delete_t* d = malloc(sizeof(*d));
  pending_t* pending = d != NULL ? srv_cmd_pending_new(rq) : NULL;
  if (pending == NULL) {
    free(d);
    return srv_cmd_reply_oom(rq);
  }
  d->pending = pending;
  d->u = u;
  srv_upload_ref(u);
  core_list_init(&d->settle.link);
  d->settle.cb = on_other_removal;
  if (u->is_terminating) {
    srv_upload_termination_wait(u, &d->settle); /* answered alike */
    return SRV_CMD_PENDING;
  }
  /* Until the removal commits the upload is found and HEAD answers as
   * before; a PATCH still writing goes on, and its commit waits for the
   * outcome (srv_upload_save); once removed it keeps nothing. A final
   * being assembled: its join (which may make its file again) removes the
   * file when it sees is_deleted. */
  bool is_joining =
      u->concat == SRV_CONCAT_FINAL && u->state == SRV_UPLOAD_COMPLETING;
  if (srv_upload_remove(rq->conn->ctx, u, is_joining, on_removed, d) != 0) {
    srv_ticket_release(pending->ticket);
    free(pending);
    srv_upload_unref(u);
    free(d);
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING;
}
