/* http_client.c: a one-shot HTTP/1.1 client request. See http_client.h.
 * Loop thread only. */
#include "net/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void finish(net_hreq_t* req, int status);


static net_hreq_t* req_of(http_parser* p) {
  return p->data;
}


static int on_headers_complete(http_parser* p) {
  net_hreq_t* req = req_of(p);
  req->http_status = p->status_code;
  req->is_sinking = req->sink != NULL && p->status_code / 100 == 2;
  if (!req->is_sinking && (p->flags & F_CONTENTLENGTH) &&
      p->content_length > req->max_body_bytes) {
    req->result = UV_E2BIG;
    return -1;
  }
  return 0;
}


static int on_body(http_parser* p, const char* at, size_t len) {
  net_hreq_t* req = req_of(p);
  if (req->is_sinking) {
    int err = req->sink(req, (const uint8_t*) at, len);
    if (err != 0) {
      req->result = err;
      return -1;
    }
    req->sunk_bytes += len;
    return 0;
  }
  if (req->body_len + len > req->max_body_bytes) {
    req->result = UV_E2BIG;
    return -1;
  }
  if (req->body_len + len + 1 > req->body_cap) {
    size_t cap = req->body_cap == 0 ? 4096 : req->body_cap;
    while (cap < req->body_len + len + 1) {
      cap *= 2;
    }
    uint8_t* grown = realloc(req->body, cap);
    if (grown == NULL) {
      req->result = UV_ENOMEM;
      return -1;
    }
    req->body = grown;
    req->body_cap = cap;
  }
  memcpy(req->body + req->body_len, at, len);
  req->body_len += len;
  req->body[req->body_len] = '\0';
  return 0;
}


static int on_message_complete(http_parser* p) {
  net_hreq_t* req = req_of(p);
  req->is_complete = true;
  http_parser_pause(p, 1);
  return 0;
}


static const http_parser_settings settings = {
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};


/* The request ends once both handles closed and the dial returned (a
 * lookup in the thread pool may outlive the handles). */
static void maybe_done(net_hreq_t* req) {
  if (req->open_handles == 0 && !req->is_dialing) {
    free(req->out);
    req->out = NULL;
    req->done(req, req->result);
  }
}


static void on_closed(uv_handle_t* handle) {
  net_hreq_t* req = handle->data;
  req->open_handles--;
  maybe_done(req);
}


static void finish(net_hreq_t* req, int status) {
  if (req->is_closing) {
    return;
  }
  req->is_closing = true;
  req->result = status;
  net_dial_cancel(&req->dial);
  uv_close((uv_handle_t*) &req->timer, on_closed);
  uv_close((uv_handle_t*) &req->tcp, on_closed);
}


static void on_timeout(uv_timer_t* timer) {
  finish(timer->data, UV_ETIMEDOUT);
}


static void arm_idle(net_hreq_t* req) {
  if (req->idle_timeout_ms > 0) {
    uv_timer_start(&req->timer, on_timeout, req->idle_timeout_ms, 0);
  }
}


static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  (void) handle;
  buf->base = malloc(suggested);
  buf->len = buf->base != NULL ? suggested : 0;
}


static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  net_hreq_t* req = stream->data;
  if (req->is_closing) {
    free(buf->base);
    return;
  }
  if (nread < 0) {
    free(buf->base);
    if (nread == UV_EOF) {
      /* A body delimited by the end of the connection ends here. */
      http_parser_execute(&req->parser, &settings, NULL, 0);
    }
    finish(req, req->is_complete  ? 0
                : nread == UV_EOF ? UV_EPROTO
                                  : (int) nread);
    return;
  }
  arm_idle(req);
  if (nread > 0) {
    http_parser_execute(&req->parser, &settings, buf->base, (size_t) nread);
    enum http_errno herr = HTTP_PARSER_ERRNO(&req->parser);
    if (req->is_complete) {
      finish(req, 0);
    } else if (herr != HPE_OK) {
      finish(req, req->result != 0 ? req->result : UV_EPROTO);
    }
  }
  free(buf->base);
}


static void on_written(uv_write_t* wreq, int status) {
  net_hreq_t* req = wreq->data;
  free(req->out);
  req->out = NULL;
  if (status != 0 && !req->is_closing) {
    finish(req, status);
  }
}


static void on_connected(net_dial_t* d, int status) {
  net_hreq_t* req = d->data;
  req->is_dialing = false;
  if (req->is_closing) {
    maybe_done(req);
    return;
  }
  if (status != 0) {
    finish(req, status);
    return;
  }
  arm_idle(req);
  uv_buf_t buf = uv_buf_init(req->out, (unsigned) req->out_len);
  req->wreq.data = req;
  int err = uv_write(&req->wreq, (uv_stream_t*) &req->tcp, &buf, 1, on_written);
  if (err == 0) {
    err = uv_read_start((uv_stream_t*) &req->tcp, on_alloc, on_read);
  }
  if (err != 0) {
    finish(req, err);
  }
}


static char* build_request(const net_hreq_opts_t* o, size_t* len) {
  const char* headers = o->headers != NULL ? o->headers : "";
  size_t cap = strlen(o->method) + strlen(o->target) + strlen(o->host) +
               strlen(headers) + o->body_len + 256;
  char* out = malloc(cap);
  if (out == NULL) {
    return NULL;
  }
  int n = snprintf(out, cap,
                   "%s %s HTTP/1.1\r\nHost: %s:%u\r\n"
                   "User-Agent: libcryomamba/" CM_VERSION
                   "\r\n"
                   "Accept: application/json\r\nConnection: close\r\n%s",
                   o->method, o->target, o->host, o->port, headers);
  if (o->body != NULL) {
    n += snprintf(out + n, cap - (size_t) n,
                  "Content-Type: application/json\r\n"
                  "Content-Length: %zu\r\n",
                  o->body_len);
  } else if (strcmp(o->method, "POST") == 0) {
    n += snprintf(out + n, cap - (size_t) n, "Content-Length: 0\r\n");
  }
  n += snprintf(out + n, cap - (size_t) n, "\r\n");
  if (o->body != NULL) {
    memcpy(out + n, o->body, o->body_len);
    n += (int) o->body_len;
  }
  *len = (size_t) n;
  return out;
}


int net_hreq_start(net_hreq_t* req,
                   uv_loop_t* loop,
                   const net_hreq_opts_t* opts,
                   net_hreq_done_cb done,
                   void* data) {
  memset(req, 0, sizeof(*req));
  req->connect_timeout_ms = opts->connect_timeout_ms;
  req->idle_timeout_ms = opts->idle_timeout_ms;
  req->max_body_bytes = opts->max_body_bytes;
  req->sink = opts->sink;
  req->done = done;
  req->data = data;
  http_parser_init(&req->parser, HTTP_RESPONSE);
  req->parser.data = req;
  req->out = build_request(opts, &req->out_len);
  if (req->out == NULL) {
    return UV_ENOMEM;
  }
  int err = uv_tcp_init(loop, &req->tcp);
  if (err != 0) {
    free(req->out);
    return err;
  }
  uv_timer_init(loop, &req->timer);
  req->tcp.data = req;
  req->timer.data = req;
  req->open_handles = 2;
  err = net_dial_start(&req->dial, &req->tcp, opts->host, opts->port,
                       on_connected, req);
  req->is_dialing = err == 0;
  if (err != 0) {
    /* Report asynchronously like every other failure. */
    finish(req, err);
    return 0;
  }
  if (req->connect_timeout_ms > 0) {
    uv_timer_start(&req->timer, on_timeout, req->connect_timeout_ms, 0);
  }
  return 0;
}


void net_hreq_abort(net_hreq_t* req) {
  finish(req, UV_ECANCELED);
}


void net_hreq_free_body(net_hreq_t* req) {
  free(req->body);
  req->body = NULL;
  req->body_len = req->body_cap = 0;
}
