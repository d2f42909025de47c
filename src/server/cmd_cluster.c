/* cmd_cluster.c: the REST commands a cluster gateway answers from Redis
 * (cluster.h): a job's creation (its record and stream entry in one
 * transaction, then 201) and GET /v1/jobs/{id} (from its hash), and the
 * clear refusal of what this version does not serve in a cluster. Loop
 * thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/cmd_util.h"
#include "server/job_json.h"
#include "server/jobs.h"


bool srv_cmd_cluster_refuse_volume(srv_request_t* rq,
                                   const core_job_request_t* req) {
  const srv_config_t* cfg = &rq->conn->ctx->cfg;
  if (cfg->role != SRV_ROLE_GATEWAY || cfg->shared_dir[0] != '\0' ||
      !(req->has_volume_path || req->has_volume_id)) {
    return false;
  }
  /* Volumes and artifacts live on the shared directory. */
  srv_http_reply_error(rq->conn, &rq->mode, 400, "shared_dir_required",
                       "this gateway runs without --shared-dir: it takes "
                       "shape-only jobs (volumes and artifacts live on the "
                       "shared directory)",
                       "give volume.shape, or start every gateway and worker "
                       "with --shared-dir DIR",
                       false, NULL);
  return true;
}


static void on_submitted(void* arg, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, p->job->id);
  } else if (conn != NULL) {
    json_t* out = srv_job_to_json(p->job);
    json_object_set_new(out, "status", json_string("created"));
    char location[96];
    snprintf(location, sizeof(location), "Location: /v1/jobs/%s\r\n",
             p->job->id);
    srv_http_reply_json(conn, &p->mode, 201, out, location);
  }
  srv_cmd_pending_done(p);
}


int srv_cmd_cluster_create(srv_conn_t* conn,
                           pending_t* p,
                           const core_shape_t* shape,
                           const double voxel_size[3]) {
  const core_job_request_t* req = &p->req;
  p->job = srv_job_new_detached(p->ctx, req, p->engine, shape, voxel_size,
                                req->has_volume_path ? req->volume_path : NULL);
  if (p->job == NULL) {
    srv_http_reply_error(conn, &p->mode, 503, "overloaded",
                         "could not create the job", "retry later", true,
                         "Retry-After: 1\r\n");
    return -1;
  }
  int rc = srv_cluster_submit(p->ctx, p->job, on_submitted, p);
  if (rc != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, rc, p->job->id);
    srv_job_unref(p->job);
    p->job = NULL;
    return -1;
  }
  return 0;
}


static void on_got(void* arg, json_t* job, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status == -ENOENT) {
    srv_http_reply_error(conn, &p->mode, 404, "job_not_found",
                         "no job has this id", "GET /v1/jobs lists the jobs",
                         false, NULL);
  } else if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL) {
    srv_http_reply_json(conn, &p->mode, 200, json_incref(job), NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_get_job(srv_request_t* rq,
                                         const char* id,
                                         size_t len) {
  char key[CORE_UUID_STR_LEN + 1];
  if (len != CORE_UUID_STR_LEN) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "job_not_found",
                         "no job has this id", "GET /v1/jobs lists the jobs",
                         false, NULL);
    return SRV_CMD_DONE;
  }
  memcpy(key, id, len);
  key[len] = '\0';
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = srv_cluster_get(rq->conn->ctx, key, on_got, p);
  if (rc != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    srv_cmd_cluster_reply_down(rq->conn, &rq->mode, rc, NULL);
    return SRV_CMD_DONE;
  }
  return SRV_CMD_PENDING;
}


srv_cmd_result_t srv_cmd_cluster_refuse(srv_request_t* rq) {
  bool worker = rq->conn->ctx->cfg.role == SRV_ROLE_WORKER;
  srv_http_reply_error(
      rq->conn, &rq->mode, worker ? 404 : 501,
      worker ? "not_served_here" : "not_in_cluster_yet",
      worker ? "a worker serves /v1/healthz, /v1/server/info and /metrics only"
             : "a cluster gateway serves POST /v1/jobs, GET /v1/jobs/{id} "
               "and /ws/jobs/{id} in this version",
      worker ? "send requests to a gateway"
             : "see docs/operations.md, Cluster; or use a server with --role "
               "all",
      false, NULL);
  return SRV_CMD_DONE;
}
