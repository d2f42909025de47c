/* cmd_jobs.c: the job commands: list (paginated, filtered by state),
 * create (answered once the record is committed; a volume_path is probed
 * on the worker pool first), cancel and purge. See cmd_util.h and
 * docs/protocol.md. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster_rest.h"
#include "server/cmd_util.h"
#include "server/engines.h"
#include "server/job_json.h"
#include "server/jobs.h"
#include "server/volume.h"
#include "server/volumes.h"


void srv_cmd_list_jobs(srv_request_t* rq) {
  srv_ctx_t* ctx = rq->conn->ctx;
  const char* url = net_http_url(rq->http);
  char value[64];
  long limit = 0;
  if (!srv_cmd_query_limit(rq, &limit)) {
    return;
  }
  bool has_state = srv_cmd_query_get(url, "state", value, sizeof(value));
  core_job_state_t state = CORE_JOB_QUEUED;
  if (has_state && core_job_state_parse(value, &state) != 0) {
    srv_http_reply_error(
        rq->conn, &rq->mode, 400, "invalid_field",
        "state must be queued, running, completed, cancelled or failed", NULL,
        false, NULL);
    return;
  }
  srv_job_t* job = NULL;
  if (srv_cmd_query_get(url, "cursor", value, sizeof(value))) {
    srv_job_t* at = srv_job_find(ctx, value, strlen(value));
    if (at == NULL) {
      srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_cursor",
                           "the cursor names no job (it may have been deleted)",
                           "start again without a cursor", false, NULL);
      return;
    }
    job = at;
  }
  json_t* jobs = json_array();
  srv_job_t* last = NULL;
  long n = 0;
  for (job = srv_jobs_next(ctx, job); job != NULL && n < limit;
       job = srv_jobs_next(ctx, job)) {
    if (has_state && job->state != state) {
      continue;
    }
    json_array_append_new(jobs, srv_job_to_json(job));
    last = job;
    n++;
  }
  /* More may follow when the page is full and jobs remain after it. */
  bool more = n == limit && last != NULL && srv_jobs_next(ctx, last) != NULL;
  srv_http_reply_json(
      rq->conn, &rq->mode, 200,
      json_pack("{s:o, s:I, s:I, s:s?}", "jobs", jobs, "count", (json_int_t) n,
                "total", (json_int_t) ctx->job_count, "next_cursor",
                more ? last->id : NULL),
      NULL);
}


/* ---- jobs: create ---- */

static void on_created(void* arg, srv_job_t* job, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status != 0) {
    srv_http_reply_error(conn, &p->mode, 503, "store_unavailable",
                         "the job could not be recorded, so it was not created",
                         "retry later; the server's disk may be full", true,
                         "Retry-After: 5\r\n");
  } else if (conn != NULL) {
    json_t* out = srv_job_to_json(job);
    json_object_set_new(out, "status", json_string("created"));
    char location[96];
    snprintf(location, sizeof(location), "Location: /v1/jobs/%s\r\n", job->id);
    srv_http_reply_json(conn, &p->mode, 201, out, location);
  }
  srv_cmd_pending_done(p);
}


/* Creates the job once its volume is known. Returns 0 (the answer comes
 * with the commit) or -1 after answering an error. */
int srv_cmd_start_create(srv_conn_t* conn,
                         pending_t* p,
                         const core_shape_t* shape,
                         const double voxel_size[3]) {
  srv_ctx_t* ctx = p->ctx;
  if (core_shape_voxels(shape) > ctx->cfg.max_volume_voxels) {
    char message[160];
    snprintf(message, sizeof(message),
             "volume.shape has %llu voxels; this server accepts at most %llu",
             (unsigned long long) core_shape_voxels(shape),
             (unsigned long long) ctx->cfg.max_volume_voxels);
    srv_http_reply_error(conn, &p->mode, 400, "invalid_field", message,
                         "use a smaller volume.shape", false, NULL);
    return -1;
  }
  if (ctx->cfg.role == SRV_ROLE_GATEWAY) {
    return srv_cmd_cluster_create(conn, p, shape, voxel_size);
  }
  const core_job_request_t* req = &p->req;
  int rc = srv_job_create(ctx, req, p->engine, shape, voxel_size,
                          req->has_volume_path ? req->volume_path : NULL,
                          on_created, p);
  if (rc == -EAGAIN) {
    char message[128];
    snprintf(message, sizeof(message),
             "%u jobs are queued, the most this server holds",
             ctx->cfg.max_queued);
    srv_http_reply_error(conn, &p->mode, 429, "queue_full", message,
                         "retry after some jobs have started", true,
                         "Retry-After: 5\r\n");
    return -1;
  }
  if (rc != 0) {
    srv_http_reply_error(conn, &p->mode, 503, "overloaded",
                         "could not create the job", "retry later", true,
                         "Retry-After: 1\r\n");
    return -1;
  }
  return 0;
}


static void on_probed(srv_volume_probe_t* probe,
                      int rc,
                      const core_shape_t* shape,
                      const double voxel_size[3],
                      const char* why) {
  pending_t* p = probe->data;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn == NULL) {
    srv_cmd_pending_done(p);
    return;
  }
  if (rc != 0) {
    srv_http_reply_error(conn, &p->mode, 400, "invalid_volume_path", why,
                         "volume_path is relative to the server's "
                         "--data-root and must name a valid .mrc file",
                         false, NULL);
    srv_cmd_pending_done(p);
    return;
  }
  double vs[3] = {voxel_size[0], voxel_size[1], voxel_size[2]};
  if (p->req.has_voxel_size) {
    memcpy(vs, p->req.voxel_size, sizeof(vs));
  }
  if (srv_cmd_start_create(conn, p, shape, vs) != 0) {
    srv_cmd_pending_done(p);
  }
}


/* Parses the body; answers and returns -1 when it is not acceptable. */
static int parse_create(srv_request_t* rq, core_job_request_t* req) {
  const net_http_reader_t* r = rq->http;
  json_t* body = NULL;
  if (r->body_len > 0) {
    json_error_t jerr;
    body = json_loadb((const char*) r->body, r->body_len,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || !json_is_object(body)) {
      char message[256];
      if (body == NULL) {
        snprintf(message, sizeof(message),
                 "the body is not valid JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
      } else {
        snprintf(message, sizeof(message), "the body must be a JSON object");
      }
      json_decref(body);
      srv_http_reply_error(rq->conn, &rq->mode, 400, "bad_json", message,
                           "send a JSON object, or no body for the defaults",
                           false, NULL);
      return -1;
    }
  }
  char err[256];
  int rc = core_job_request_parse(body, req, err, sizeof(err));
  bool has_hz =
      body != NULL &&
      (json_object_get(body, "preview_hz") != NULL ||
       json_object_get(json_object_get(body, "params"), "preview_hz") != NULL);
  json_decref(body);
  if (rc != 0) {
    /* A path of the wrong JSON type is a field error; a string that is
     * not an acceptable path is a volume_path error. */
    bool about_path = (strncmp(err, "volume_path", 11) == 0 ||
                       strncmp(err, "volume.path", 11) == 0) &&
                      strstr(err, "must be a string") == NULL;
    srv_http_reply_error(rq->conn, &rq->mode, 400,
                         about_path ? "invalid_volume_path" : "invalid_field",
                         err, "see docs/protocol.md, POST /v1/jobs", false,
                         NULL);
    return -1;
  }
  if (!has_hz) {
    req->params.preview_hz = rq->conn->ctx->cfg.preview_hz;
  }
  return 0;
}


/* Picks the job's engine; answers and returns NULL when it cannot have
 * the one it asked for. */
static const srv_engine_t* resolve_engine(srv_request_t* rq,
                                          core_job_request_t* req) {
  const char* code = "invalid_field";
  char why[512];
  const srv_engine_t* e =
      srv_engines_resolve(rq->conn->ctx->engines, &req->params,
                          req->has_volume_path || req->has_volume_id,
                          req->engine_params, &code, why, sizeof(why));
  if (e == NULL) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, code, why,
                         "GET /v1/server/info lists this server's engines "
                         "and their params",
                         false, NULL);
  }
  return e;
}


srv_cmd_result_t srv_cmd_create_job(srv_request_t* rq) {
  srv_ctx_t* ctx = rq->conn->ctx;
  core_job_request_t req;
  const srv_engine_t* engine = NULL;
  if (parse_create(rq, &req) != 0 || srv_cmd_cluster_refuse_volume(rq, &req) ||
      (engine = resolve_engine(rq, &req)) == NULL) {
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  p->req = req;
  p->engine = engine;
  if (req.has_volume_path) {
    /* The file is looked at on the worker pool, never on the loop. */
    if (srv_volume_probe(ctx->loop, ctx->data_root_fd, req.volume_path,
                         on_probed, p) != 0) {
      srv_ticket_release(p->ticket);
      free(p);
      return srv_cmd_reply_oom(rq);
    }
    return SRV_CMD_PENDING;
  }
  double vs[3] = {req.voxel_size[0], req.voxel_size[1], req.voxel_size[2]};
  core_shape_t shape = req.shape;
  if (req.has_volume_id && ctx->cfg.role == SRV_ROLE_GATEWAY) {
    return srv_cmd_cluster_volume_job(rq, p); /* its record is in Redis */
  }
  if (req.has_volume_id) {
    /* An uploaded volume: its header gave the shape and voxel size. */
    srv_volume_t* vol = srv_volume_find(ctx, req.volume_id, CORE_UUID_STR_LEN);
    if (vol == NULL) {
      srv_ticket_release(p->ticket);
      free(p);
      srv_http_reply_error(rq->conn, &rq->mode, 404, "volume_not_found",
                           "no volume has this volume_id",
                           "GET /v1/volumes lists the volumes", false, NULL);
      return SRV_CMD_DONE;
    }
    shape = vol->shape;
    if (!req.has_voxel_size) {
      memcpy(vs, vol->voxel_size, sizeof(vs));
    }
  }
  if (srv_cmd_start_create(rq->conn, p, &shape, vs) != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    return SRV_CMD_DONE;
  }
  return SRV_CMD_PENDING;
}


/* ---- jobs: cancel and delete ---- */

static void on_job_ended(void* arg, srv_job_t* job, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status != 0) {
    srv_http_reply_error(conn, &p->mode, 503, "store_unavailable",
                         "the change could not be recorded",
                         "retry later; the server's disk may be full", true,
                         "Retry-After: 5\r\n");
  } else if (conn != NULL) {
    bool deleted = !job->is_registered;
    srv_http_reply_json(
        conn, &p->mode, 200,
        deleted
            ? json_pack("{s:s, s:s}", "job_id", job->id, "status", "deleted")
            : json_pack("{s:s, s:s, s:s}", "job_id", job->id, "status",
                        "cancelled", "state", "cancelled"),
        NULL);
  }
  srv_cmd_pending_done(p);
}


/* DELETE cancels a queued or running job (the reference's contract: 409
 * once it has finished); DELETE ?purge=1 deletes a finished one. */
srv_cmd_result_t srv_cmd_delete_job(srv_request_t* rq, srv_job_t* job) {
  bool finished = core_job_state_is_terminal(job->state) && !job->is_ending;
  bool purge = srv_cmd_query_purge(net_http_url(rq->http));
  if (job->is_ending || (finished && !purge)) {
    char message[128];
    snprintf(message, sizeof(message), "the job already %s",
             job->is_ending ? "is ending" : core_job_state_name(job->state));
    srv_http_reply_error(rq->conn, &rq->mode, 409, "job_finished", message,
                         "only queued or running jobs can be cancelled; "
                         "DELETE ?purge=1 deletes a finished job",
                         false, NULL);
    return SRV_CMD_DONE;
  }
  if (purge && !finished) {
    srv_http_reply_error(rq->conn, &rq->mode, 409, "job_active",
                         "only a finished job can be purged",
                         "cancel it first (DELETE without purge)", false, NULL);
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = finished ? srv_job_delete(job, on_job_ended, p)
                    : srv_job_cancel(job, on_job_ended, p);
  if (rc != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    srv_http_reply_error(rq->conn, &rq->mode, 409, "job_busy",
                         "the job is already being deleted", NULL, false, NULL);
    return SRV_CMD_DONE;
  }
  return SRV_CMD_PENDING;
}
