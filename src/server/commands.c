/* commands.c: REST routing, authorisation, and the server-wide routes
 * (health, info, metrics); the job commands are in cmd_jobs.c and
 * cmd_results.c. See commands.h and docs/protocol.md. Loop thread only. */
#include "server/commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/auth.h"
#include "server/cluster_rest.h"
#include "server/cmd_uploads.h"
#include "server/cmd_util.h"
#include "server/engines.h"
#include "server/job_json.h"
#include "server/jobs.h"
#include "server/metrics.h"
#include "server/uploads.h"

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
  json_object_set_new(limits, "max_upload_bytes",
                      json_integer((json_int_t) c->max_upload_bytes));
  json_object_set_new(limits, "storage_quota_bytes",
                      json_integer((json_int_t) c->storage_quota_bytes));
  json_object_set_new(limits, "max_uploads_per_token",
                      json_integer(c->max_uploads_per_token));
  json_object_set_new(limits, "max_uploads_per_ip",
                      json_integer(c->max_uploads_per_ip));
  json_object_set_new(limits, "upload_expiry_s", json_real(c->upload_expiry_s));
  json_object_set_new(limits, "max_upload_parts",
                      json_integer(SRV_UPLOAD_PARTS_MAX));
  json_object_set_new(limits, "http_header_timeout_s",
                      json_real(c->http_header_timeout_s));
  json_object_set_new(limits, "http_body_timeout_s",
                      json_real(c->http_body_timeout_s));
  json_object_set_new(limits, "http_write_timeout_s",
                      json_real(c->http_write_timeout_s));
  const srv_engine_cfg_t* e = &c->engines;
  json_object_set_new(limits, "devices", json_integer(e->device_count));
  json_object_set_new(limits, "engine_kill_grace_s",
                      json_real(e->kill_grace_s));
  json_object_set_new(limits, "engine_wall_time_s", json_real(e->wall_time_s));
  json_object_set_new(limits, "engine_max_line_bytes",
                      json_integer((json_int_t) e->max_line_bytes));
  json_object_set_new(limits, "engine_max_lines_per_s",
                      json_integer(e->max_lines_per_s));
  json_object_set_new(limits, "engine_log_bytes",
                      json_integer((json_int_t) e->log_bytes));
  json_object_set_new(limits, "classic_workers",
                      json_integer(e->classic_workers));
  json_t* proxies = json_array();
  for (size_t i = 0; i < c->trusted_proxy_count; i++) {
    char net[CORE_IPNET_TEXT_MAX];
    core_ipnet_format(&c->trusted_proxies[i], net, sizeof(net));
    json_array_append_new(proxies, json_string(net));
  }
  json_object_set_new(limits, "trusted_proxies", proxies);
  json_t* info =
      json_pack("{s:s, s:s, s:i, s:[s,s,s,s,s,s,s,s], s:b, s:o, s:o}", "name",
                "cryomambad", "version", CM_VERSION, "protocol_version", 1,
                "capabilities", "previews", "cancel", "artifacts",
                "patterns:random,blobs", "volume_path",
                "encodings:base64,raw,zstd,chunks", "delete", "engines",
                "auth_required", rq->conn->ctx->auth.count > 0, "limits",
                limits, "engines", srv_engines_info(rq->conn->ctx->engines));
  /* Whom the limits count this request for (behind a trusted proxy, the
   * client X-Forwarded-For names): lets an operator check a proxy setup. */
  json_object_set_new(info, "client_address", json_string(rq->conn->client_ip));
  srv_http_reply_json(rq->conn, &rq->mode, 200, info, NULL);
}


static void handle_metrics(srv_request_t* rq) {
  char* text = NULL;
  size_t len = 0;
  if (srv_metrics_render(rq->conn->ctx, &text, &len) != 0) {
    srv_cmd_reply_oom(rq);
    return;
  }
  srv_http_reply(rq->conn, &rq->mode, 200,
                 "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
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
      srv_cmd_reply_method_not_allowed(rq, "GET, HEAD, DELETE");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    if (job == NULL) {
      return SRV_CMD_DONE;
    }
    if (method == HTTP_DELETE) {
      return srv_cmd_delete_job(rq, job);
    }
    srv_http_reply_json(rq->conn, &rq->mode, 200, srv_job_to_json(job), NULL);
    return SRV_CMD_DONE;
  }
  if (n == 4 && span_is(seg[3], "preview")) {
    if (!is_get) {
      srv_cmd_reply_method_not_allowed(rq, "GET, HEAD");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    return job != NULL ? srv_cmd_preview(rq, job) : SRV_CMD_DONE;
  }
  if (n == 5 && span_is(seg[3], "artifacts")) {
    if (!is_get) {
      srv_cmd_reply_method_not_allowed(rq, "GET, HEAD");
      return SRV_CMD_DONE;
    }
    srv_job_t* job = find_job_or_reply(rq, seg[2]);
    return job != NULL ? srv_cmd_artifact(rq, job, seg[4].p, seg[4].len)
                       : SRV_CMD_DONE;
  }
  srv_http_reply_error(
      rq->conn, &rq->mode, 404, "route_not_found", "no such route",
      "the API lives under /v1; see docs/protocol.md", false, NULL);
  return SRV_CMD_DONE;
}


/* The request URL's path; false when the URL is not valid. */
static bool url_path(const net_http_reader_t* r,
                     const char** path,
                     size_t* len) {
  const char* url = net_http_url(r);
  struct http_parser_url parsed;
  http_parser_url_init(&parsed);
  if (http_parser_parse_url(url, strlen(url), 0, &parsed) != 0 ||
      !(parsed.field_set & (1 << UF_PATH))) {
    return false;
  }
  *path = url + parsed.field_data[UF_PATH].off;
  *len = parsed.field_data[UF_PATH].len;
  return true;
}


/* The path's segments (at most max) or max + 1; 0 for a bad URL. */
static size_t route_of(const net_http_reader_t* r, span_t* seg, size_t max) {
  const char* path = NULL;
  size_t len = 0;
  return url_path(r, &path, &len) ? split_path(path, len, seg, max) : 0;
}


srv_body_sink_t* srv_commands_stream(srv_request_t* rq) {
  unsigned method = net_http_method(rq->http);
  if (method != HTTP_PATCH && method != HTTP_POST) {
    return NULL;
  }
  span_t seg[4];
  size_t n = route_of(rq->http, seg, 3);
  if (n < 2 || n > 3 || !span_is(seg[0], "v1") || !span_is(seg[1], "uploads") ||
      (method == HTTP_PATCH) != (n == 3) || rq->http->is_upgrade) {
    return NULL;
  }
  /* Only an authorised client's body goes to disk; any other is gathered
   * within --max-body-bytes and refused when complete. */
  const srv_config_t* cfg = &rq->conn->ctx->cfg;
  if (cfg->role == SRV_ROLE_WORKER ||
      (cfg->role == SRV_ROLE_GATEWAY && cfg->shared_dir[0] == '\0')) {
    return NULL; /* refused once complete (route_gateway) */
  }
  if (srv_auth_check(&rq->conn->ctx->auth, rq->http, SRV_SCOPE_WRITE, false) !=
      SRV_AUTH_OK) {
    return NULL;
  }
  return srv_cmd_upload_stream(rq, n == 3 ? seg[2].p : NULL,
                               n == 3 ? seg[2].len : 0);
}


static srv_cmd_result_t route_uploads(srv_request_t* rq,
                                      const span_t* seg,
                                      size_t n) {
  unsigned method = net_http_method(rq->http);
  if (rq->sink != NULL) {
    return srv_cmd_upload_body_done(rq);
  }
  if (method == HTTP_OPTIONS) {
    srv_cmd_upload_options(rq);
    return SRV_CMD_DONE;
  }
  if (n == 2) {
    if (method == HTTP_POST) {
      return srv_cmd_tus_version_ok(rq) ? srv_cmd_upload_create(rq)
                                        : SRV_CMD_DONE;
    }
    srv_cmd_reply_method_not_allowed(rq, "OPTIONS, POST");
    return SRV_CMD_DONE;
  }
  if (n == 3 && method == HTTP_HEAD) {
    return srv_cmd_upload_head(rq, seg[2].p, seg[2].len);
  }
  if (n == 3 && method == HTTP_DELETE) {
    return srv_cmd_upload_delete(rq, seg[2].p, seg[2].len);
  }
  if (n == 3) {
    srv_cmd_reply_method_not_allowed(rq, "OPTIONS, HEAD, PATCH, DELETE");
    return SRV_CMD_DONE;
  }
  srv_http_reply_error(rq->conn, &rq->mode, 404, "route_not_found",
                       "no such route", NULL, false, NULL);
  return SRV_CMD_DONE;
}


static srv_cmd_result_t route_volumes(srv_request_t* rq,
                                      const span_t* seg,
                                      size_t n,
                                      bool is_get) {
  unsigned method = net_http_method(rq->http);
  if (n == 2 && is_get) {
    srv_cmd_list_volumes(rq);
  } else if (n == 2) {
    srv_cmd_reply_method_not_allowed(rq, "GET, HEAD");
  } else if (n == 3 && is_get) {
    srv_cmd_get_volume(rq, seg[2].p, seg[2].len);
  } else if (n == 3 && method == HTTP_DELETE) {
    return srv_cmd_delete_volume(rq, seg[2].p, seg[2].len);
  } else if (n == 3) {
    srv_cmd_reply_method_not_allowed(rq, "GET, HEAD, DELETE");
  } else {
    srv_http_reply_error(rq->conn, &rq->mode, 404, "route_not_found",
                         "no such route", NULL, false, NULL);
  }
  return SRV_CMD_DONE;
}


/* A gateway's routes beyond a job's creation and record: from Redis and
 * the shared directory (cluster_rest.h). */
static srv_cmd_result_t route_gateway(srv_request_t* rq,
                                      const span_t* seg,
                                      size_t n,
                                      bool is_get) {
  unsigned method = net_http_method(rq->http);
  bool shared = rq->conn->ctx->cfg.shared_dir[0] != '\0';
  bool v1 = n >= 2 && span_is(seg[0], "v1");
  bool uploads = v1 && n <= 3 && span_is(seg[1], "uploads");
  bool volumes = v1 && n <= 3 && span_is(seg[1], "volumes");
  bool jobs = v1 && span_is(seg[1], "jobs");
  bool artifact = jobs && n == 5 && span_is(seg[3], "artifacts");
  if ((uploads || volumes || artifact) && !shared) {
    return srv_cmd_cluster_no_shared_dir(rq);
  }
  if (uploads) {
    return route_uploads(rq, seg, n); /* local records, shared files */
  }
  if (volumes && n == 2 && is_get) {
    return srv_cmd_cluster_list_volumes(rq);
  }
  if (volumes && n == 3 && is_get) {
    return srv_cmd_cluster_get_volume(rq, seg[2].p, seg[2].len);
  }
  if (volumes && n == 3 && method == HTTP_DELETE) {
    return srv_cmd_cluster_delete_volume(rq, seg[2].p, seg[2].len);
  }
  if (jobs && n == 2 && is_get) {
    return srv_cmd_cluster_list_jobs(rq);
  }
  if (jobs && n == 3 && method == HTTP_DELETE) {
    return srv_cmd_query_purge(net_http_url(rq->http))
               ? srv_cmd_cluster_delete_job(rq, seg[2].p, seg[2].len)
               : srv_cmd_cluster_cancel_job(rq, seg[2].p, seg[2].len);
  }
  if (jobs && n == 4 && span_is(seg[3], "preview")) {
    if (!is_get) {
      srv_cmd_reply_method_not_allowed(rq, "GET, HEAD");
      return SRV_CMD_DONE;
    }
    return srv_cmd_cluster_preview(rq, seg[2].p, seg[2].len);
  }
  if (artifact && is_get) {
    return srv_cmd_cluster_artifact(rq, seg[2].p, seg[2].len, seg[4].p,
                                    seg[4].len);
  }
  return srv_cmd_cluster_refuse(rq);
}


/* What routing and authorisation need from a request's URL. */
typedef struct {
  span_t seg[6];
  size_t n;
  bool is_health; /* /v1/healthz: no token needed */
  bool is_ws;     /* /ws/jobs/{id} */
  bool is_read;   /* needs read scope only (GET, HEAD, OPTIONS, WebSocket) */
} route_t;


/* Splits the request's path for routing; false when the URL is not valid.
 * Shared by srv_commands_handle() and srv_commands_on_headers(), so both
 * authorise a request the same way. */
static bool parse_route(const net_http_reader_t* r, route_t* rt) {
  const char* path = NULL;
  size_t len = 0;
  if (!url_path(r, &path, &len)) {
    return false;
  }
  rt->n = split_path(path, len, rt->seg, 5);
  const span_t* seg = rt->seg;
  unsigned method = net_http_method(r);
  rt->is_health =
      rt->n == 2 && span_is(seg[0], "v1") && span_is(seg[1], "healthz");
  rt->is_ws = rt->n == 3 && span_is(seg[0], "ws") && span_is(seg[1], "jobs");
  rt->is_read = method == HTTP_GET || method == HTTP_HEAD ||
                method == HTTP_OPTIONS || rt->is_ws;
  return true;
}


srv_cmd_result_t srv_commands_handle(srv_request_t* rq) {
  const net_http_reader_t* r = rq->http;
  route_t rt;
  if (!parse_route(r, &rt)) {
    rq->mode.keep_alive = false;
    srv_http_reply_error(rq->conn, &rq->mode, 400, "bad_request",
                         "the request URL is not valid", NULL, false, NULL);
    return SRV_CMD_CLOSE;
  }
  const span_t* seg = rt.seg;
  size_t n = rt.n;
  unsigned method = net_http_method(r);
  bool is_get = method == HTTP_GET || method == HTTP_HEAD;
  bool is_health = rt.is_health;
  bool is_ws = rt.is_ws;
  if (r->is_upgrade) {
    rq->mode.keep_alive = false; /* the client expected to switch */
  }
  if (!is_health && !authorized(rq, rt.is_read, is_ws)) {
    return rq->mode.keep_alive ? SRV_CMD_DONE : SRV_CMD_CLOSE;
  }
  bool is_cluster = rq->conn->ctx->cfg.role != SRV_ROLE_ALL;
  if (is_cluster && is_ws && rq->conn->ctx->cfg.role == SRV_ROLE_WORKER) {
    rq->mode.keep_alive = false;
    srv_cmd_cluster_refuse(rq);
    return SRV_CMD_CLOSE;
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
      srv_cmd_reply_method_not_allowed(rq, "GET, HEAD");
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
  if (is_cluster) {
    bool is_jobs = n >= 2 && span_is(seg[0], "v1") && span_is(seg[1], "jobs");
    bool gateway = rq->conn->ctx->cfg.role == SRV_ROLE_GATEWAY;
    if (gateway && is_jobs && n == 2 && method == HTTP_POST) {
      return srv_cmd_create_job(rq);
    }
    if (gateway && is_jobs && n == 3 && is_get) {
      return srv_cmd_cluster_get_job(rq, seg[2].p, seg[2].len);
    }
    if (gateway) {
      return route_gateway(rq, seg, n, is_get);
    }
    return srv_cmd_cluster_refuse(rq);
  }
  if (n >= 2 && n <= 3 && span_is(seg[0], "v1") && span_is(seg[1], "uploads")) {
    return route_uploads(rq, seg, n);
  }
  if (n >= 2 && n <= 3 && span_is(seg[0], "v1") && span_is(seg[1], "volumes")) {
    return route_volumes(rq, seg, n, is_get);
  }
  if (n >= 2 && span_is(seg[0], "v1") && span_is(seg[1], "jobs")) {
    if (n == 2) {
      if (method == HTTP_POST) {
        return srv_cmd_create_job(rq);
      }
      if (is_get) {
        srv_cmd_list_jobs(rq);
      } else {
        srv_cmd_reply_method_not_allowed(rq, "GET, HEAD, POST");
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


srv_cmd_result_t srv_commands_on_headers(srv_request_t* rq) {
  const net_http_reader_t* r = rq->http;
  const char* expect = net_http_header(r, "Expect");
  if (expect == NULL) {
    return SRV_CMD_DONE;
  }
  rq->mode.keep_alive = false; /* a refusal leaves the body unread */
  if (!net_http_value_is(expect, "100-continue")) {
    srv_http_reply_error(rq->conn, &rq->mode, 417, "expectation_failed",
                         "the only expectation this server meets is "
                         "100-continue",
                         "drop the Expect header", false, NULL);
    return SRV_CMD_CLOSE;
  }
  if (!r->expects_continue) {
    return SRV_CMD_DONE; /* HTTP/1.0, or no body held back */
  }
  /* Refuse now what srv_commands_handle() would refuse once the body came,
   * so the client does not send it for nothing. Too large a Content-Length
   * never gets here (the reader fails with NET_HTTP_E_BODY_TOO_LARGE),
   * except on a streamed route, which bounds its body itself. */
  route_t rt;
  if (parse_route(r, &rt) && !rt.is_health &&
      !authorized(rq, rt.is_read, rt.is_ws)) {
    return SRV_CMD_CLOSE;
  }
  if (rq->conn->is_shutting_down || rq->conn->is_closing) {
    /* A streamed body's own checks (srv_commands_stream, which runs first:
     * an upload's tus headers and state) refused it and ended the
     * connection: the refusal is the answer, no 100 goes out. */
    return SRV_CMD_CLOSE;
  }
  return srv_http_reply_continue(rq->conn) == 0 ? SRV_CMD_DONE : SRV_CMD_CLOSE;
}
