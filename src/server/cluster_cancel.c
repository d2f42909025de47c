/* cluster_cancel.c: DELETE /v1/jobs/{id} (a cancel, without ?purge) on a
 * cluster gateway. The gateway cannot stop a job another process runs, so
 * it records the request in the job's hash (`cancel`), atomically with the
 * check that the job has not ended, and answers 202: the job's worker sees
 * the field at its next lease renewal (cluster_lease.c, at most 1 s later)
 * and cancels the run through the registry's usual path, whose `cancelled`
 * terminal message every gateway's subscribers get. A queued job no worker
 * has taken is ended by the gateway at once (cluster_cancel_queued.c: 200,
 * as on --role all). Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/uuid.h"
#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/cmd_util.h"

/* KEYS: hash. {'missing'}, {'ended', state}, {'ok', state} or, for a
 * job no worker has taken, {'queued', state, record, seq}. */
static const char cancel_lua[] =
    "local pub = redis.call('HGET', KEYS[1], 'public')\n"
    "if not pub then return {'missing'} end\n"
    "local st = cjson.decode(pub).state\n"
    "if st == 'completed' or st == 'failed' or st == 'cancelled' then\n"
    "  return {'ended', st} end\n"
    "redis.call('HSET', KEYS[1], 'cancel', '1')\n"
    "if st == 'queued' and not redis.call('HGET', KEYS[1], 'owner') then\n"
    "  return {'queued', st, redis.call('HGET', KEYS[1], 'record'),\n"
    "          redis.call('HGET', KEYS[1], 'seq') or '0'} end\n"
    "return {'ok', st}\n";

typedef struct {
  srv_ctx_t* ctx;
  srv_cluster_cancel_cb cb;
  void* arg;
  char id[CORE_UUID_STR_LEN + 1];
} cancel_t;


static void on_cancel(void* arg, redisReply* reply, int status) {
  cancel_t* k = arg;
  const char* state = "";
  if (status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
      reply->element[0]->type == REDIS_REPLY_STRING) {
    const char* what = reply->element[0]->str;
    if (reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_STRING) {
      state = reply->element[1]->str;
    }
    if (strcmp(what, "queued") == 0 && reply->elements == 4 &&
        reply->element[2]->type == REDIS_REPLY_STRING &&
        reply->element[3]->type == REDIS_REPLY_STRING &&
        srv_cluster_cancel_queued(k->ctx, k->id, reply->element[2]->str,
                                  strtoull(reply->element[3]->str, NULL, 10),
                                  k->cb, k->arg) == 0) {
      free(k); /* the end's script answers */
      return;
    }
    status = strcmp(what, "missing") == 0 ? -ENOENT
             : strcmp(what, "ended") == 0 ? -EALREADY
                                          : 0;
  } else if (status == 0) {
    status = srv_cluster_error_status(reply); /* OOM: the HSET refused */
  }
  k->cb(k->arg, k->id, state, status);
  free(k);
}


int srv_cluster_cancel(srv_ctx_t* ctx,
                       const char* id,
                       srv_cluster_cancel_cb cb,
                       void* arg) {
  srv_cluster_t* c = ctx->cluster;
  cancel_t* k = malloc(sizeof(*k));
  if (k == NULL) {
    return -ENOMEM;
  }
  *k = (cancel_t){.ctx = ctx, .cb = cb, .arg = arg};
  snprintf(k->id, sizeof(k->id), "%s", id);
  char key[64];
  snprintf(key, sizeof(key), "cm:job:%.40s", id);
  const char* argv[] = {"EVAL", cancel_lua, "1", key};
  size_t lens[] = {4, strlen(cancel_lua), 1, strlen(key)};
  int rc = srv_redis_command(c->cmd, on_cancel, k, 4, argv, lens);
  if (rc != 0) {
    free(k);
  }
  return rc;
}


/* ---- the REST answer ---- */

static void on_cancelled(void* arg,
                         const char* id,
                         const char* state,
                         int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status == -ENOENT) {
    srv_http_reply_error(conn, &p->mode, 404, "job_not_found",
                         "no job has this id", "GET /v1/jobs lists the jobs",
                         false, NULL);
  } else if (conn != NULL && status == -EALREADY) {
    char message[64];
    snprintf(message, sizeof(message), "the job already %s", state);
    srv_http_reply_error(conn, &p->mode, 409, "job_finished", message,
                         "only queued or running jobs can be cancelled; "
                         "DELETE ?purge=1 deletes a finished job",
                         false, NULL);
  } else if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL && strcmp(state, "cancelled") == 0) {
    /* A queued job ended by this gateway: --role all's answer. */
    srv_http_reply_json(conn, &p->mode, 200,
                        json_pack("{s:s, s:s, s:s}", "job_id", id, "status",
                                  "cancelled", "state", "cancelled"),
                        NULL);
  } else if (conn != NULL) {
    srv_http_reply_json(conn, &p->mode, 202,
                        json_pack("{s:s, s:s, s:s}", "job_id", id, "status",
                                  "cancelling", "state", state),
                        NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_cancel_job(srv_request_t* rq,
                                            const char* id,
                                            size_t len) {
  if (!srv_cmd_cluster_valid_id(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  char key[CORE_UUID_STR_LEN + 1];
  memcpy(key, id, len);
  key[len] = '\0';
  int rc = srv_cluster_cancel(rq->conn->ctx, key, on_cancelled, p);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}
