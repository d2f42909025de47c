/* cmd_util.h: what the command files share: the state of an answer given
 * asynchronously (a ticket on the connection, which may close meanwhile),
 * the handlers each file provides to commands.c, and small reply helpers.
 * Loop thread only. */
#ifndef SRV_CMD_UTIL_H
#define SRV_CMD_UTIL_H

#include "core/job_request.h"
#include "server/request.h"
#include "server/job.h"

typedef struct {
  srv_ticket_t* ticket;
  srv_http_mode_t mode;
  srv_ctx_t* ctx;
  core_job_request_t req;            /* create */
  const struct srv_engine_s* engine; /* create: the job's engine */
  srv_job_t* job;                    /* preview: a reference */
  srv_waiter_t waiter;               /* preview: waiting for the re-render */
} pending_t;

/* A pending answer for `rq` (a ticket on its connection). NULL on ENOMEM. */
pending_t* srv_cmd_pending_new(srv_request_t* rq);

/* The connection the answer goes to, or NULL when it closed. */
srv_conn_t* srv_cmd_pending_conn(const pending_t* p);

/* The answer went out (or cannot): frees p; the connection goes on. */
void srv_cmd_pending_done(pending_t* p);

/* 503 overloaded (out of memory); returns SRV_CMD_DONE. */
srv_cmd_result_t srv_cmd_reply_oom(srv_request_t* rq);

/* 405 with an Allow header. */
void srv_cmd_reply_method_not_allowed(srv_request_t* rq, const char* allow);

/* The value of query parameter `name` into out; false when absent or too
 * long. */
bool srv_cmd_query_get(const char* url,
                       const char* name,
                       char* out,
                       size_t cap);

/* DELETE /v1/jobs/{id}'s ?purge=1 (or true): delete a finished job; any
 * other value, or none, cancels. */
bool srv_cmd_query_purge(const char* url);

/* A list's page size: ?limit= (1..1000, default 100) into *limit. Answers
 * 400 invalid_field and returns false when it is not acceptable. */
bool srv_cmd_query_limit(srv_request_t* rq, long* limit);

/* cmd_jobs.c: GET /v1/jobs (paginated), POST /v1/jobs, DELETE /v1/jobs/{id}. */
void srv_cmd_list_jobs(srv_request_t* rq);
srv_cmd_result_t srv_cmd_create_job(srv_request_t* rq);

/* cmd_cluster.c: a gateway's create once the shape is known (0: answered
 * when Redis acknowledges; -1: answered now), GET /v1/jobs/{id} from
 * Redis, and the refusal of routes a cluster role does not serve. */
int srv_cmd_cluster_create(srv_conn_t* conn,
                           pending_t* p,
                           const core_shape_t* shape,
                           const double voxel_size[3]);
srv_cmd_result_t srv_cmd_cluster_get_job(srv_request_t* rq,
                                         const char* id,
                                         size_t len);
srv_cmd_result_t srv_cmd_cluster_refuse(srv_request_t* rq);
/* cluster_cancel.c: DELETE /v1/jobs/{id} (no purge) on a gateway. */
srv_cmd_result_t srv_cmd_cluster_cancel_job(srv_request_t* rq,
                                            const char* id,
                                            size_t len);
/* True after answering 400 when a gateway is asked for a job with a volume
 * (shape-only jobs in this version). */
bool srv_cmd_cluster_refuse_volume(srv_request_t* rq,
                                   const core_job_request_t* req);
srv_cmd_result_t srv_cmd_delete_job(srv_request_t* rq, srv_job_t* job);

/* cmd_results.c: GET /v1/jobs/{id}/preview and .../artifacts/{name}. */
srv_cmd_result_t srv_cmd_preview(srv_request_t* rq, srv_job_t* job);
srv_cmd_result_t srv_cmd_artifact(srv_request_t* rq,
                                  srv_job_t* job,
                                  const char* name,
                                  size_t name_len);

#endif
