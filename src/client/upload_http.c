/* upload_http.c: an upload's tus requests over net/http_client (one per
 * connection): OPTIONS (is concatenation offered?), POST (creation, a
 * part, the final concatenation, a dedup probe), HEAD (what is durable),
 * PATCH (a chunk, borrowed from the stream's buffer; or empty, to wait for
 * the completion), DELETE (termination) and GET /v1/volumes/{id}: their
 * headers, targets and timeouts, and a PATCH body's progress. What each
 * answer means is upload_http_reply.c's; the driver (up_advance,
 * upload.c) decides what follows. Client thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/upload_http_int.h"
#include "core/base64.h"


const char* up_http_url_path(const char* url) {
  if (strncasecmp(url, "http://", 7) == 0 ||
      strncasecmp(url, "https://", 8) == 0) {
    const char* p = strchr(strstr(url, "//") + 2, '/');
    return p != NULL ? p : "/";
  }
  return url;
}


/* The request target of an upload URL: a Location may be absolute
 * (http://host/path: its path is taken) and lacks the client's prefix. */
static void url_target(const cm_upload_t* up,
                       const char* url,
                       char* out,
                       size_t cap) {
  const char* path = up_http_url_path(url);
  const char* prefix = up->client->servers.v[up->srv].prefix;
  size_t n = strlen(prefix);
  bool has_prefix = n > 0 && strncmp(path, prefix, n) == 0 && path[n] == '/';
  snprintf(out, cap, "%s%s", has_prefix ? "" : prefix, path);
}


/* Upload-Metadata: filename and (when known) sha256, values base64. */
static int metadata_line(const cm_upload_t* up, char* out, size_t cap) {
  char name64[400], sha64[100];
  size_t nlen = strlen(up->filename);
  if (core_base64_encoded_len(nlen) >= sizeof(name64)) {
    return -ENAMETOOLONG;
  }
  core_base64_encode((const uint8_t*) up->filename, nlen, name64);
  int n = snprintf(out, cap, "Upload-Metadata: filename %s", name64);
  if (up->sha256[0] != '\0') {
    core_base64_encode((const uint8_t*) up->sha256, 64, sha64);
    n += snprintf(out + n, cap - (size_t) n, ",sha256 %s", sha64);
  }
  snprintf(out + n, cap - (size_t) n, "\r\n");
  return 0;
}


static void on_sent(net_hreq_t* h, uint64_t sent) {
  up_req_t* r = h->data;
  cm_upload_t* up = r->up;
  if (r->is_empty) {
    return;
  }
  up_stream_t* s = &up->streams[r->stream];
  up->bytes_sent += sent - s->in_flight;
  s->in_flight = sent;
  /* Once the last bytes are out the server writes, syncs and validates:
   * COMPLETING. */
  cm_upload_phase_t phase = up_streams_phase(up);
  if (phase != CM_UPLOAD_STARTING) {
    up_emit_progress(up, phase, false);
  }
}


/* Starts a request. `extra` are its own header lines (may be NULL). */
static int start(cm_upload_t* up,
                 rq_kind_t kind,
                 int stream,
                 bool is_empty,
                 const char* method,
                 const char* url,
                 const char* extra,
                 const uint8_t* body,
                 size_t body_len,
                 uint32_t idle_ms) {
  cm_client_t* c = up->client;
  up_req_t* r = calloc(1, sizeof(*r));
  const char* tus = kind == RQ_VOLUME ? "" : "Tus-Resumable: 1.0.0\r\n";
  if (r == NULL || asprintf(&r->headers, "%s%s%s", tus, c->auth_header,
                            extra != NULL ? extra : "") < 0) {
    free(r);
    return -ENOMEM;
  }
  r->up = up;
  r->kind = kind;
  r->stream = stream;
  r->is_empty = is_empty;
  r->is_step = kind == RQ_DELETE && up->is_next_delete_step;
  up->is_next_delete_step = false;
  r->is_probe = kind == RQ_OPTIONS && up->is_next_probe;
  up->is_next_probe = false;
  r->server = up->srv;
  const client_server_t* srv = &c->servers.v[up->srv];
  url_target(up, url, r->target, sizeof(r->target));
  net_hreq_opts_t o = {
      .host = srv->host,
      .port = srv->port,
      .method = method,
      .target = r->target,
      .headers = r->headers,
      .body = (const char*) body,
      .body_len = body_len,
      .is_body_borrowed = true,
      .content_type = "application/offset+octet-stream",
      .connect_timeout_ms = c->opts.connect_timeout_ms,
      .idle_timeout_ms = idle_ms,
      .max_body_bytes = 1 << 20,
      .on_sent = body != NULL ? on_sent : NULL,
      .tls_ctx = srv->is_tls ? c->tls_ctx : NULL,
  };
  int err = net_hreq_start(&r->h, &c->loop, &o, up_http_on_done, r);
  if (err != 0) {
    free(r->headers);
    free(r);
    return err;
  }
  core_list_push_back(&up->reqs, &r->node);
  up->ops++;
  if (kind == RQ_DELETE && !r->is_step) {
    /* counted in ops only */
  } else if (stream >= 0 && !is_empty) {
    up->streams[stream].is_busy = true;
  } else {
    up->is_step_busy = true;
  }
  return 0;
}


/* Inactivity allowed while the server validates the whole file (reads
 * and hashes it): the request timeout plus 20 MB/s. */
static uint32_t completion_ms(const cm_upload_t* up) {
  uint64_t ms = up->client->opts.request_timeout_ms + up->size / 20000;
  return ms > UINT32_MAX ? UINT32_MAX : (uint32_t) ms;
}


int up_http_options(cm_upload_t* up, bool is_probe) {
  up->is_next_probe = is_probe; /* for start(), like the DELETE's flag */
  return start(up, RQ_OPTIONS, -1, false, "OPTIONS", "/v1/uploads", NULL, NULL,
               0, up->client->opts.request_timeout_ms);
}


int up_http_create(cm_upload_t* up, int stream, bool is_probe) {
  char extra[1024];
  uint64_t len = is_probe ? up->size : up->streams[stream].length;
  int n = snprintf(extra, sizeof(extra), "Upload-Length: %llu\r\n",
                   (unsigned long long) len);
  if (up->is_concat && !is_probe) {
    snprintf(extra + n, sizeof(extra) - (size_t) n,
             "Upload-Concat: partial\r\n");
  } else if (metadata_line(up, extra + n, sizeof(extra) - (size_t) n) != 0) {
    return -ENAMETOOLONG;
  }
  return start(up, is_probe ? RQ_PROBE : RQ_CREATE, is_probe ? -1 : stream,
               false, "POST", "/v1/uploads", extra, NULL, 0,
               /* a dedup answer is at once; a creation commits a record */
               up->client->opts.request_timeout_ms);
}


int up_http_head(cm_upload_t* up, int stream) {
  const char* url = stream >= 0 ? up->streams[stream].url : up->final_url;
  return start(up, RQ_HEAD, stream, false, "HEAD", url, NULL, NULL, 0,
               up->client->opts.request_timeout_ms);
}


int up_http_patch(cm_upload_t* up, int stream, bool is_empty) {
  up_stream_t* s = &up->streams[stream];
  char extra[256];
  uint64_t off = is_empty ? s->length : s->chunk_off;
  snprintf(extra, sizeof(extra), "Upload-Offset: %llu\r\n%s",
           (unsigned long long) off, is_empty ? "" : s->checksum);
  bool is_last =
      !up->is_concat && off + (is_empty ? 0 : s->chunk_len) == s->length;
  uint32_t idle =
      is_last ? completion_ms(up) : up->client->opts.request_timeout_ms;
  /* An empty PATCH still needs its Content-Type: a zero-length body. */
  static const uint8_t none[1] = {0};
  return start(up, RQ_PATCH, stream, is_empty, "PATCH", s->url, extra,
               is_empty ? none : s->buf, is_empty ? 0 : s->chunk_len, idle);
}


int up_http_final(cm_upload_t* up) {
  size_t cap = 256 + up->stream_count * (UPLOAD_URL_MAX + 1);
  char* extra = malloc(cap);
  if (extra == NULL) {
    return -ENOMEM;
  }
  int n = snprintf(extra, cap, "Upload-Concat: final;");
  for (unsigned i = 0; i < up->stream_count; i++) {
    n += snprintf(extra + n, cap - (size_t) n, "%s%s", i > 0 ? " " : "",
                  up->streams[i].url);
  }
  n += snprintf(extra + n, cap - (size_t) n, "\r\n");
  char meta[700];
  int err = metadata_line(up, meta, sizeof(meta));
  if (err == 0) {
    char* all = NULL;
    if (asprintf(&all, "%s%s", extra, meta) < 0) {
      all = NULL;
    }
    err = all != NULL ? start(up, RQ_FINAL, -1, false, "POST", "/v1/uploads",
                              all, NULL, 0, completion_ms(up))
                      : -ENOMEM;
    free(all);
  }
  free(extra);
  return err;
}


int up_http_delete(cm_upload_t* up, const char* url, bool is_step) {
  /* The flag must be known before start() counts the request. */
  up->is_next_delete_step = is_step;
  return start(up, RQ_DELETE, -1, false, "DELETE", url, NULL, NULL, 0,
               up->client->opts.request_timeout_ms);
}


int up_http_get_volume(cm_upload_t* up) {
  char url[80];
  snprintf(url, sizeof(url), "/v1/volumes/%s", up->volume_id);
  return start(up, RQ_VOLUME, -1, false, "GET", url, NULL, NULL, 0,
               up->client->opts.request_timeout_ms);
}


void up_http_abort_all(cm_upload_t* up) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &up->reqs) {
    up_req_t* r = CORE_CONTAINER_OF(it, up_req_t, node);
    if (r->kind != RQ_DELETE) {
      net_hreq_abort(&r->h);
    }
  }
}
