/* cmd_volumes.c: GET /v1/volumes (paginated like jobs: limit, cursor),
 * GET /v1/volumes/{id} and DELETE /v1/volumes/{id} (answered after the
 * removal commits). See cmd_uploads.h. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cmd_uploads.h"
#include "server/volumes.h"


static srv_volume_t* find_or_reply(srv_request_t* rq,
                                   const char* id,
                                   size_t len) {
  if (!core_uuid_is_valid(id, len)) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_volume_id",
                         "volume ids are UUIDs", NULL, false, NULL);
    return NULL;
  }
  srv_volume_t* v = srv_volume_find(rq->conn->ctx, id, len);
  if (v == NULL) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "volume_not_found",
                         "no volume has this id",
                         "GET /v1/volumes lists the volumes", false, NULL);
  }
  return v;
}


void srv_cmd_list_volumes(srv_request_t* rq) {
  srv_ctx_t* ctx = rq->conn->ctx;
  const char* url = net_http_url(rq->http);
  char value[64];
  long limit = 0;
  if (!srv_cmd_query_limit(rq, &limit)) {
    return;
  }
  /* Newest first, like jobs; the cursor is the last id of a page. */
  core_list_t* it = ctx->volumes.prev;
  if (srv_cmd_query_get(url, "cursor", value, sizeof(value))) {
    srv_volume_t* at = srv_volume_find(ctx, value, strlen(value));
    if (at == NULL) {
      srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_cursor",
                           "the cursor names no volume (it may have been "
                           "deleted)",
                           "start again without a cursor", false, NULL);
      return;
    }
    it = at->link.prev;
  }
  json_t* list = json_array();
  srv_volume_t* last = NULL;
  long n = 0;
  size_t total = 0;
  for (core_list_t* t = ctx->volumes.next; t != &ctx->volumes; t = t->next) {
    total++;
  }
  for (; it != &ctx->volumes && n < limit; it = it->prev) {
    last = CORE_CONTAINER_OF(it, srv_volume_t, link);
    json_array_append_new(list, srv_volume_to_json(last));
    n++;
  }
  bool more = n == limit && last != NULL && last->link.prev != &ctx->volumes;
  srv_http_reply_json(
      rq->conn, &rq->mode, 200,
      json_pack("{s:o, s:I, s:I, s:s?}", "volumes", list, "count",
                (json_int_t) n, "total", (json_int_t) total, "next_cursor",
                more ? last->id : NULL),
      NULL);
}


void srv_cmd_get_volume(srv_request_t* rq, const char* id, size_t id_len) {
  srv_volume_t* v = find_or_reply(rq, id, id_len);
  if (v != NULL) {
    srv_http_reply_json(rq->conn, &rq->mode, 200, srv_volume_to_json(v), NULL);
  }
}


static void on_deleted(void* arg, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status != 0) {
    srv_http_reply_error(conn, &p->mode, 503, "store_unavailable",
                         "the deletion could not be recorded", "retry later",
                         true, NULL);
  } else if (conn != NULL) {
    srv_http_reply_json(conn, &p->mode, 200,
                        json_pack("{s:s}", "status", "deleted"), NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_delete_volume(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len) {
  srv_volume_t* v = find_or_reply(rq, id, id_len);
  if (v == NULL) {
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = srv_volume_delete(rq->conn->ctx, v, on_deleted, p);
  if (rc != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    if (rc == -EBUSY) {
      srv_http_reply_error(rq->conn, &rq->mode, 409, "volume_deleting",
                           "the volume is being deleted",
                           "retry: it is gone once its removal is recorded",
                           true, NULL);
      return SRV_CMD_DONE;
    }
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING;
}
