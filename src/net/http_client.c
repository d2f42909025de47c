/* http_client.c: a one-shot HTTP/1.1 client request. See http_client.h.
 * Loop thread only. */
#include "net/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A borrowed body goes out this much per write, so that the idle timer
 * and on_sent see progress on slow links. */
#define SLICE_BYTES ((size_t) 1 << 20)

static void finish(net_hreq_t* req, int status);


static net_hreq_t* req_of(http_parser* p) {
  return p->data;
}


/* Appends a header piece (a name, or after ':' its value) to the kept
 * headers. Returns 0 or -1 (over the limit, or no memory). */
static int keep_header(net_hreq_t* req, char sep, const char* at, size_t len) {
  size_t need = req->headers_len + len + 2;
  if (need > NET_HREQ_MAX_HEADER_BYTES) {
    req->result = UV_E2BIG;
    return -1;
  }
  if (need > req->headers_cap) {
    size_t cap = req->headers_cap == 0 ? 1024 : req->headers_cap;
    while (cap < need) {
      cap *= 2;
    }
    char* grown = realloc(req->headers, cap);
    if (grown == NULL) {
      req->result = UV_ENOMEM;
      return -1;
    }
    req->headers = grown;
    req->headers_cap = cap;
  }
  if (sep != '\0') {
    req->headers[req->headers_len++] = sep;
  }
  memcpy(req->headers + req->headers_len, at, len);
  req->headers_len += len;
  req->headers[req->headers_len] = '\0';
  return 0;
}


static int on_header_field(http_parser* p, const char* at, size_t len) {
  net_hreq_t* req = req_of(p);
  /* A field after a value starts a new line; pieces of one name join. */
  char sep = req->is_in_value ? '\n' : '\0';
  req->is_in_value = false;
  return keep_header(req, sep, at, len);
}


static int on_header_value(http_parser* p, const char* at, size_t len) {
  net_hreq_t* req = req_of(p);
  char sep = req->is_in_value ? '\0' : ':';
  req->is_in_value = true;
  return keep_header(req, sep, at, len);
}


static int on_headers_complete(http_parser* p) {
  net_hreq_t* req = req_of(p);
  req->http_status = p->status_code;
  req->is_sinking = req->sink != NULL && p->status_code / 100 == 2;
  if (!req->is_sinking && (p->flags & F_CONTENTLENGTH) &&
      p->content_length > req->max_body_bytes && !req->is_head) {
    req->result = UV_E2BIG;
    return -1;
  }
  return req->is_head ? 1 : 0; /* 1: no body follows */
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
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};


static void release_out(net_hreq_t* req) {
  free(req->out);
  req->out = NULL;
  free(req->send_copy);
  req->send_copy = NULL;
  req->send_src = NULL;
}


/* The request ends once both handles closed and the dial returned (a
 * lookup in the thread pool may outlive the handles). */
static void maybe_done(net_hreq_t* req) {
  if (req->open_handles == 0 && !req->is_dialing) {
    release_out(req);
    net_tls_free(&req->tls);
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
  uv_close((uv_handle_t*) &req->tls.tcp, on_closed);
}


static void on_timeout(uv_timer_t* timer) {
  net_hreq_t* req = timer->data;
  finish(req,
         net_tls_is_handshaking(&req->tls) ? NET_TLS_E_TIMEOUT : UV_ETIMEDOUT);
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
    int err = (int) nread;
    if (nread == UV_EOF) {
      err = req->write_error != 0 ? req->write_error : UV_EPROTO;
    }
    finish(req, req->is_complete ? 0 : err);
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


static void on_written(uv_write_t* wreq, int status);


/* Writes the next slice of the body (the first write also carries the
 * request line and headers). Returns 0 or a libuv error. */
static int write_next(net_hreq_t* req) {
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (req->out != NULL) {
    bufs[n++] = uv_buf_init(req->out, (unsigned) req->out_len);
  }
  size_t left = req->send_len - req->send_done;
  size_t slice = left < SLICE_BYTES ? left : SLICE_BYTES;
  if (slice > 0) {
    bufs[n++] =
        uv_buf_init((char*) req->send_src + req->send_done, (unsigned) slice);
  }
  if (n == 0) {
    return 0;
  }
  req->wreq.data = req;
  return net_tls_write(&req->tls, &req->wreq, bufs, n, on_written);
}


static void on_written(uv_write_t* wreq, int status) {
  net_hreq_t* req = wreq->data;
  if (req->is_closing) {
    return;
  }
  if (status != 0) {
    /* The server may have answered and closed (a 413 before the whole
     * body): read on, the answer decides; the error counts if none. */
    req->write_error = status;
    release_out(req);
    return;
  }
  size_t wrote_body = req->send_len - req->send_done < SLICE_BYTES
                          ? req->send_len - req->send_done
                          : SLICE_BYTES;
  free(req->out);
  req->out = NULL;
  req->send_done += wrote_body;
  arm_idle(req);
  if (req->on_sent != NULL && wrote_body > 0) {
    req->on_sent(req, req->send_done);
  }
  if (req->is_closing) {
    return; /* on_sent aborted the request */
  }
  if (req->send_done < req->send_len) {
    int err = write_next(req);
    if (err != 0) {
      finish(req, err);
    }
  } else {
    release_out(req);
  }
}


/* Connected, and for https the handshake done: the connect timeout
 * (which covers the handshake) gives way to the idle one. */
static void on_ready(net_tls_t* t, int status) {
  net_hreq_t* req = t->tcp.data;
  if (req->is_closing) {
    return;
  }
  if (status != 0) {
    finish(req, status);
    return;
  }
  arm_idle(req);
  req->is_sent = true;
  int err = write_next(req);
  if (err == 0) {
    err = net_tls_read_start(&req->tls, on_alloc, on_read);
  }
  if (err != 0) {
    finish(req, err);
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
  int err = net_tls_handshake(&req->tls, on_ready);
  if (err != 0) {
    finish(req, err);
  }
}


static bool has_body_method(const char* method) {
  return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
         strcmp(method, "PATCH") == 0;
}


static char* build_request(const net_hreq_opts_t* o, size_t* len) {
  const char* headers = o->headers != NULL ? o->headers : "";
  const char* ctype =
      o->content_type != NULL ? o->content_type : "application/json";
  size_t cap = strlen(o->method) + strlen(o->target) + strlen(o->host) +
               strlen(headers) + strlen(ctype) + 256;
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
                  "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype,
                  o->body_len);
  } else if (has_body_method(o->method)) {
    n += snprintf(out + n, cap - (size_t) n, "Content-Length: 0\r\n");
  }
  n += snprintf(out + n, cap - (size_t) n, "\r\n");
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
  req->on_sent = opts->on_sent;
  req->is_head = strcmp(opts->method, "HEAD") == 0;
  req->done = done;
  req->data = data;
  http_parser_init(&req->parser, HTTP_RESPONSE);
  req->parser.data = req;
  req->out = build_request(opts, &req->out_len);
  if (req->out == NULL) {
    return UV_ENOMEM;
  }
  if (opts->body != NULL && opts->body_len > 0) {
    if (opts->is_body_borrowed) {
      req->send_src = opts->body;
    } else {
      req->send_copy = malloc(opts->body_len);
      if (req->send_copy == NULL) {
        release_out(req);
        return UV_ENOMEM;
      }
      memcpy(req->send_copy, opts->body, opts->body_len);
      req->send_src = req->send_copy;
    }
    req->send_len = opts->body_len;
  }
  int err = net_tls_init(&req->tls, loop, opts->tls_ctx, opts->host);
  if (err != 0) {
    release_out(req);
    return err;
  }
  uv_timer_init(loop, &req->timer);
  req->tls.tcp.data = req;
  req->timer.data = req;
  req->open_handles = 2;
  err = net_dial_start(&req->dial, &req->tls.tcp, opts->host, opts->port,
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


bool net_hreq_header(const net_hreq_t* req,
                     const char* name,
                     char* out,
                     size_t cap) {
  size_t name_len = strlen(name);
  const char* line = req->headers;
  while (line != NULL && *line != '\0') {
    const char* end = strchr(line, '\n');
    size_t line_len = end != NULL ? (size_t) (end - line) : strlen(line);
    if (line_len > name_len && line[name_len] == ':' &&
        strncasecmp(line, name, name_len) == 0) {
      const char* v = line + name_len + 1;
      size_t vlen = line_len - name_len - 1;
      while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
      }
      while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
        vlen--;
      }
      if (cap > 0) {
        size_t n = vlen < cap - 1 ? vlen : cap - 1;
        memcpy(out, v, n);
        out[n] = '\0';
      }
      return true;
    }
    line = end != NULL ? end + 1 : NULL;
  }
  return false;
}


void net_hreq_free_body(net_hreq_t* req) {
  free(req->body);
  req->body = NULL;
  req->body_len = req->body_cap = 0;
  free(req->headers);
  req->headers = NULL;
  req->headers_len = req->headers_cap = 0;
}
