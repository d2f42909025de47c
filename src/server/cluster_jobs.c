/* cluster_jobs.c: a gateway's DELETE /v1/jobs/{id} and artifact download
 * (cluster_rest.h). Both read the job's public JSON in Redis: its state
 * decides, as on --role all (cmd_jobs.c, cmd_results.c). A purge removes
 * the job's keys and index entry in one script (so it checks the state and
 * removes atomically, against a worker storing the terminal record), then
 * its files on the shared directory, off the loop, before the answer. The
 * artifact is streamed from the shared directory by download.c (reads on
 * the worker pool); the worker renamed it there, fsync'ed, before it stored
 * the terminal record, so a completed job's artifact is whole. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_files.h"
#include "server/cluster_rest.h"
#include "server/download.h"

/* KEYS: the job's hash, state, prev, term keys, the index, the storage
 * counter (cluster_usage.c: the artifact bytes counted go), its chunk
 * table's two keys, the finished index (cluster_retain.c); ARGV: its id.
 * Returns the job's state when it has not finished ("" when there is no
 * such job), else "deleted". */
static const char k_delete_script[] =
    "local pub = redis.call('HGET', KEYS[1], 'public')\n"
    "if not pub then return '' end\n"
    "local st = cjson.decode(pub).state\n"
    "if st ~= 'completed' and st ~= 'failed' and st ~= 'cancelled' then\n"
    "  return st end\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'storage_bytes'))\n"
    "if n then redis.call('DECRBY', KEYS[6], n) end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[7], KEYS[8])\n"
    "redis.call('ZREM', KEYS[5], ARGV[1])\n"
    "redis.call('ZREM', KEYS[9], ARGV[1])\n"
    "return 'deleted'\n";

/* The files a job may have on the shared directory (a worker killed
 * before its rename leaves the .tmp). */
static const char* const k_suffixes[] = {"-mask.mrc", "-mask.mrc.tmp"};
#define N_SUFFIXES (sizeof(k_suffixes) / sizeof(k_suffixes[0]))

typedef struct {
  uv_fs_t reqs[N_SUFFIXES];
  unsigned left;
  pending_t* p;
  char id[CORE_UUID_STR_LEN + 1];
} jdel_t;


static void reply_not_found(srv_conn_t* conn, const srv_http_mode_t* mode) {
  srv_http_reply_error(conn, mode, 404, "job_not_found", "no job has this id",
                       "GET /v1/jobs lists the jobs", false, NULL);
}


static void jdel_done(jdel_t* d) {
  srv_conn_t* conn = srv_cmd_pending_conn(d->p);
  if (conn != NULL) {
    srv_http_reply_json(
        conn, &d->p->mode, 200,
        json_pack("{s:s, s:s}", "job_id", d->id, "status", "deleted"), NULL);
  }
  srv_cmd_pending_done(d->p);
  free(d);
}


static void on_file_removed(uv_fs_t* req) {
  jdel_t* d = req->data;
  uv_fs_req_cleanup(req);
  if (--d->left == 0) {
    jdel_done(d);
  }
}


/* The records are gone for every gateway: the files go before the 200. */
static void remove_files(jdel_t* d) {
  srv_ctx_t* ctx = d->p->ctx;
  d->left = 1; /* held until every unlink is queued */
  for (size_t i = 0; i < N_SUFFIXES; i++) {
    char path[1300];
    d->reqs[i].data = d;
    if (srv_cluster_job_file(ctx, d->id, k_suffixes[i], path, sizeof(path)) ==
            0 &&
        uv_fs_unlink(ctx->loop, &d->reqs[i], path, on_file_removed) == 0) {
      d->left++;
    }
  }
  if (--d->left == 0) {
    jdel_done(d);
  }
}


static void on_deleted(void* arg, redisReply* reply, int status) {
  jdel_t* d = arg;
  pending_t* p = d->p;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (status == 0 && reply->type != REDIS_REPLY_STRING) {
    status = srv_cluster_error_status(reply);
  }
  if (status == 0 && strcmp(reply->str, "deleted") == 0) {
    remove_files(d);
    return;
  }
  if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL && reply->str[0] == '\0') {
    reply_not_found(conn, &p->mode);
  } else if (conn != NULL) { /* there, not finished */
    srv_http_reply_error(conn, &p->mode, 409, "job_active",
                         "only a finished job can be purged",
                         "cancel it first (DELETE without purge)", false, NULL);
  }
  srv_cmd_pending_done(p);
  free(d);
}


srv_cmd_result_t srv_cmd_cluster_delete_job(srv_request_t* rq,
                                            const char* id,
                                            size_t len) {
  if (!srv_cmd_cluster_valid_id(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  jdel_t* d = calloc(1, sizeof(*d));
  pending_t* p = d != NULL ? srv_cmd_pending_new(rq) : NULL;
  if (p == NULL) {
    free(d);
    return srv_cmd_reply_oom(rq);
  }
  d->p = p;
  memcpy(d->id, id, len);
  char keys[6][64];
  const char* kinds[] = {"job", "state", "prev", "term", "chunks", "chunkmeta"};
  for (int i = 0; i < 6; i++) {
    snprintf(keys[i], sizeof(keys[i]), "cm:%s:%s", kinds[i], d->id);
  }
  const char* argv[] = {"EVAL",
                        k_delete_script,
                        "9",
                        keys[0],
                        keys[1],
                        keys[2],
                        keys[3],
                        SRV_CLUSTER_JOB_INDEX,
                        SRV_CLUSTER_USED_KEY,
                        keys[4],
                        keys[5],
                        SRV_CLUSTER_FINISHED_INDEX,
                        d->id};
  int rc = srv_redis_command_str(rq->conn->ctx->cluster->cmd, on_deleted, d, 13,
                                 argv);
  if (rc != 0) {
    free(d);
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}


/* ---- artifacts ---- */

static void on_artifact_job(void* arg, json_t* job, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn == NULL || status != 0) {
    if (conn != NULL && status == -ENOENT) {
      reply_not_found(conn, &p->mode);
    } else if (conn != NULL) {
      srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
    }
    srv_cmd_pending_done(p);
    return;
  }
  const char* state = json_string_value(json_object_get(job, "state"));
  const char* id = json_string_value(json_object_get(job, "job_id"));
  json_t* art = json_array_get(json_object_get(job, "artifacts"), 0);
  json_int_t bytes = json_integer_value(json_object_get(art, "bytes"));
  if (state == NULL || strcmp(state, "completed") != 0 || id == NULL ||
      !core_uuid_is_valid(id, strlen(id))) {
    char message[128];
    snprintf(message, sizeof(message),
             "the mask exists once the job completes; it is %s",
             state != NULL ? state : "unknown");
    bool ended = state != NULL && (strcmp(state, "failed") == 0 ||
                                   strcmp(state, "cancelled") == 0);
    srv_http_reply_error(conn, &p->mode, 409, "job_not_completed", message,
                         "wait for the 'completed' message", !ended, NULL);
    srv_cmd_pending_done(p);
    return;
  }
  if (p->mode.head_only) {
    srv_http_reply_head(conn, &p->mode, 200, "application/octet-stream",
                        (uint64_t) bytes, NULL);
    srv_cmd_pending_done(p);
    return;
  }
  char path[1300];
  srv_http_mode_t mode = p->mode;
  /* The download resumes the connection once the body is out. */
  srv_ticket_release(p->ticket);
  free(p);
  if (srv_cluster_job_file(conn->ctx, id, "-mask.mrc", path, sizeof(path)) !=
          0 ||
      srv_download_start(conn, &mode, path, "application/octet-stream",
                         "artifact_not_found") != 0) {
    srv_http_reply_error(conn, &mode, 503, "overloaded",
                         "the server is out of memory", "retry later", true,
                         "Retry-After: 1\r\n");
    srv_conn_resume(conn);
  }
}


srv_cmd_result_t srv_cmd_cluster_artifact(srv_request_t* rq,
                                          const char* id,
                                          size_t len,
                                          const char* name,
                                          size_t name_len) {
  if (!srv_cmd_cluster_valid_id(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  if (name_len != 8 || memcmp(name, "mask.mrc", 8) != 0) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "artifact_not_found",
                         "this job has no artifact by that name",
                         "the artifacts are listed in the job's 'artifacts'",
                         false, NULL);
    return SRV_CMD_DONE;
  }
  char key[CORE_UUID_STR_LEN + 1];
  memcpy(key, id, len);
  key[len] = '\0';
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = srv_cluster_get(rq->conn->ctx, key, on_artifact_job, p);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}
