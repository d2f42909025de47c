/* rest.c: the REST calls of protocol v1 over net/http_client: one request
 * per connection, answers parsed into cm_reply_t (jobs, volumes, the error
 * envelope: rest_parse.c), downloads streamed into a file. Async calls run on
 * the client's loop and answer through client_deliver(); the *_sync helpers run
 * the same request on a private loop of the calling thread. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client_int.h"
#include "client/rest_int.h"
#include "client/servers.h"
#include "core/uuid.h"
#include "net/http_client.h"

typedef struct {
  net_hreq_t h;
  core_list_t node; /* in client->reqs (async requests only) */
  cm_client_t* client;
  uv_loop_t* loop;
  rest_kind_t kind;
  const char* method;
  char target[512]; /* path and query, without the server's prefix */
  size_t server;    /* index in client->servers of the current attempt */
  unsigned tried;   /* servers that failed this request so far */
  char* body;       /* request body (JSON), owned */
  char* path;       /* download destination, owned */
  char* part_path;
  int fd;
  bool is_sync;
  bool is_started;
  int status;
  cm_reply_t reply;
  cm_reply_cb cb;
  void* user_data;
  client_life_t* life; /* async: held until the callback ran */
} rest_req_t;


void cm_reply_clear(cm_reply_t* reply) {
  if (reply == NULL) {
    return;
  }
  free(reply->body);
  free(reply->jobs);
  free(reply->volumes);
  memset(reply, 0, sizeof(*reply));
}


/* Turns a finished exchange into reply + status. */
static int parse_reply(rest_req_t* req, int status) {
  cm_reply_t* r = &req->reply;
  r->http_status = (int) req->h.http_status;
  if (req->h.body != NULL) {
    r->body = (char*) req->h.body;
    r->body_len = req->h.body_len;
    req->h.body = NULL;
  }
  if (status != 0) {
    return status == UV_E2BIG ? CM_EPROTO : status;
  }
  json_error_t jerr;
  json_t* root =
      r->body != NULL ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
  int rc = 0;
  if (r->http_status / 100 != 2) {
    rc = client_parse_error(r, root);
  } else if (req->kind == REST_DOWNLOAD) {
    r->bytes = req->h.sunk_bytes;
  } else if (!json_is_object(root)) {
    rc = CM_EPROTO;
  } else if (req->kind == REST_CREATE || req->kind == REST_GET ||
             req->kind == REST_CANCEL) {
    rc = client_parse_job(root, &r->job) ? 0 : CM_EPROTO;
  } else if (req->kind == REST_LIST || req->kind == REST_VOL_LIST) {
    rc = client_parse_listing(r, root, req->kind == REST_VOL_LIST);
  } else if (req->kind == REST_VOL_GET) {
    rc = client_parse_volume(root, &r->volume) ? 0 : CM_EPROTO;
  }
  json_decref(root);
  return rc;
}


static void finish_download(rest_req_t* req) {
  if (req->fd < 0) {
    return;
  }
  int err = close(req->fd) != 0 ? -errno : 0;
  req->fd = -1;
  if (req->status == 0 && err == 0 && rename(req->part_path, req->path) != 0) {
    err = -errno;
  }
  if (req->status == 0 && err != 0) {
    req->status = err;
  }
  if (req->status != 0) {
    unlink(req->part_path);
  }
}


static void rest_req_free(rest_req_t* req) {
  net_hreq_free_body(&req->h);
  cm_reply_clear(&req->reply);
  free(req->body);
  free(req->path);
  free(req->part_path);
  if (req->life != NULL) {
    client_life_unref(req->life);
  }
  free(req);
}


static void run_reply(void* arg) {
  rest_req_t* req = arg;
  if (req->life == NULL || client_life_is_alive(req->life)) {
    req->cb(req->client, req->status, &req->reply, req->user_data);
  }
  rest_req_free(req);
}


static int start_http(rest_req_t* req);


/* Whether the request ending with `status` goes on to the next server
 * (servers.h has the rule); a server that answered becomes the one new
 * requests try first. */
static bool should_try_next(rest_req_t* req, int status) {
  cm_client_t* client = req->client;
  client_servers_t* s = &client->servers;
  bool is_safe = strcmp(req->method, "GET") == 0;
  bool next = req->tried + 1 < s->count &&
              (req->is_sync || !client->is_stopped) &&
              client_servers_should_fail_over(status, req->h.http_status,
                                              req->h.is_sent, is_safe);
  if (!next && status == 0) {
    client_servers_prefer(s, req->server);
  }
  return next;
}


/* Points the request at the next server: a download starts its file
 * again (a GET cut off mid-body is fetched whole from the next one).
 * Returns 0 or the error that ends the request. */
static int move_on(rest_req_t* req, int status) {
  cm_client_t* client = req->client;
  size_t next = client_servers_next(&client->servers, req->server);
  if (!req->is_sync) {
    /* Not for *_sync calls: options.log runs on the client thread. */
    client_log(client, CM_LOG_WARN, "%s %s: server %s failed (%s); trying %s",
               req->method, req->target, client->servers.v[req->server].url,
               status == 0 ? "an HTTP error" : cm_strerror(status),
               client->servers.v[next].url);
  }
  net_hreq_free_body(&req->h);
  req->tried++;
  req->server = next;
  if (req->fd >= 0 &&
      (ftruncate(req->fd, 0) != 0 || lseek(req->fd, 0, SEEK_SET) != 0)) {
    return -errno;
  }
  return 0;
}


static void on_done(net_hreq_t* h, int status) {
  rest_req_t* req = h->data;
  while (should_try_next(req, status)) {
    status = move_on(req, status);
    if (status == 0) {
      status = start_http(req);
    }
    if (status == 0) {
      return; /* on_done comes back with that server's outcome */
    }
  }
  core_list_remove(&req->node);
  req->status = parse_reply(req, status);
  finish_download(req);
  if (req->is_sync) {
    return; /* the sync caller reads the reply after its loop ends */
  }
  client_deliver(req->client, run_reply, req);
}


static int on_sink(net_hreq_t* h, const uint8_t* data, size_t len) {
  rest_req_t* req = h->data;
  /* Disk writes on the loop thread: the client has nothing else urgent,
   * and the kernel's page cache absorbs them. */
  while (len > 0) {
    ssize_t n = write(req->fd, data, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    data += n;
    len -= (size_t) n;
  }
  return 0;
}


/* One attempt, on server req->server. Returns 0 or an error (then
 * on_done does not run). */
static int start_http(rest_req_t* req) {
  cm_client_t* client = req->client;
  const client_server_t* srv = &client->servers.v[req->server];
  char target[sizeof(srv->prefix) + sizeof(req->target)];
  snprintf(target, sizeof(target), "%s%s", srv->prefix, req->target);
  net_hreq_opts_t o = {
      .host = srv->host,
      .port = srv->port,
      .method = req->method,
      .target = target, /* copied by net_hreq_start */
      .headers = client->auth_header,
      .body = req->body,
      .body_len = req->body != NULL ? strlen(req->body) : 0,
      .connect_timeout_ms = client->opts.connect_timeout_ms,
      .idle_timeout_ms = client->opts.request_timeout_ms,
      .max_body_bytes = client->opts.max_body_bytes,
      .sink = req->kind == REST_DOWNLOAD ? on_sink : NULL,
      .tls_ctx = srv->is_tls ? client->tls_ctx : NULL,
  };
  return net_hreq_start(&req->h, req->loop, &o, on_done, req);
}


static void start_on_loop(void* arg) {
  rest_req_t* req = arg;
  cm_client_t* client = req->client;
  int err = 0;
  if (!req->is_sync && client->is_stopped) {
    err = UV_ECANCELED;
  }
  if (err == 0 && req->kind == REST_DOWNLOAD) {
    req->fd =
        open(req->part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (req->fd < 0) {
      err = -errno;
    }
  }
  if (err == 0) {
    req->server = client_servers_first(&client->servers);
    err = start_http(req);
  }
  if (err != 0) {
    /* Report like any other failure, asynchronously for async callers. */
    req->status = err;
    finish_download(req);
    if (!req->is_sync) {
      client_deliver(client, run_reply, req);
    }
    return;
  }
  req->is_started = true;
  if (!req->is_sync) {
    core_list_push_back(&client->reqs, &req->node);
  }
}


void client_reqs_abort_all(cm_client_t* client) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &client->reqs) {
    rest_req_t* req = CORE_CONTAINER_OF(it, rest_req_t, node);
    net_hreq_abort(&req->h);
  }
}


static char* spec_json(const cm_job_spec_t* s) {
  json_t* root = json_object();
  json_t* params = json_object();
  if (s->shape[0] != 0 || s->voxel_size[0] > 0) {
    json_t* volume = json_object();
    if (s->shape[0] != 0) {
      json_object_set_new(
          volume, "shape",
          json_pack("[I,I,I]", (json_int_t) s->shape[0],
                    (json_int_t) s->shape[1], (json_int_t) s->shape[2]));
    }
    if (s->voxel_size[0] > 0) {
      json_object_set_new(volume, "voxel_size",
                          json_pack("[f,f,f]", s->voxel_size[0],
                                    s->voxel_size[1], s->voxel_size[2]));
    }
    json_object_set_new(root, "volume", volume);
  }
  if (s->server_path != NULL) {
    json_object_set_new(root, "volume_path", json_string(s->server_path));
  }
  if (s->volume_id != NULL) {
    json_object_set_new(root, "volume_id", json_string(s->volume_id));
  }
  if (s->preview_hz > 0) {
    json_object_set_new(params, "preview_hz", json_real(s->preview_hz));
  }
  if (s->preview_scale > 0) {
    json_object_set_new(params, "preview_scale",
                        json_integer((json_int_t) s->preview_scale));
  }
  if (s->duration_s >= 0) {
    json_object_set_new(params, "duration_s", json_real(s->duration_s));
  }
  if (s->seed >= 0) {
    json_object_set_new(params, "seed", json_integer(s->seed));
  }
  if (s->pattern != NULL) {
    json_object_set_new(params, "pattern", json_string(s->pattern));
  }
  if (s->engine != NULL) {
    json_object_set_new(params, "engine", json_string(s->engine));
  }
  if (s->preview_downsample != NULL) {
    json_object_set_new(params, "preview_downsample",
                        json_string(s->preview_downsample));
  }
  if (s->engine_params != NULL) {
    json_object_set_new(params, "engine_params",
                        json_loads(s->engine_params, 0, NULL));
  }
  json_object_set_new(root, "params", params);
  char* text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return text;
}


/* Builds a request; NULL with *err set when the arguments are wrong. */
static rest_req_t* rest_req_new(cm_client_t* client,
                                rest_kind_t kind,
                                const rest_args_t* a,
                                int* err) {
  *err = 0;
  const char* job_id = a->id;
  const char* name = a->name;
  const char* path = a->path;
  bool needs_id = kind == REST_GET || kind == REST_CANCEL ||
                  kind == REST_PREVIEW || kind == REST_DOWNLOAD ||
                  kind == REST_VOL_GET || kind == REST_VOL_DELETE;
  if ((needs_id && job_id == NULL) ||
      (job_id != NULL && !core_uuid_is_valid(job_id, strlen(job_id))) ||
      (a->cursor != NULL &&
       !core_uuid_is_valid(a->cursor, strlen(a->cursor)))) {
    *err = CM_EBADID;
    return NULL;
  }
  if (a->limit > 1000) {
    *err = CM_EBADARG;
    return NULL;
  }
  if (kind == REST_DOWNLOAD &&
      (path == NULL || path[0] == '\0' ||
       (name != NULL && strcspn(name, "/?#% ") != strlen(name)))) {
    *err = CM_EBADARG;
    return NULL;
  }
  rest_req_t* req = calloc(1, sizeof(*req));
  if (req == NULL) {
    *err = -ENOMEM;
    return NULL;
  }
  core_list_init(&req->node);
  req->client = client;
  req->kind = kind;
  req->fd = -1;
  req->method = "GET";
  const char* p = ""; /* each attempt adds its server's prefix */
  switch (kind) {
  case REST_HEALTH:
    snprintf(req->target, sizeof(req->target), "%s/v1/healthz", p);
    break;
  case REST_INFO:
    snprintf(req->target, sizeof(req->target), "%s/v1/server/info", p);
    break;
  case REST_CREATE:
    req->method = "POST";
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs", p);
    if (a->spec != NULL && a->spec->engine_params != NULL) {
      json_t* ep = json_loads(a->spec->engine_params, 0, NULL);
      bool ok = json_is_object(ep);
      json_decref(ep);
      if (!ok) {
        *err = -EINVAL;
        break;
      }
    }
    req->body = a->spec != NULL ? spec_json(a->spec) : strdup("{}");
    if (req->body == NULL) {
      *err = -ENOMEM;
    }
    break;
  case REST_LIST:
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs", p);
    break;
  case REST_GET:
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs/%s", p, job_id);
    break;
  case REST_CANCEL:
    req->method = "DELETE";
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs/%s", p, job_id);
    break;
  case REST_PREVIEW:
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs/%s/preview", p,
             job_id);
    break;
  case REST_DOWNLOAD:
    snprintf(req->target, sizeof(req->target), "%s/v1/jobs/%s/artifacts/%s", p,
             job_id, name != NULL ? name : "mask.mrc");
    req->path = strdup(path);
    if (req->path != NULL && asprintf(&req->part_path, "%s.part", path) < 0) {
      req->part_path = NULL;
    }
    if (req->path == NULL || req->part_path == NULL) {
      *err = -ENOMEM;
    }
    break;
  case REST_VOL_LIST: {
    int n = snprintf(req->target, sizeof(req->target), "%s/v1/volumes", p);
    const char* sep = "?";
    if (a->limit > 0) {
      n += snprintf(req->target + n, sizeof(req->target) - (size_t) n,
                    "?limit=%u", a->limit);
      sep = "&";
    }
    if (a->cursor != NULL) {
      snprintf(req->target + n, sizeof(req->target) - (size_t) n, "%scursor=%s",
               sep, a->cursor);
    }
    break;
  }
  case REST_VOL_GET:
  case REST_VOL_DELETE:
    req->method = kind == REST_VOL_GET ? "GET" : "DELETE";
    snprintf(req->target, sizeof(req->target), "%s/v1/volumes/%s", p, job_id);
    break;
  }
  if (*err != 0) {
    rest_req_free(req);
    return NULL;
  }
  return req;
}


int client_rest_async(cm_client_t* client,
                      rest_kind_t kind,
                      const rest_args_t* args,
                      cm_reply_cb cb,
                      void* user_data) {
  if (cb == NULL) {
    return CM_EBADARG;
  }
  int err;
  rest_req_t* req = rest_req_new(client, kind, args, &err);
  if (req == NULL) {
    return err;
  }
  req->loop = &client->loop;
  req->cb = cb;
  req->user_data = user_data;
  req->life = client_life_ref(client);
  err = client_post(client, start_on_loop, req);
  if (err != 0) {
    rest_req_free(req);
  }
  return err;
}


int client_rest_sync(cm_client_t* client,
                     rest_kind_t kind,
                     const rest_args_t* args,
                     cm_reply_t* out) {
  memset(out, 0, sizeof(*out));
  int err;
  rest_req_t* req = rest_req_new(client, kind, args, &err);
  if (req == NULL) {
    return err;
  }
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    rest_req_free(req);
    return -ENOMEM;
  }
  req->loop = &loop;
  req->is_sync = true;
  start_on_loop(req);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  int status = req->status;
  *out = req->reply;
  memset(&req->reply, 0, sizeof(req->reply));
  rest_req_free(req);
  return status;
}
