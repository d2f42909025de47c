/* commands.c: REST routes and their handlers. See commands.h and
 * docs/protocol.md. Loop thread only. An asynchronous answer keeps its state
 * in a pending_t (a ticket on the connection, which may close meanwhile). */
#include "server/commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/job_request.h"
#include "server/auth.h"
#include "server/download.h"
#include "server/job_json.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/volume.h"

typedef struct {
  srv_ticket_t* ticket;
  srv_http_mode_t mode;
  srv_ctx_t* ctx;
  core_job_request_t req; /* create */
  srv_job_t* job;         /* preview: a reference */
  srv_waiter_t waiter;    /* preview: waiting for the re-render */
} pending_t;


static pending_t* pending_new(srv_request_t* rq) {
  pending_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL) {
    free(p);
    return NULL;
  }
  p->mode = rq->mode;
  p->ctx = rq->conn->ctx;
  core_list_init(&p->waiter.link);
  return p;
}


/* The connection the answer goes to, or NULL when it closed. */
static srv_conn_t* pending_conn(const pending_t* p) {
  return p->ticket->conn;
}


/* The answer went out (or cannot): the connection goes on. */
static void pending_done(pending_t* p) {
  srv_conn_t* conn = pending_conn(p);
  srv_ticket_release(p->ticket);
  if (p->job != NULL) {
    srv_job_unref(p->job);
  }
  free(p);
  if (conn != NULL) {
    srv_conn_resume(conn);
  }
}


static srv_cmd_result_t reply_oom(srv_request_t* rq) {
  srv_http_reply_error(rq->conn, &rq->mode, 503, "overloaded",
                       "the server is out of memory", "retry later", true,
                       "Retry-After: 1\r\n");
  return SRV_CMD_DONE;
}


static void reply_method_not_allowed(srv_request_t* rq, const char* allow) {
  char headers[64];
  snprintf(headers, sizeof(headers), "Allow: %s\r\n", allow);
  char message[96];
  snprintf(message, sizeof(message), "this route accepts %s", allow);
  srv_http_reply_error(rq->conn, &rq->mode, 405, "method_not_allowed", message,
                       NULL, false, headers);
}


/* The value of query parameter `name` (percent-encoding not needed for our
 * values), into out. False when absent or too long. */
static bool query_get(const char* url,
                      const char* name,
                      char* out,
                      size_t cap) {
  size_t name_len = strlen(name);
  const char* q = strchr(url, '?');
  while (q != NULL) {
    q++;
    if (strncmp(q, name, name_len) == 0 && q[name_len] == '=') {
      const char* v = q + name_len + 1;
      size_t n = strcspn(v, "&#");
      if (n >= cap) {
        return false;
      }
      memcpy(out, v, n);
      out[n] = '\0';
      return true;
    }
    q = strchr(q, '&');
  }
  return false;
}


/* ---- info, health, metrics ---- */

static void handle_info(srv_request_t* rq) {
  const srv_config_t* c = &rq->conn->ctx->cfg;
  json_t* limits = json_pack(
      "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:[f,f], s:f}",
      "max_running", (json_int_t) c->max_running, "max_connections",
      (json_int_t) c->max_connections, "max_subscribers_per_job",
      (json_int_t) c->max_subscribers_per_job, "max_connections_per_ip",
      (json_int_t) c->max_connections_per_ip, "max_body_bytes",
      (json_int_t) c->max_body_bytes, "max_ws_message_bytes",
      (json_int_t) c->max_ws_message_bytes, "max_dim",
      (json_int_t) CORE_SHAPE_MAX_DIM, "max_scale", (json_int_t) CORE_SCALE_MAX,
      "max_volume_voxels", (json_int_t) c->max_volume_voxels, "preview_hz",
      CORE_PREVIEW_HZ_MIN, CORE_PREVIEW_HZ_MAX, "default_preview_hz",
      c->preview_hz);
  json_object_set_new(limits, "max_queued", json_integer(c->max_queued));
  json_object_set_new(limits, "max_held_bytes",
                      json_integer((json_int_t) c->max_held_bytes));
  json_object_set_new(limits, "retention_max_jobs",
                      json_integer(c->retention_max_jobs));
  json_object_set_new(limits, "retention_max_age_s",
                      json_real(c->retention_max_age_s));
  json_object_set_new(limits, "http_header_timeout_s",
                      json_real(c->http_header_timeout_s));
  json_object_set_new(limits, "http_body_timeout_s",
                      json_real(c->http_body_timeout_s));
  json_object_set_new(limits, "http_write_timeout_s",
                      json_real(c->http_write_timeout_s));
  srv_http_reply_json(
      rq->conn, &rq->mode, 200,
      json_pack("{s:s, s:s, s:i, s:[s,s,s,s,s,s,s], s:b, s:o}", "name",
                "cryomambad", "version", CM_VERSION, "protocol_version", 1,
                "capabilities", "previews", "cancel", "artifacts",
                "patterns:random,blobs", "volume_path",
                "encodings:base64,raw,zstd", "delete", "auth_required",
                rq->conn->ctx->auth.count > 0, "limits", limits),
      NULL);
}


static void handle_metrics(srv_request_t* rq) {
  char* text = NULL;
  size_t len = 0;
  if (srv_metrics_render(rq->conn->ctx, &text, &len) != 0) {
    reply_oom(rq);
    return;
  }
  srv_http_reply(rq->conn, &rq->mode, 200,
                 "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
  free(text);
}


/* ---- jobs: list ---- */

static void handle_list(srv_request_t* rq) {
  srv_ctx_t* ctx = rq->conn->ctx;
  const char* url = net_http_url(rq->http);
  char value[64];
  long limit = 100;
  if (query_get(url, "limit", value, sizeof(value))) {
    char* end = NULL;
    limit = strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0' || limit < 1 || limit > 1000) {
      srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_field",
                           "limit must be an integer from 1 to 1000", NULL,
                           false, NULL);
      return;
    }
  }
  bool has_state = query_get(url, "state", value, sizeof(value));
  core_job_state_t state = CORE_JOB_QUEUED;
  if (has_state && core_job_state_parse(value, &state) != 0) {
    srv_http_reply_error(
        rq->conn, &rq->mode, 400, "invalid_field",
        "state must be queued, running, completed, cancelled or failed", NULL,
        false, NULL);
    return;
  }
  srv_job_t* job = NULL;
  if (query_get(url, "cursor", value, sizeof(value))) {
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
  srv_conn_t* conn = pending_conn(p);
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
  pending_done(p);
}


/* Creates the job once its volume is known. Returns 0 (the answer comes
 * with the commit) or -1 after answering an error. */
static int start_create(srv_conn_t* conn,
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
  const core_job_request_t* req = &p->req;
  int rc = srv_job_create(ctx, req, shape, voxel_size,
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
  srv_conn_t* conn = pending_conn(p);
  if (conn == NULL) {
    pending_done(p);
    return;
  }
  if (rc != 0) {
    srv_http_reply_error(conn, &p->mode, 400, "invalid_volume_path", why,
                         "volume_path is relative to the server's "
                         "--data-root and must name a valid .mrc file",
                         false, NULL);
    pending_done(p);
    return;
  }
  double vs[3] = {voxel_size[0], voxel_size[1], voxel_size[2]};
  if (p->req.has_voxel_size) {
    memcpy(vs, p->req.voxel_size, sizeof(vs));
  }
  if (start_create(conn, p, shape, vs) != 0) {
    pending_done(p);
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


static srv_cmd_result_t handle_create(srv_request_t* rq) {
  srv_ctx_t* ctx = rq->conn->ctx;
  core_job_request_t req;
  if (parse_create(rq, &req) != 0) {
    return SRV_CMD_DONE;
  }
  pending_t* p = pending_new(rq);
  if (p == NULL) {
    return reply_oom(rq);
  }
  p->req = req;
  if (req.has_volume_path) {
    /* The file is looked at on the worker pool, never on the loop. */
    if (srv_volume_probe(ctx->loop, ctx->data_root_fd, req.volume_path,
                         on_probed, p) != 0) {
      srv_ticket_release(p->ticket);
      free(p);
      return reply_oom(rq);
    }
    return SRV_CMD_PENDING;
  }
  double vs[3] = {req.voxel_size[0], req.voxel_size[1], req.voxel_size[2]};
  if (start_create(rq->conn, p, &req.shape, vs) != 0) {
    srv_ticket_release(p->ticket);
    free(p);
    return SRV_CMD_DONE;
  }
  return SRV_CMD_PENDING;
}


/* ---- jobs: cancel and delete ---- */

static void on_job_ended(void* arg, srv_job_t* job, int status) {
  pending_t* p = arg;
  srv_conn_t* conn = pending_conn(p);
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
  pending_done(p);
}


/* DELETE cancels a queued or running job (the reference's contract: 409
 * once it has finished); DELETE ?purge=1 deletes a finished one. */
static srv_cmd_result_t handle_delete(srv_request_t* rq, srv_job_t* job) {
  bool finished = core_job_state_is_terminal(job->state) && !job->is_ending;
  char value[8];
  bool purge =
      query_get(net_http_url(rq->http), "purge", value, sizeof(value)) &&
      (strcmp(value, "1") == 0 || strcmp(value, "true") == 0);
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
  pending_t* p = pending_new(rq);
  if (p == NULL) {
    return reply_oom(rq);
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


/* ---- jobs: preview and artifact ---- */

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
  srv_conn_t* conn = pending_conn(p);
  if (conn != NULL) {
    if (p->job->topic.latest[CORE_ENC_BASE64] != NULL) {
      reply_preview(conn, &p->mode, p->job);
    } else {
      srv_http_reply_error(conn, &p->mode, 500, "internal",
                           "the preview could not be rendered again",
                           "see the server log", true, NULL);
    }
  }
  pending_done(p);
}


static srv_cmd_result_t handle_preview(srv_request_t* rq, srv_job_t* job) {
  if (job->topic.latest[CORE_ENC_BASE64] == NULL &&
      job->state == CORE_JOB_COMPLETED && job->final_preview_seq != 0) {
    /* A completed job's final preview may have left memory (restart, cache
     * trim): render it again and answer when it is back. */
    pending_t* p = pending_new(rq);
    if (p == NULL) {
      return reply_oom(rq);
    }
    p->job = srv_job_ref(job);
    p->waiter.ready = on_preview_ready;
    srv_topic_wait(&job->topic, &p->waiter);
    job->ctx->engine->rebuild_preview(job);
    return SRV_CMD_PENDING;
  }
  reply_preview(rq->conn, &rq->mode, job);
  return SRV_CMD_DONE;
}


static srv_cmd_result_t handle_artifact(srv_request_t* rq,
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
             core_job_state_name(job->state));
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
    return reply_oom(rq);
  }
  return SRV_CMD_PENDING; /* streamed; the download resumes the conn */
}


/* ---- routing ---- */

typedef struct {
  const char* p;
  size_t len;
} span_t;


static bool span_is(span_t s, const char* lit) {
  return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}


/* Splits `path` into at most `max` segments between '/'. Returns the
 * count, or max + 1 when there are more. */
static size_t split_path(const char* path,
                         size_t len,
                         span_t* out,
                         size_t max) {
  size_t count = 0;
  size_t i = 0;
  while (i < len) {
    if (path[i] == '/') {
      i++;
      continue;
    }
    size_t start = i;
    while (i < len && path[i] != '/') {
      i++;
    }
    if (count == max) {
      return max + 1;
    }
    out[count++] = (span_t){path + start, i - start};
  }
  return count;
}


static srv_job_t* find_job_or_reply(srv_request_t* rq, span_t id) {
  if (!core_uuid_is_valid(id.p, id.len)) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_job_id",
                         "job ids are UUIDs like "
                         "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
                         NULL, false, NULL);
    return NULL;
  }
  srv_job_t* job = srv_job_find(rq->conn->ctx, id.p, id.len);
  if (job == NULL) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "job_not_found",
                         "no job has this id", "GET /v1/jobs lists the jobs",
                         false, NULL);
  }
  return job;
}


/* Answers 401/403 and returns false when the request lacks the token its
 * route needs (read for GET/HEAD and WebSocket, write for POST and
 * DELETE). */
static bool authorized(srv_request_t* rq, bool read_only, bool allow_query) {
  switch (srv_auth_check(&rq->conn->ctx->auth, rq->http,
                         read_only ? SRV_SCOPE_READ : SRV_SCOPE_WRITE,
                         allow_query)) {
  case SRV_AUTH_OK:
    return true;
  case SRV_AUTH_MISSING:
    srv_http_reply_error(rq->conn, &rq->mode, 401, "unauthorized",
                         "this server needs a bearer token",
                         "send Authorization: Bearer <token> (WebSocket "
                         "clients may use ?access_token=)",
                         false, "WWW-Authenticate: Bearer\r\n");
    break;
  case SRV_AUTH_INVALID:
    srv_http_reply_error(
        rq->conn, &rq->mode, 401, "unauthorized", "the token is not valid",
        NULL, false, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
    break;
  case SRV_AUTH_FORBIDDEN:
    srv_http_reply_error(rq->conn, &rq->mode, 403, "forbidden",
                         "the token may read but not change jobs",
                         "use a token with write scope", false, NULL);
    break;
  }
  return false;
}


static srv_cmd_result_t route_job(srv_request_t* rq,
                                  const span_t* seg,
                                  size_t n,
                                  bool is_get) {
  unsigned method = net_http_method(rq->http);
  if (n == 3) {
    if (!is_get && method != HTTP_DELETE) {
      reply_method_not_allowed(rq, "GET, HEAD, DELETE");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    if (job == NULL) {
      return SRV_CMD_DONE;
    }
    if (method == HTTP_DELETE) {
      return handle_delete(rq, job);
    }
    srv_http_reply_json(rq->conn, &rq->mode, 200, srv_job_to_json(job), NULL);
    return SRV_CMD_DONE;
  }
  if (n == 4 && span_is(seg[3], "preview")) {
    if (!is_get) {
      reply_method_not_allowed(rq, "GET, HEAD");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    return job != NULL ? handle_preview(rq, job) : SRV_CMD_DONE;
  }
  if (n == 5 && span_is(seg[3], "artifacts")) {
    if (!is_get) {
      reply_method_not_allowed(rq, "GET, HEAD");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    return job != NULL ? handle_artifact(rq, job, seg[4].p, seg[4].len)
                       : SRV_CMD_DONE;
  }
  srv_http_reply_error(
      rq->conn, &rq->mode, 404, "route_not_found", "no such route",
      "the API lives under /v1; see docs/protocol.md", false, NULL);
  return SRV_CMD_DONE;
}


srv_cmd_result_t srv_commands_handle(srv_request_t* rq) {
  const net_http_reader_t* r = rq->http;
  const char* url = net_http_url(r);
  struct http_parser_url parsed;
  http_parser_url_init(&parsed);
  if (http_parser_parse_url(url, strlen(url), 0, &parsed) != 0 ||
      !(parsed.field_set & (1 << UF_PATH))) {
    rq->mode.keep_alive = false;
    srv_http_reply_error(rq->conn, &rq->mode, 400, "bad_request",
                         "the request URL is not valid", NULL, false, NULL);
    return SRV_CMD_CLOSE;
  }
  const char* path = url + parsed.field_data[UF_PATH].off;
  size_t path_len = parsed.field_data[UF_PATH].len;
  span_t seg[6];
  size_t n = split_path(path, path_len, seg, 5);
  unsigned method = net_http_method(r);
  bool is_get = method == HTTP_GET || method == HTTP_HEAD;
  bool is_health =
      n == 2 && span_is(seg[0], "v1") && span_is(seg[1], "healthz");
  bool is_ws = n == 3 && span_is(seg[0], "ws") && span_is(seg[1], "jobs");
  if (r->is_upgrade) {
    rq->mode.keep_alive = false; /* the client expected to switch */
  }
  if (!is_health && !authorized(rq, is_get || is_ws, is_ws)) {
    return rq->mode.keep_alive ? SRV_CMD_DONE : SRV_CMD_CLOSE;
  }
  if (is_ws) {
    if (!r->is_upgrade) {
      rq->mode.keep_alive = false;
      srv_http_reply_error(rq->conn, &rq->mode, 400, "bad_request",
                           "this endpoint needs a WebSocket upgrade",
                           "connect with a WebSocket client", false, NULL);
      return SRV_CMD_CLOSE;
    }
    return SRV_CMD_UPGRADE;
  }
  if (r->is_upgrade) {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "route_not_found",
                         "WebSocket upgrades are served on /ws/jobs/{id}", NULL,
                         false, NULL);
    return SRV_CMD_CLOSE;
  }
  if (is_health ||
      (n == 3 && span_is(seg[0], "v1") && span_is(seg[1], "server") &&
       span_is(seg[2], "info")) ||
      (n == 1 && span_is(seg[0], "metrics"))) {
    if (!is_get) {
      reply_method_not_allowed(rq, "GET, HEAD");
    } else if (is_health) {
      srv_http_reply_json(rq->conn, &rq->mode, 200,
                          json_pack("{s:s}", "status", "ok"), NULL);
    } else if (n == 1) {
      handle_metrics(rq);
    } else {
      handle_info(rq);
    }
    return SRV_CMD_DONE;
  }
  if (n >= 2 && span_is(seg[0], "v1") && span_is(seg[1], "jobs")) {
    if (n == 2) {
      if (method == HTTP_POST) {
        return handle_create(rq);
      }
      if (is_get) {
        handle_list(rq);
      } else {
        reply_method_not_allowed(rq, "GET, HEAD, POST");
      }
      return SRV_CMD_DONE;
    }
    return route_job(rq, seg, n, is_get);
  }
  srv_http_reply_error(
      rq->conn, &rq->mode, 404, "route_not_found", "no such route",
      "the API lives under /v1; see docs/protocol.md", false, NULL);
  return SRV_CMD_DONE;
}
