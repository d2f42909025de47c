/* cluster_preview.c: GET /v1/jobs/{id}/preview on a gateway
 * (cluster_rest.h). The worker keeps the latest preview message of each
 * job in cm:prev:<id>, the exact payload it published (the JSON + base64
 * message of protocol.md §5.4, what WebSocket subscribers received), so
 * the answer is those bytes as they are: no decoding, nothing for the
 * worker pool. One script reads the job's state and the preview together,
 * so a job purged meanwhile is not answered with a preview of nothing.
 * The answers are --role all's (cmd_results.c): 200 application/json with
 * the message, 404 job_not_found, 404 preview_not_ready (retryable) while
 * the job may still produce one, 404 preview_not_available once it ended
 * without one. Unlike --role all, the preview is never evicted: it lives
 * in Redis until the job is purged. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_rest.h"

/* KEYS: the job's hash, its prev key. {} when there is no such job, else
 * {state, preview or nil}. */
static const char k_preview_script[] =
    "local pub = redis.call('HGET', KEYS[1], 'public')\n"
    "if not pub then return {} end\n"
    "return {cjson.decode(pub).state, redis.call('GET', KEYS[2])}\n";


static void reply_none(srv_conn_t* conn,
                       const srv_http_mode_t* mode,
                       const char* state) {
  core_job_state_t st = CORE_JOB_QUEUED;
  bool gone =
      core_job_state_parse(state, &st) == 0 && core_job_state_is_terminal(st);
  srv_http_reply_error(
      conn, mode, 404, gone ? "preview_not_available" : "preview_not_ready",
      gone ? "this job's last preview is not kept"
           : "no preview has been produced yet",
      gone ? "previews of cancelled and failed jobs are released when they "
             "end"
           : "retry after the job's first preview period",
      !gone, NULL);
}


static void on_preview(void* arg, redisReply* reply, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (status == 0 && reply->type != REDIS_REPLY_ARRAY) {
    status = -EIO;
  }
  if (conn == NULL) {
    srv_cmd_pending_done(p);
    return;
  }
  if (status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (reply->elements == 0) {
    srv_http_reply_error(conn, &p->mode, 404, "job_not_found",
                         "no job has this id", "GET /v1/jobs lists the jobs",
                         false, NULL);
  } else if (reply->element[0]->type != REDIS_REPLY_STRING) {
    srv_cmd_cluster_reply_down(conn, &p->mode, -EIO, NULL);
  } else if (reply->elements < 2 ||
             reply->element[1]->type != REDIS_REPLY_STRING) {
    reply_none(conn, &p->mode, reply->element[0]->str);
  } else {
    srv_http_reply(conn, &p->mode, 200, "application/json",
                   reply->element[1]->str, reply->element[1]->len, NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_preview(srv_request_t* rq,
                                         const char* id,
                                         size_t len) {
  if (!srv_cmd_cluster_valid_id(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  char keys[2][64];
  snprintf(keys[0], sizeof(keys[0]), "cm:job:%.*s", (int) len, id);
  snprintf(keys[1], sizeof(keys[1]), "cm:prev:%.*s", (int) len, id);
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  const char* argv[] = {"EVAL", k_preview_script, "2", keys[0], keys[1]};
  int rc = srv_redis_command_str(rq->conn->ctx->cluster->cmd, on_preview, p, 5,
                                 argv);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}
