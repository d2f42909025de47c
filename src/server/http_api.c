/* http_api.c: REST routes and replies. See http_api.h and docs/protocol.md.
 * Loop thread only. Artifacts are streamed by download.c; the one disk read
 * done inline is the 1 KiB MRC header of a volume_path (volume.c). */
#include "server/http_api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/job_request.h"
#include "core/msg.h"
#include "server/auth.h"
#include "server/conn.h"
#include "server/download.h"
#include "server/engine.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/volume.h"
#include "server/ws_api.h"

static const char* status_text(int status) {
  switch (status) {
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 426:
    return "Upgrade Required";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}


static bool keeps_alive(srv_conn_t* conn) {
  return !conn->close_after_write && conn->http != NULL &&
         net_http_should_keep_alive(conn->http) && !conn->ctx->is_stopping;
}


/* Sends head + body as one frame (one copy of the body, then shared). */
static void reply(srv_conn_t* conn,
                  int status,
                  const char* content_type,
                  const void* body,
                  size_t body_len,
                  uint64_t announced_len,
                  const char* extra_headers) {
  char head[768];
  bool keep = keeps_alive(conn);
  if (!keep) {
    conn->close_after_write = true;
  }
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\n"
                   "Server: cryomambad/" CM_VERSION
                   "\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %llu\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: %s\r\n"
                   "%s\r\n",
                   status, status_text(status), content_type,
                   (unsigned long long) announced_len,
                   keep ? "keep-alive" : "close",
                   extra_headers != NULL ? extra_headers : "");
  if (n < 0 || (size_t) n >= sizeof(head)) {
    srv_conn_close(conn);
    return;
  }
  net_frame_t* f = net_frame_new(0, (size_t) n + body_len);
  if (f == NULL) {
    srv_conn_close(conn);
    return;
  }
  memcpy(f->data, head, (size_t) n);
  if (body_len > 0) {
    memcpy(f->data + n, body, body_len);
  }
  conn->ctx->metrics.http_responses_by_class[status / 100 % 6]++;
  srv_conn_send(conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


void srv_http_reply_head(srv_conn_t* conn,
                         int status,
                         const char* content_type,
                         uint64_t len,
                         const char* extra_headers) {
  reply(conn, status, content_type, NULL, 0, len, extra_headers);
}


static void reply_text(srv_conn_t* conn,
                       int status,
                       const char* type,
                       const char* text,
                       size_t len,
                       const char* extra) {
  reply(conn, status, type, text, len, len, extra);
}


void srv_http_reply_json(srv_conn_t* conn, int status, json_t* body) {
  char* text = body != NULL
                   ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)
                   : NULL;
  json_decref(body);
  if (text == NULL) {
    srv_http_reply_error(conn, 500, "internal", "out of memory", NULL, true,
                         NULL);
    return;
  }
  reply_text(conn, status, "application/json", text, strlen(text), NULL);
  free(text);
}


void srv_http_reply_error(srv_conn_t* conn,
                          int status,
                          const char* code,
                          const char* message,
                          const char* hint,
                          bool retryable,
                          const char* extra_headers) {
  size_t len = 0;
  char* text = core_msg_error_json(code, message, hint, retryable, &len);
  if (text == NULL) {
    static const char fallback[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\","
        "\"hint\":null,\"retryable\":true}}";
    reply_text(conn, 500, "application/json", fallback, sizeof(fallback) - 1,
               NULL);
    return;
  }
  reply_text(conn, status, "application/json", text, len, extra_headers);
  free(text);
}


static void reply_method_not_allowed(srv_conn_t* conn, const char* allow) {
  char headers[64];
  snprintf(headers, sizeof(headers), "Allow: %s\r\n", allow);
  char message[96];
  snprintf(message, sizeof(message), "this route accepts %s", allow);
  srv_http_reply_error(conn, 405, "method_not_allowed", message, NULL, false,
                       headers);
}


/* ---- handlers ---- */

static void handle_info(srv_conn_t* conn) {
  const srv_config_t* c = &conn->ctx->cfg;
  srv_http_reply_json(
      conn, 200,
      json_pack(
          "{s:s, s:s, s:i, s:[s,s,s,s,s,s], s:b, s:{s:I, s:I, s:I, s:I, s:I, "
          "s:I, s:I, s:I, s:I, s:[f,f], s:f}}",
          "name", "cryomambad", "version", CM_VERSION, "protocol_version", 1,
          "capabilities", "previews", "cancel", "artifacts",
          "patterns:random,blobs", "volume_path", "encodings:base64,raw,zstd",
          "auth_required", conn->ctx->auth.count > 0, "limits", "max_running",
          (json_int_t) c->max_running, "max_connections",
          (json_int_t) c->max_connections, "max_subscribers_per_job",
          (json_int_t) c->max_subscribers_per_job, "max_connections_per_ip",
          (json_int_t) c->max_connections_per_ip, "max_body_bytes",
          (json_int_t) c->max_body_bytes, "max_ws_message_bytes",
          (json_int_t) c->max_ws_message_bytes, "max_dim",
          (json_int_t) CORE_SHAPE_MAX_DIM, "max_scale",
          (json_int_t) CORE_SCALE_MAX, "max_volume_voxels",
          (json_int_t) c->max_volume_voxels, "preview_hz", CORE_PREVIEW_HZ_MIN,
          CORE_PREVIEW_HZ_MAX, "default_preview_hz", c->preview_hz));
}


static void handle_list(srv_conn_t* conn) {
  json_t* jobs = json_array();
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &conn->ctx->jobs) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    json_array_append_new(jobs, srv_job_to_json(job));
  }
  size_t count = json_array_size(jobs);
  srv_http_reply_json(
      conn, 200,
      json_pack("{s:o, s:I}", "jobs", jobs, "count", (json_int_t) count));
}


static void handle_create(srv_conn_t* conn) {
  srv_ctx_t* ctx = conn->ctx;
  net_http_reader_t* r = conn->http;
  json_t* body = NULL;
  if (r->body_len > 0) {
    json_error_t jerr;
    body = json_loadb((const char*) r->body, r->body_len,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
      char message[256];
      snprintf(message, sizeof(message),
               "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
               jerr.line, jerr.column);
      srv_http_reply_error(conn, 400, "bad_json", message,
                           "send a JSON object, or no body for the defaults",
                           false, NULL);
      return;
    }
    if (!json_is_object(body)) {
      json_decref(body);
      srv_http_reply_error(conn, 400, "bad_json",
                           "the body must be a JSON object", NULL, false, NULL);
      return;
    }
  }
  core_job_request_t req;
  char err[256];
  int rc = core_job_request_parse(body, &req, err, sizeof(err));
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
    srv_http_reply_error(
        conn, 400, about_path ? "invalid_volume_path" : "invalid_field", err,
        "see docs/protocol.md, POST /v1/jobs", false, NULL);
    return;
  }
  if (!has_hz) {
    req.params.preview_hz = ctx->cfg.preview_hz;
  }
  core_shape_t shape = req.shape;
  double voxel_size[3] = {req.voxel_size[0], req.voxel_size[1],
                          req.voxel_size[2]};
  if (req.has_volume_path) {
    char why[256];
    if (srv_volume_resolve(ctx, req.volume_path, &shape, voxel_size, why,
                           sizeof(why)) != 0) {
      srv_http_reply_error(conn, 400, "invalid_volume_path", why,
                           "volume_path is relative to the server's "
                           "--data-root and must name a valid .mrc file",
                           false, NULL);
      return;
    }
    if (req.has_voxel_size) {
      memcpy(voxel_size, req.voxel_size, sizeof(voxel_size));
    }
  }
  if (core_shape_voxels(&shape) > ctx->cfg.max_volume_voxels) {
    char message[160];
    snprintf(message, sizeof(message),
             "volume.shape has %llu voxels; this server accepts at most %llu",
             (unsigned long long) core_shape_voxels(&shape),
             (unsigned long long) ctx->cfg.max_volume_voxels);
    srv_http_reply_error(conn, 400, "invalid_field", message,
                         "use a smaller volume.shape", false, NULL);
    return;
  }
  srv_job_t* job = NULL;
  rc = srv_job_create(ctx, &req, &shape, voxel_size,
                      req.has_volume_path ? req.volume_path : NULL, &job);
  if (rc != 0) {
    srv_http_reply_error(conn, 500, "internal", "could not create the job",
                         NULL, true, NULL);
    return;
  }
  json_t* out = srv_job_to_json(job);
  json_object_set_new(out, "status", json_string("created"));
  char location[96];
  snprintf(location, sizeof(location), "Location: /v1/jobs/%s\r\n", job->id);
  char* text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(out);
  if (text == NULL) {
    srv_http_reply_error(conn, 500, "internal", "out of memory", NULL, true,
                         NULL);
    return;
  }
  reply_text(conn, 201, "application/json", text, strlen(text), location);
  free(text);
}


static void handle_cancel(srv_conn_t* conn, srv_job_t* job) {
  if (srv_job_cancel(job) != 0) {
    char message[128];
    snprintf(message, sizeof(message), "the job already %s",
             core_job_state_name(job->state));
    srv_http_reply_error(conn, 409, "job_finished", message,
                         "only queued or running jobs can be cancelled", false,
                         NULL);
    return;
  }
  srv_http_reply_json(conn, 200,
                      json_pack("{s:s, s:s, s:s}", "job_id", job->id, "status",
                                "cancelled", "state", "cancelled"));
}


void srv_http_reply_preview(srv_conn_t* conn, srv_job_t* job) {
  net_frame_t* f = job->latest[CORE_ENC_BASE64];
  if (f == NULL) {
    srv_http_reply_error(
        conn, 404, "preview_not_ready", "no preview has been produced yet",
        "retry after the job's first preview period", true, NULL);
    return;
  }
  size_t len = 0;
  const uint8_t* message = net_ws_frame_payload(f, &len);
  reply_text(conn, 200, "application/json", (const char*) message, len, NULL);
}


static int handle_preview(srv_conn_t* conn, srv_job_t* job) {
  if (job->latest[CORE_ENC_BASE64] == NULL) {
    /* A completed job's final preview may have left memory (restart, cache
     * trim): render it again and answer when it is back. */
    srv_engine_rebuild_preview(job);
    if (job->preview_rebuild_pending) {
      conn->waiting_job = job;
      core_list_push_back(&job->preview_waiters, &conn->sub_link);
      return 1; /* paused until engine.c calls srv_http_preview_ready() */
    }
  }
  srv_http_reply_preview(conn, job);
  return 0;
}


void srv_http_preview_ready(srv_job_t* job) {
  while (!core_list_is_empty(&job->preview_waiters)) {
    core_list_t* node = core_list_front(&job->preview_waiters);
    core_list_remove(node);
    srv_conn_t* conn = CORE_CONTAINER_OF(node, srv_conn_t, sub_link);
    conn->waiting_job = NULL;
    if (job->latest[CORE_ENC_BASE64] != NULL) {
      srv_http_reply_preview(conn, job);
    } else {
      srv_http_reply_error(conn, 500, "internal",
                           "the preview could not be rendered again",
                           "see the server log", true, NULL);
    }
    srv_conn_resume_http(conn);
  }
}


static int handle_artifact(srv_conn_t* conn,
                           srv_job_t* job,
                           const char* name,
                           size_t name_len) {
  if (name_len != 8 || memcmp(name, "mask.mrc", 8) != 0) {
    srv_http_reply_error(conn, 404, "artifact_not_found",
                         "this job has no artifact by that name",
                         "the artifacts are listed in the job's 'artifacts'",
                         false, NULL);
    return 0;
  }
  if (job->state != CORE_JOB_COMPLETED) {
    char message[128];
    snprintf(message, sizeof(message),
             "the mask exists once the job completes; it is %s",
             core_job_state_name(job->state));
    srv_http_reply_error(conn, 409, "job_not_completed", message,
                         "wait for the 'completed' message",
                         !core_job_state_is_terminal(job->state), NULL);
    return 0;
  }
  char path[1200];
  if (srv_job_artifact_path(job, path, sizeof(path)) != 0 ||
      srv_download_start(conn, path, "application/octet-stream",
                         "artifact_not_found") != 0) {
    srv_http_reply_error(conn, 500, "internal", "cannot send the artifact",
                         NULL, true, NULL);
    return 0;
  }
  return 1; /* streamed: pause parsing until it is sent */
}


static void handle_metrics(srv_conn_t* conn) {
  char* text = NULL;
  size_t len = 0;
  if (srv_metrics_render(conn->ctx, &text, &len) != 0) {
    srv_http_reply_error(conn, 500, "internal", "out of memory", NULL, true,
                         NULL);
    return;
  }
  reply_text(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
             NULL);
  free(text);
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


static srv_job_t* find_job_or_reply(srv_conn_t* conn, span_t id) {
  if (!core_uuid_is_valid(id.p, id.len)) {
    srv_http_reply_error(conn, 400, "invalid_job_id",
                         "job ids are UUIDs like "
                         "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
                         NULL, false, NULL);
    return NULL;
  }
  srv_job_t* job = srv_job_find(conn->ctx, id.p, id.len);
  if (job == NULL) {
    srv_http_reply_error(conn, 404, "job_not_found", "no job has this id",
                         "GET /v1/jobs lists the jobs", false, NULL);
  }
  return job;
}


/* Answers 401/403 and returns false when the request lacks the token its
 * route needs (read for GET and WebSocket, write for POST and DELETE). */
static bool authorized(srv_conn_t* conn, bool read_only, bool allow_query) {
  switch (srv_auth_check(&conn->ctx->auth, conn->http,
                         read_only ? SRV_SCOPE_READ : SRV_SCOPE_WRITE,
                         allow_query)) {
  case SRV_AUTH_OK:
    return true;
  case SRV_AUTH_MISSING:
    srv_http_reply_error(conn, 401, "unauthorized",
                         "this server needs a bearer token",
                         "send Authorization: Bearer <token> (WebSocket "
                         "clients may use ?access_token=)",
                         false, "WWW-Authenticate: Bearer\r\n");
    break;
  case SRV_AUTH_INVALID:
    srv_http_reply_error(
        conn, 401, "unauthorized", "the token is not valid", NULL, false,
        "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
    break;
  case SRV_AUTH_FORBIDDEN:
    srv_http_reply_error(conn, 403, "forbidden",
                         "the token may read but not change jobs",
                         "use a token with write scope", false, NULL);
    break;
  }
  if (conn->http->is_upgrade) {
    conn->close_after_write = true; /* the client expected to switch */
  }
  return false;
}


int srv_http_handle(srv_conn_t* conn) {
  net_http_reader_t* r = conn->http;
  const char* url = net_http_url(r);
  struct http_parser_url parsed;
  http_parser_url_init(&parsed);
  if (http_parser_parse_url(url, strlen(url), 0, &parsed) != 0 ||
      !(parsed.field_set & (1 << UF_PATH))) {
    conn->close_after_write = true;
    srv_http_reply_error(conn, 400, "bad_request",
                         "the request URL is not valid", NULL, false, NULL);
    return -1;
  }
  const char* path = url + parsed.field_data[UF_PATH].off;
  size_t path_len = parsed.field_data[UF_PATH].len;
  span_t seg[6];
  size_t n = split_path(path, path_len, seg, 5);
  unsigned method = net_http_method(r);
  bool is_get = method == HTTP_GET;
  bool is_health =
      n == 2 && span_is(seg[0], "v1") && span_is(seg[1], "healthz");
  bool is_ws = n == 3 && span_is(seg[0], "ws") && span_is(seg[1], "jobs");
  if (!is_health && !authorized(conn, is_get || is_ws, is_ws)) {
    return conn->close_after_write ? -1 : 0;
  }

  if (is_ws) {
    if (!r->is_upgrade) {
      conn->close_after_write = true;
      srv_http_reply_error(conn, 400, "bad_request",
                           "this endpoint needs a WebSocket upgrade",
                           "connect with a WebSocket client", false, NULL);
      return -1;
    }
    conn->is_upgrade_pending = true; /* conn.c upgrades after the parse */
    return 0;
  }
  if (r->is_upgrade) {
    conn->close_after_write = true;
    srv_http_reply_error(conn, 404, "route_not_found",
                         "WebSocket upgrades are served on /ws/jobs/{id}", NULL,
                         false, NULL);
    return -1;
  }
  if (is_health) {
    if (!is_get) {
      reply_method_not_allowed(conn, "GET");
    } else {
      srv_http_reply_json(conn, 200, json_pack("{s:s}", "status", "ok"));
    }
    return 0;
  }
  if (n == 3 && span_is(seg[0], "v1") && span_is(seg[1], "server") &&
      span_is(seg[2], "info")) {
    if (!is_get) {
      reply_method_not_allowed(conn, "GET");
    } else {
      handle_info(conn);
    }
    return 0;
  }
  if (n == 1 && span_is(seg[0], "metrics")) {
    if (!is_get) {
      reply_method_not_allowed(conn, "GET");
    } else {
      handle_metrics(conn);
    }
    return 0;
  }
  if (n >= 2 && span_is(seg[0], "v1") && span_is(seg[1], "jobs")) {
    if (n == 2) {
      if (method == HTTP_POST) {
        handle_create(conn);
      } else if (is_get) {
        handle_list(conn);
      } else {
        reply_method_not_allowed(conn, "GET, POST");
      }
      return 0;
    }
    if (n == 3) {
      if (!is_get && method != HTTP_DELETE) {
        reply_method_not_allowed(conn, "GET, DELETE");
        return 0;
      }
      srv_job_t* job = find_job_or_reply(conn, seg[2]);
      if (job == NULL) {
        return 0;
      }
      if (method == HTTP_DELETE) {
        handle_cancel(conn, job);
      } else {
        srv_http_reply_json(conn, 200, srv_job_to_json(job));
      }
      return 0;
    }
    if (n == 4 && span_is(seg[3], "preview")) {
      if (!is_get) {
        reply_method_not_allowed(conn, "GET");
        return 0;
      }
      srv_job_t* job = find_job_or_reply(conn, seg[2]);
      return job != NULL ? handle_preview(conn, job) : 0;
    }
    if (n == 5 && span_is(seg[3], "artifacts")) {
      if (!is_get) {
        reply_method_not_allowed(conn, "GET");
        return 0;
      }
      srv_job_t* job = find_job_or_reply(conn, seg[2]);
      return job != NULL ? handle_artifact(conn, job, seg[4].p, seg[4].len) : 0;
    }
  }
  srv_http_reply_error(conn, 404, "route_not_found", "no such route",
                       "the API lives under /v1; see docs/protocol.md", false,
                       NULL);
  return 0;
}
