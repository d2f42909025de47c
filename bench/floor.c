/* floor.c: the fan-out cost floor the benchmark compares every server to.
 * The least a preview streamer can do: per tick (absolute deadlines), render
 * ONE random mask, base64 it into ONE pre-framed text frame with the
 * protocol's envelope, and write that shared buffer to every subscriber
 * (uv_try_write, then uv_write for the rest; refcounted, never copied),
 * latest-only per connection. HTTP is the bare minimum: POST /v1/jobs (the
 * body's shape, preview_hz, preview_scale, duration_s) and the WebSocket
 * upgrade on /ws/jobs/<id>; client frames are read and ignored.
 * Usage: floor [--port N] (0 picks one; prints "listening on
 * http://127.0.0.1:PORT"). One thread, the libuv loop. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "core/base64.h"
#include "core/list.h"
#include "core/mask.h"
#include "core/msg.h"
#include "core/timefmt.h"
#include "core/uuid.h"
#include "net/frame.h"
#include "net/ws_handshake.h"

#define FL_REQ_MAX 16384

typedef struct {
  char id[CORE_UUID_STR_LEN + 1];
  core_mask_spec_t spec;
  uint32_t scale;
  uint64_t period_ns;
  uint64_t start_ns;
  uint64_t end_ns;
  uint64_t tick;
  uint64_t seq;
  uint8_t* mask; /* preview-sized scratch */
  core_shape_t preview_shape;
  uv_timer_t timer;
  core_list_t subs;
  core_list_t node; /* in jobs */
} fl_job_t;

typedef struct {
  uv_tcp_t tcp;
  uv_write_t wreq;
  core_list_t node; /* in its job's subs */
  fl_job_t* job;
  char* req; /* HTTP request so far; NULL once upgraded */
  size_t req_len;
  net_frame_t* cur;  /* being written (a reference), or NULL */
  net_frame_t* next; /* latest-only: the newest frame waiting */
  bool is_ws;
  bool close_after_write;
  bool is_closing;
} fl_conn_t;

static uv_loop_t* loop;
static core_list_t jobs;
static char read_buf[64 * 1024];


static int64_t unix_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}


static void on_conn_closed(uv_handle_t* h) {
  fl_conn_t* c = h->data;
  net_frame_unref(c->cur);
  net_frame_unref(c->next);
  free(c->req);
  free(c);
}


static void conn_close(fl_conn_t* c) {
  if (c->is_closing) {
    return;
  }
  c->is_closing = true;
  core_list_remove(&c->node);
  uv_close((uv_handle_t*) &c->tcp, on_conn_closed);
}


static void start_write(fl_conn_t* c, net_frame_t* f);


static void on_write(uv_write_t* req, int status) {
  fl_conn_t* c = req->data;
  net_frame_unref(c->cur);
  c->cur = NULL;
  if (status != 0 || c->is_closing) {
    conn_close(c);
    return;
  }
  if (c->close_after_write) {
    conn_close(c);
    return;
  }
  if (c->next != NULL) {
    net_frame_t* f = c->next;
    c->next = NULL;
    start_write(c, f);
    net_frame_unref(f);
  }
}


/* Writes `f` (borrowed): as much as the socket takes now, the rest from the
 * shared buffer with a reference held until the write completes. */
static void start_write(fl_conn_t* c, net_frame_t* f) {
  uv_buf_t buf = uv_buf_init((char*) f->data, (unsigned) f->len);
  int n = uv_try_write((uv_stream_t*) &c->tcp, &buf, 1);
  if (n == (int) f->len) {
    if (c->close_after_write) {
      conn_close(c);
    }
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    conn_close(c);
    return;
  }
  size_t done = n > 0 ? (size_t) n : 0;
  buf = uv_buf_init((char*) f->data + done, (unsigned) (f->len - done));
  c->cur = net_frame_ref(f);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t*) &c->tcp, &buf, 1, on_write) != 0) {
    conn_close(c);
  }
}


/* Sends `f` (borrowed); while a write is in flight only the newest waits. */
static void conn_send(fl_conn_t* c, net_frame_t* f) {
  if (c->is_closing) {
    return;
  }
  if (c->cur != NULL) {
    net_frame_unref(c->next);
    c->next = net_frame_ref(f);
    return;
  }
  start_write(c, f);
}


static void send_text(fl_conn_t* c, const char* text, size_t len) {
  net_frame_t* f = net_frame_from_bytes(text, len);
  if (f == NULL) {
    conn_close(c);
    return;
  }
  conn_send(c, f);
  net_frame_unref(f);
}


static net_frame_t* build_preview(fl_job_t* job) {
  core_mask_render(&job->spec, 0.5, job->scale, job->tick, job->mask);
  size_t n = (size_t) core_shape_voxels(&job->preview_shape);
  core_preview_layout_t layout;
  if (core_msg_preview_layout(job->id, ++job->seq, unix_us(),
                              &job->preview_shape, job->scale, n,
                              &layout) != 0) {
    return NULL;
  }
  net_frame_t* f = net_frame_new(CORE_MSG_PREFIX_MAX + NET_WS_MAX_HEADER_LEN,
                                 layout.b64_len + layout.suffix_len);
  if (f == NULL) {
    return NULL;
  }
  core_base64_encode(job->mask, n, (char*) f->data);
  memcpy(f->data + layout.b64_len, layout.suffix, layout.suffix_len);
  memcpy(net_frame_prepend(f, layout.prefix_len), layout.prefix,
         layout.prefix_len);
  net_frame_seal_ws(f, NET_WS_OP_TEXT);
  return f;
}


static void arm_next(fl_job_t* job);


static void on_tick(uv_timer_t* t) {
  fl_job_t* job = t->data;
  uint64_t now = uv_hrtime();
  if (now >= job->end_ns) {
    return;
  }
  /* A late wake-up skips the ticks it missed instead of bunching them. */
  job->tick = (now - job->start_ns) / job->period_ns;
  net_frame_t* f = build_preview(job);
  if (f != NULL) {
    core_list_t* it;
    core_list_t* tmp;
    CORE_LIST_FOREACH_SAFE(it, tmp, &job->subs) {
      conn_send(CORE_CONTAINER_OF(it, fl_conn_t, node), f);
    }
    net_frame_unref(f);
  }
  arm_next(job);
}


static void arm_next(fl_job_t* job) {
  uint64_t next = job->start_ns + (job->tick + 1) * job->period_ns;
  uint64_t now = uv_hrtime();
  uv_update_time(loop);
  uv_timer_start(&job->timer, on_tick,
                 next > now ? (next - now + 999999) / 1000000 : 0, 0);
}


static fl_job_t* job_find(const char* id) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &jobs) {
    fl_job_t* job = CORE_CONTAINER_OF(it, fl_job_t, node);
    if (strcmp(job->id, id) == 0) {
      return job;
    }
  }
  return NULL;
}


static double num_at(json_t* root, const char* path, double dflt) {
  json_t* v = json_object_get(json_object_get(root, "params"), path);
  v = v != NULL ? v : json_object_get(root, path);
  return json_is_number(v) ? json_number_value(v) : dflt;
}


static fl_job_t* job_new(const char* body, size_t len) {
  fl_job_t* job = calloc(1, sizeof(*job));
  json_t* root = json_loadb(body, len, 0, NULL);
  if (job == NULL) {
    json_decref(root);
    return NULL;
  }
  job->spec.shape = (core_shape_t){{64, 64, 64}};
  json_t* shape = json_object_get(json_object_get(root, "volume"), "shape");
  for (size_t i = 0; i < 3 && json_array_size(shape) == 3; i++) {
    job->spec.shape.d[i] =
        (uint32_t) json_integer_value(json_array_get(shape, i));
  }
  double hz = num_at(root, "preview_hz", 1.0);
  job->scale = (uint32_t) num_at(root, "preview_scale", 1);
  double duration_s = num_at(root, "duration_s", 30);
  json_decref(root);
  if (!core_shape_is_valid(&job->spec.shape) || hz <= 0 || job->scale < 1) {
    free(job);
    return NULL;
  }
  job->preview_shape = core_shape_downsample(&job->spec.shape, job->scale);
  job->mask = malloc((size_t) core_shape_voxels(&job->preview_shape));
  uint8_t rnd[16];
  uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL);
  core_uuid4_format(rnd, job->id);
  job->period_ns = (uint64_t) (1e9 / hz);
  job->start_ns = uv_hrtime();
  job->end_ns = job->start_ns + (uint64_t) (duration_s * 1e9);
  core_list_init(&job->subs);
  core_list_push_back(&jobs, &job->node);
  uv_timer_init(loop, &job->timer);
  job->timer.data = job;
  arm_next(job);
  return job;
}


static void respond(fl_conn_t* c, const char* status, const char* body) {
  char text[1024];
  int n = snprintf(text, sizeof(text),
                   "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   status, strlen(body), body);
  c->close_after_write = true;
  send_text(c, text, (size_t) n);
}


static void upgrade(fl_conn_t* c, const char* id) {
  const char* key = strcasestr(c->req, "\r\nSec-WebSocket-Key:");
  fl_job_t* job = job_find(id);
  if (key == NULL || job == NULL) {
    respond(c, "404 Not Found", "{\"error\":{\"code\":\"job_not_found\"}}");
    return;
  }
  key += strlen("\r\nSec-WebSocket-Key:");
  key += strspn(key, " ");
  char k[NET_WS_KEY_LEN + 1] = {0};
  memcpy(k, key, strcspn(key, " \r") < NET_WS_KEY_LEN ? 0 : NET_WS_KEY_LEN);
  char accept[NET_WS_ACCEPT_LEN + 1];
  net_ws_accept_for_key(k, accept);
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(unix_us(), ts);
  char msg[512];
  int mlen = snprintf(msg, sizeof(msg),
                      "{\"type\":\"connected\",\"job_id\":\"%s\",\"seq\":0,"
                      "\"timestamp\":\"%s\",\"data\":{\"state\":\"running\"}}",
                      job->id, ts);
  char text[1024];
  int n = snprintf(text, sizeof(text),
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  n += (int) net_ws_header_encode((uint8_t*) text + n, NET_WS_OP_TEXT,
                                  (uint64_t) mlen, NULL);
  memcpy(text + n, msg, (size_t) mlen);
  free(c->req);
  c->req = NULL;
  c->is_ws = true;
  c->job = job;
  core_list_push_back(&job->subs, &c->node);
  send_text(c, text, (size_t) (n + mlen));
}


/* Handles a complete request in c->req; returns false while incomplete. */
static bool handle_request(fl_conn_t* c) {
  char* end = strstr(c->req, "\r\n\r\n");
  if (end == NULL) {
    return false;
  }
  size_t head_len = (size_t) (end + 4 - c->req);
  const char* cl = strcasestr(c->req, "\r\nContent-Length:");
  size_t body_len = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
  if (c->req_len < head_len + body_len) {
    return false;
  }
  if (strncmp(c->req, "POST /v1/jobs ", 14) == 0) {
    fl_job_t* job = job_new(c->req + head_len, body_len);
    if (job == NULL) {
      respond(c, "400 Bad Request", "{\"error\":{\"code\":\"invalid_field\"}}");
      return true;
    }
    char body[128];
    snprintf(body, sizeof(body), "{\"job_id\":\"%s\",\"status\":\"created\"}",
             job->id);
    respond(c, "201 Created", body);
  } else if (strncmp(c->req, "GET /ws/jobs/", 13) == 0) {
    char id[CORE_UUID_STR_LEN + 1] = {0};
    size_t len = strcspn(c->req + 13, " ?");
    memcpy(id, c->req + 13, len < sizeof(id) - 1 ? len : sizeof(id) - 1);
    upgrade(c, id);
  } else {
    respond(c, "404 Not Found", "{\"error\":{\"code\":\"route_not_found\"}}");
  }
  return true;
}


static void on_alloc(uv_handle_t* h, size_t hint, uv_buf_t* buf) {
  (void) h;
  (void) hint;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}


static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  fl_conn_t* c = s->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (c->is_ws || c->close_after_write) {
    return; /* client frames and trailing bytes are ignored */
  }
  if (c->req_len + (size_t) nread >= FL_REQ_MAX) {
    conn_close(c);
    return;
  }
  memcpy(c->req + c->req_len, buf->base, (size_t) nread);
  c->req_len += (size_t) nread;
  c->req[c->req_len] = '\0';
  handle_request(c);
}


static void on_connection(uv_stream_t* server, int status) {
  if (status != 0) {
    return;
  }
  fl_conn_t* c = calloc(1, sizeof(*c));
  if (c == NULL || (c->req = malloc(FL_REQ_MAX)) == NULL) {
    free(c);
    return;
  }
  core_list_init(&c->node);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t*) &c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t*) &c->tcp, on_alloc, on_read);
}


int main(int argc, char** argv) {
  int port = 8000;
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--port") == 0) {
      port = atoi(argv[++i]);
    }
  }
  signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is EPIPE, not death */
  loop = uv_default_loop();
  core_list_init(&jobs);
  uv_tcp_t server;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_init(loop, &server);
  int err = uv_tcp_bind(&server, (const struct sockaddr*) &addr, 0);
  if (err == 0) {
    err = uv_listen((uv_stream_t*) &server, 4096, on_connection);
  }
  if (err != 0) {
    fprintf(stderr, "floor: listen: %s\n", uv_strerror(err));
    return 1;
  }
  struct sockaddr_in bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&server, (struct sockaddr*) &bound, &len);
  printf("listening on http://127.0.0.1:%u\n", ntohs(bound.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
