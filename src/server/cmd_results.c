/* cmd_results.c: a job's results over REST: its latest preview (served
 * by reference from the shared WebSocket frame; a completed job's evicted
 * final preview is rendered again first) and its mask artifact (streamed
 * by download.c). See cmd_util.h. Loop thread only. */
#include <stdio.h>
#include <string.h>

#include "server/cmd_util.h"
#include "server/download.h"
#include "server/jobs.h"


/* Answers from the job's latest preview: the WebSocket frame's payload,
 * shared, never copied. */
static void reply_preview(srv_conn_t* conn,
                          const srv_http_mode_t* mode,
                          srv_job_t* job) {
  net_frame_t* f = job->topic.latest[CORE_ENC_BASE64];
  if (f == NULL) {
    bool gone = job->state == CORE_JOB_CANCELLED ||
                job->state == CORE_JOB_FAILED ||
                job->state == CORE_JOB_COMPLETED;
    srv_http_reply_error(
        conn, mode, 404, gone ? "preview_not_available" : "preview_not_ready",
        gone ? "this job's last preview is not kept"
             : "no preview has been produced yet",
        gone ? "previews of cancelled and failed jobs are released when they "
               "end"
             : "retry after the job's first preview period",
        !gone, NULL);
    return;
  }
  size_t len = 0;
  const uint8_t* message = net_ws_frame_payload(f, &len);
  srv_http_reply_shared(conn, mode, 200, "application/json", f,
                        (size_t) (message - f->data), len);
}


static void on_preview_ready(srv_waiter_t* w, bool has_preview) {
  (void) has_preview;
  pending_t* p = CORE_CONTAINER_OF(w, pending_t, waiter);
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL) {
    if (p->job->topic.latest[CORE_ENC_BASE64] != NULL) {
      reply_preview(conn, &p->mode, p->job);
    } else {
      srv_http_reply_error(conn, &p->mode, 500, "internal",
                           "the preview could not be rendered again",
                           "see the server log", true, NULL);
    }
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_preview(srv_request_t* rq, srv_job_t* job) {
  if (job->topic.latest[CORE_ENC_BASE64] == NULL &&
      job->state == CORE_JOB_COMPLETED && job->final_preview_seq != 0) {
    /* A completed job's final preview may have left memory (restart, cache
     * trim): render it again and answer when it is back. */
    pending_t* p = srv_cmd_pending_new(rq);
    if (p == NULL) {
      return srv_cmd_reply_oom(rq);
    }
    p->job = srv_job_ref(job);
    p->waiter.ready = on_preview_ready;
    srv_topic_wait(&job->topic, &p->waiter);
    job->engine->ops->rebuild_preview(job);
    return SRV_CMD_PENDING;
  }
  reply_preview(rq->conn, &rq->mode, job);
  return SRV_CMD_DONE;
}


srv_cmd_result_t srv_cmd_artifact(srv_request_t* rq,
                                  srv_job_t* job,
                                  const char* name,
                                  size_t name_len) {
  if (name_len != 8 || memcmp(name, "mask.mrc", 8) != 0) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "artifact_not_found",
                         "this job has no artifact by that name",
                         "the artifacts are listed in the job's 'artifacts'",
                         false, NULL);
    return SRV_CMD_DONE;
  }
  if (job->state != CORE_JOB_COMPLETED || job->is_ending) {
    char message[128];
    snprintf(message, sizeof(message),
             "the mask exists once the job completes; it is %s",
             core_job_state_name(job->is_ending ? job->state_before_end
                                                : job->state));
    srv_http_reply_error(rq->conn, &rq->mode, 409, "job_not_completed", message,
                         "wait for the 'completed' message",
                         !core_job_state_is_terminal(job->state), NULL);
    return SRV_CMD_DONE;
  }
  if (rq->mode.head_only) {
    srv_http_reply_head(rq->conn, &rq->mode, 200, "application/octet-stream",
                        job->artifact_bytes, NULL);
    return SRV_CMD_DONE;
  }
  char path[1200];
  if (srv_job_artifact_path(job, path, sizeof(path)) != 0 ||
      srv_download_start(rq->conn, &rq->mode, path, "application/octet-stream",
                         "artifact_not_found") != 0) {
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING; /* streamed; the download resumes the conn */
}
