/* cluster_list.c: paginated lists on a gateway, from Redis sorted sets
 * (cluster_rest.h). A page is one EVAL: the script finds the cursor's
 * rank, walks the index newest first and returns the records, so a page
 * never mixes two states of the index and Redis does the filtering (one
 * round trip, whatever the filter skips). The semantics are --role all's
 * (cmd_jobs.c): limit 1..1000, the cursor is the previous page's last id,
 * next_cursor only when entries follow it, 400 invalid_cursor for an id
 * not in the index. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "core/uuid.h"
#include "server/cluster_rest.h"

/* KEYS[1] index; ARGV prefix, field, cursor, limit, state. Returns
 * {-1} for an unknown cursor, else {total, more, last, record...}. The
 * walk is bounded by the index's size (a state filter may scan it all:
 * docs/operations.md). */
static const char k_list_script[] =
    "local idx, pre, fld, cur = KEYS[1], ARGV[1], ARGV[2], ARGV[3]\n"
    "local lim, st = tonumber(ARGV[4]), ARGV[5]\n"
    "local total = redis.call('ZCARD', idx)\n"
    "local i = 0\n"
    "if cur ~= '' then\n"
    "  local r = redis.call('ZREVRANK', idx, cur)\n"
    "  if not r then return {-1} end\n"
    "  i = r + 1\n"
    "end\n"
    "local out = {total, 0, ''}\n"
    "local n = 0\n"
    "while n < lim and i < total do\n"
    "  local ids = redis.call('ZREVRANGE', idx, i, i + 99)\n"
    "  if #ids == 0 then break end\n"
    "  for _, id in ipairs(ids) do\n"
    "    i = i + 1\n"
    "    local v = redis.call('HGET', pre .. id, fld)\n"
    "    if v and (st == '' or cjson.decode(v).state == st) then\n"
    "      n = n + 1\n"
    "      out[3 + n] = v\n"
    "      out[3] = id\n"
    "      if n == lim then break end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if n == lim and i < total then out[2] = 1 end\n"
    "return out\n";

typedef struct {
  srv_cluster_page_cb cb;
  void* arg;
} list_t;


static void on_list(void* arg, redisReply* reply, int status) {
  list_t* l = arg;
  srv_cluster_page_t page = {0};
  if (status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
      reply->element[0]->type == REDIS_REPLY_INTEGER &&
      reply->element[0]->integer == -1) {
    status = -ENOENT;
  } else if (status == 0 &&
             (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
              reply->element[0]->type != REDIS_REPLY_INTEGER ||
              reply->element[1]->type != REDIS_REPLY_INTEGER ||
              reply->element[2]->type != REDIS_REPLY_STRING)) {
    status = -EIO; /* an error reply (no Lua?) or not the script's */
  }
  if (status == 0) {
    page.total = reply->element[0]->integer;
    page.more = reply->element[1]->integer != 0;
    page.last = reply->element[2]->str;
    page.items = json_array();
    for (size_t i = 3; page.items != NULL && i < reply->elements; i++) {
      const redisReply* e = reply->element[i];
      json_t* rec = e->type == REDIS_REPLY_STRING
                        ? json_loadb(e->str, e->len, 0, NULL)
                        : NULL;
      if (rec == NULL || json_array_append_new(page.items, rec) != 0) {
        status = -EIO;
        break;
      }
    }
    if (page.items == NULL) {
      status = -ENOMEM;
    }
  }
  l->cb(l->arg, status == 0 ? &page : NULL, status);
  json_decref(page.items);
  free(l);
}


int srv_cluster_list(srv_ctx_t* ctx,
                     const char* index,
                     const char* prefix,
                     const char* field,
                     const char* cursor,
                     long limit,
                     const char* state,
                     srv_cluster_page_cb cb,
                     void* arg) {
  list_t* l = malloc(sizeof(*l));
  if (l == NULL) {
    return -ENOMEM;
  }
  *l = (list_t){cb, arg};
  char lim[24];
  snprintf(lim, sizeof(lim), "%ld", limit);
  const char* argv[] = {"EVAL", k_list_script, "1", index, prefix,
                        field,  cursor,        lim, state};
  int rc = srv_redis_command_str(ctx->cluster->cmd, on_list, l, 9, argv);
  if (rc != 0) {
    free(l);
  }
  return rc;
}


void srv_cmd_cluster_reply_down(srv_conn_t* conn,
                                const srv_http_mode_t* mode,
                                int rc,
                                const char* created) {
  if (rc == -ENOSPC) {
    srv_http_reply_error(
        conn, mode, 503, "redis_full",
        created != NULL ? "Redis refused the job: it is out of memory "
                          "(maxmemory), so the job was not created"
                        : "Redis refused the write: it is out of memory",
        "the operator must give Redis more memory or purge ended jobs", true,
        "Retry-After: 5\r\n");
    return;
  }
  if (rc == -ETIMEDOUT) {
    /* Sent but unanswered: Redis may still have run a create. */
    char msg[192];
    snprintf(msg, sizeof(msg),
             created != NULL ? "Redis did not answer in time: job %s may or "
                               "may not have been created"
                             : "Redis did not answer in time%s",
             created != NULL ? created : "");
    srv_http_reply_error(conn, mode, 503, "redis_timeout", msg,
                         created != NULL
                             ? "GET /v1/jobs/{id} tells, then create it again"
                             : "retry later (--redis-timeout-ms)",
                         true, "Retry-After: 1\r\n");
    return;
  }
  const char* why = created != NULL
                        ? "Redis did not acknowledge the job, so it was not "
                          "created"
                        : "Redis is not reachable";
  srv_http_reply_error(
      conn, mode, 503, rc == -EBUSY ? "overloaded" : "redis_unavailable",
      rc == -EBUSY ? "too many Redis commands are in flight" : why,
      "retry later", true, "Retry-After: 1\r\n");
}


srv_cmd_result_t srv_cmd_cluster_abort(srv_request_t* rq,
                                       pending_t* p,
                                       int rc) {
  srv_ticket_release(p->ticket);
  free(p);
  srv_cmd_cluster_reply_down(rq->conn, &rq->mode, rc, NULL);
  return SRV_CMD_DONE;
}


bool srv_cmd_cluster_valid_id(srv_request_t* rq, const char* id, size_t len) {
  if (!core_uuid_is_valid(id, len)) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_job_id",
                         "job ids are UUIDs like "
                         "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
                         NULL, false, NULL);
    return false;
  }
  return true;
}


srv_cmd_result_t srv_cmd_cluster_no_shared_dir(srv_request_t* rq) {
  srv_http_reply_error(rq->conn, &rq->mode, 501, "shared_dir_required",
                       "this gateway runs without --shared-dir: uploads, "
                       "volumes and artifacts live on the shared directory",
                       "start every gateway and worker with --shared-dir DIR "
                       "(docs/operations.md, Cluster)",
                       false, NULL);
  return SRV_CMD_DONE;
}


static void on_jobs_page(void* arg,
                         const srv_cluster_page_t* page,
                         int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status == -ENOENT) {
    srv_http_reply_error(conn, &p->mode, 400, "invalid_cursor",
                         "the cursor names no job (it may have been deleted)",
                         "start again without a cursor", false, NULL);
  } else if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL) {
    srv_http_reply_json(
        conn, &p->mode, 200,
        json_pack("{s:O, s:I, s:I, s:s?}", "jobs", page->items, "count",
                  (json_int_t) json_array_size(page->items), "total",
                  (json_int_t) page->total, "next_cursor",
                  page->more ? page->last : NULL),
        NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_list_jobs(srv_request_t* rq) {
  const char* url = net_http_url(rq->http);
  long limit = 0;
  if (!srv_cmd_query_limit(rq, &limit)) {
    return SRV_CMD_DONE;
  }
  char state[64] = "";
  core_job_state_t parsed;
  if (srv_cmd_query_get(url, "state", state, sizeof(state)) &&
      core_job_state_parse(state, &parsed) != 0) {
    srv_http_reply_error(
        rq->conn, &rq->mode, 400, "invalid_field",
        "state must be queued, running, completed, cancelled or failed", NULL,
        false, NULL);
    return SRV_CMD_DONE;
  }
  char cursor[64] = "";
  if (srv_cmd_query_get(url, "cursor", cursor, sizeof(cursor)) &&
      !core_uuid_is_valid(cursor, strlen(cursor))) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_cursor",
                         "the cursor names no job (it may have been deleted)",
                         "start again without a cursor", false, NULL);
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = srv_cluster_list(rq->conn->ctx, SRV_CLUSTER_JOB_INDEX,
                            "cm:job:", "public", cursor, limit, state,
                            on_jobs_page, p);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}
