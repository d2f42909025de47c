/* upload_http.c: an upload's tus requests over net/http_client (one per
 * connection) and what their answers mean: OPTIONS (is concatenation
 * offered?), POST (creation, a part, the final concatenation, a dedup
 * probe), HEAD (what is durable), PATCH (a chunk, borrowed from the
 * stream's buffer; or empty, to wait for the completion), DELETE
 * (termination) and GET /v1/volumes/{id}. Each answer is classified once
 * (done, retry later, resend, start over, fail) and the driver
 * (up_advance, upload.c) decides what follows. Client thread. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/upload_int.h"
#include "core/base64.h"

typedef enum {
  RQ_OPTIONS,
  RQ_CREATE, /* the single upload, or a part (stream >= 0) */
  RQ_PROBE,  /* concatenation: a plain creation that only asks for dedup */
  RQ_HEAD,   /* stream, or the final upload (stream -1) */
  RQ_PATCH,
  RQ_FINAL,
  RQ_DELETE,
  RQ_VOLUME
} rq_kind_t;

struct up_req_s {
  net_hreq_t h;
  core_list_t node; /* in up->reqs */
  cm_upload_t* up;
  rq_kind_t kind;
  int stream; /* -1: not a stream's */
  bool is_empty;
  bool is_step;  /* a DELETE the next step waits for */
  bool is_probe; /* OPTIONS before hashing: a failure only means unknown */
  char target[600];
  char* headers; /* owned */
};

/* What an answer means for the upload. */
typedef enum {
  V_OK,
  V_ABORTED, /* we aborted it (pause, stop, cancel) */
  V_RETRY,   /* the network, 5xx, 408, 409 upload_busy, 423, 429 */
  V_RESYNC,  /* 409 offset_mismatch: HEAD tells the offset */
  V_RESEND,  /* 460: the chunk arrived damaged */
  V_GONE,    /* 404/410: the server no longer knows the upload */
  V_FATAL
} verdict_t;


static verdict_t classify(const up_req_t* r, int status, const cm_reply_t* rp) {
  if (status == UV_ECANCELED) {
    return V_ABORTED;
  }
  if (status != 0) {
    /* A refused certificate or a peer that speaks no TLS stays so. */
    return status == CM_ETLS || cm_is_tls_verify_error(status) ? V_FATAL
                                                               : V_RETRY;
  }
  int h = rp->http_status;
  if (h / 100 == 2) {
    return V_OK;
  }
  if (h == 460) {
    return V_RESEND;
  }
  if (h == 409) {
    if (strcmp(rp->error_code, "offset_mismatch") == 0) {
      return V_RESYNC;
    }
    return strcmp(rp->error_code, "upload_busy") == 0 ? V_RETRY : V_FATAL;
  }
  if ((h == 404 || h == 410) && r->kind != RQ_VOLUME && r->kind != RQ_OPTIONS &&
      r->kind != RQ_CREATE && r->kind != RQ_PROBE) {
    return V_GONE;
  }
  if (h == 408 || h == 423 || h == 429 || (h >= 500 && h != 507)) {
    return V_RETRY;
  }
  return V_FATAL;
}


/* The request target of an upload URL: a Location may be absolute
 * (http://host/path: its path is taken) and lacks the client's prefix. */
static void url_target(const cm_upload_t* up,
                       const char* url,
                       char* out,
                       size_t cap) {
  const char* path = url;
  if (strncasecmp(url, "http://", 7) == 0 ||
      strncasecmp(url, "https://", 8) == 0) {
    const char* p = strchr(strstr(url, "//") + 2, '/');
    path = p != NULL ? p : "/";
  }
  const char* prefix = up->client->prefix;
  size_t n = strlen(prefix);
  bool has_prefix = n > 0 && strncmp(path, prefix, n) == 0 && path[n] == '/';
  snprintf(out, cap, "%s%s", has_prefix ? "" : prefix, path);
}


/* The path of a Location header (absolute URLs lose their authority). */
static void location_path(const char* loc, char* out, size_t cap) {
  const char* path = loc;
  if (strncasecmp(loc, "http://", 7) == 0 ||
      strncasecmp(loc, "https://", 8) == 0) {
    const char* p = strchr(strstr(loc, "//") + 2, '/');
    path = p != NULL ? p : "/";
  }
  snprintf(out, cap, "%s", path);
}


/* A final's HEAD that failed carries no body: its reason is in
 * CryoMamba-Upload-Error ("<code> <message>"). */
static void upload_error(const net_hreq_t* h, cm_reply_t* rp) {
  char v[300];
  if (!net_hreq_header(h, "CryoMamba-Upload-Error", v, sizeof(v))) {
    return;
  }
  char* sp = strchr(v, ' ');
  if (sp != NULL) {
    *sp = '\0';
    snprintf(rp->error_message, sizeof(rp->error_message), "%s", sp + 1);
  }
  size_t n = strlen(v) < sizeof(rp->error_code) - 1
                 ? strlen(v)
                 : sizeof(rp->error_code) - 1;
  memcpy(rp->error_code, v, n);
  rp->error_code[n] = '\0';
}


static bool header_u64(const net_hreq_t* h, const char* name, uint64_t* out) {
  char v[32];
  if (!net_hreq_header(h, name, v, sizeof(v)) || v[0] < '0' || v[0] > '9') {
    return false;
  }
  char* end;
  unsigned long long n = strtoull(v, &end, 10);
  if (*end != '\0') {
    return false;
  }
  *out = n;
  return true;
}


static void take_volume_id(cm_upload_t* up, const net_hreq_t* h) {
  char id[64];
  if (net_hreq_header(h, "CryoMamba-Volume-Id", id, sizeof(id)) &&
      strlen(id) == 36) {
    memcpy(up->volume_id, id, 37);
  }
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


static void handle_ok(cm_upload_t* up, up_req_t* r) {
  const net_hreq_t* h = &r->h;
  up_stream_t* s = r->stream >= 0 ? &up->streams[r->stream] : NULL;
  uint64_t off = 0;
  switch (r->kind) {
  case RQ_OPTIONS: {
    char ext[512] = "";
    net_hreq_header(h, "Tus-Extension", ext, sizeof(ext));
    up->has_concat = strstr(ext, "concatenation") != NULL;
    up->is_caps_known = true;
    if (header_u64(h, "Tus-Max-Size", &off)) {
      up->max_size = off;
    }
    if (up->max_size > 0 && up->size > up->max_size) {
      /* The server's own creation would say 413: say it before hashing
       * or sending a byte. */
      cm_reply_t rp;
      memset(&rp, 0, sizeof(rp));
      rp.http_status = 413;
      snprintf(rp.error_code, sizeof(rp.error_code), "payload_too_large");
      snprintf(rp.error_message, sizeof(rp.error_message),
               "the file is %llu bytes; this server takes uploads of up to "
               "%llu bytes (Tus-Max-Size)",
               (unsigned long long) up->size,
               (unsigned long long) up->max_size);
      snprintf(rp.error_hint, sizeof(rp.error_hint),
               "its operator sets that limit (cryomambad --max-upload-bytes)");
      up_fail(up, CM_EHTTP, &rp, false);
      return;
    }
    break;
  }
  case RQ_PROBE:
  case RQ_CREATE: {
    char loc[UPLOAD_URL_MAX] = "";
    if (!net_hreq_header(h, "Location", loc, sizeof(loc)) || loc[0] == '\0' ||
        !header_u64(h, "Upload-Offset", &off)) {
      up_fail(up, CM_EPROTO, NULL, false);
      return;
    }
    take_volume_id(up, h);
    if (r->kind == RQ_PROBE) {
      up->is_dedup_probe_done = true;
      if (up->volume_id[0] != '\0') {
        up->is_dedup = true;
      } else {
        char url[UPLOAD_URL_MAX];
        location_path(loc, url, sizeof(url));
        /* A probe only: gone before the parts take their upload slots. */
        up_http_delete(up, url, true);
      }
      break;
    }
    location_path(loc, s->url, sizeof(s->url));
    s->offset = off < s->length ? off : s->length;
    s->is_known = true;
    up->is_dedup = up->volume_id[0] != '\0' && !up->is_concat;
    up->attempts_in_row = 0;
    up_record_layout(up);
    break;
  }
  case RQ_HEAD:
    /* A final has no Upload-Offset until it is a volume. */
    if (!header_u64(h, "Upload-Offset", &off) && s != NULL) {
      up_fail(up, CM_EPROTO, NULL, false);
      return;
    }
    take_volume_id(up, h);
    if (s != NULL) {
      s->offset = off < s->length ? off : s->length;
      s->is_known = true;
      if (s->has_chunk && s->chunk_off != s->offset) {
        s->has_chunk = false;
      }
    } else if (up->volume_id[0] == '\0') {
      /* The final upload is still being assembled and validated: ask
       * again later (not a failure, no attempt counted), every 2 s at
       * most. */
      uint32_t ms = 250u << (up->polls < 3 ? up->polls : 3);
      up->polls++;
      up_wait(up, ms);
    }
    break;
  case RQ_PATCH:
    if (!header_u64(h, "Upload-Offset", &off)) {
      up_fail(up, CM_EPROTO, NULL, false);
      return;
    }
    take_volume_id(up, h);
    if (r->is_empty) {
      s->offset = s->length;
      s->is_known = true;
      break;
    }
    if (off > s->offset) {
      up->attempts_in_row = 0;
    }
    if (off < s->chunk_off + s->chunk_len) {
      /* A 204 that kept less than the chunk (a checksummed PATCH is all
       * or nothing here): a failed attempt, retried from what HEAD says;
       * RETRYING also lets the phase go back from COMPLETING. */
      s->is_known = false;
      s->has_chunk = false;
      up_retry_later(up, CM_EPROTO, NULL);
      break;
    }
    s->offset = off < s->length ? off : s->length;
    s->is_known = true;
    s->has_chunk = false;
    break;
  case RQ_FINAL: {
    char loc[UPLOAD_URL_MAX] = "";
    if (!net_hreq_header(h, "Location", loc, sizeof(loc)) || loc[0] == '\0') {
      up_fail(up, CM_EPROTO, NULL, false);
      return;
    }
    location_path(loc, up->final_url, sizeof(up->final_url));
    take_volume_id(up, h);
    up->attempts_in_row = 0;
    up->is_record_dirty = true;
    break;
  }
  case RQ_DELETE:
    break;
  case RQ_VOLUME: {
    json_error_t jerr;
    json_t* root = h->body != NULL ? json_loadb((const char*) h->body,
                                                h->body_len, 0, &jerr)
                                   : NULL;
    up->has_volume = client_parse_volume(root, &up->volume);
    json_decref(root);
    if (!up->has_volume) {
      up_fail(up, CM_EPROTO, NULL, false);
    }
    break;
  }
  }
  up_info_sync(up);
}


static void on_done(net_hreq_t* h, int status) {
  up_req_t* r = h->data;
  cm_upload_t* up = r->up;
  core_list_remove(&r->node);
  assert(up->ops > 0);
  up->ops--;
  up_stream_t* s = r->stream >= 0 ? &up->streams[r->stream] : NULL;
  if (r->kind == RQ_DELETE && !r->is_step) {
    /* counted in ops only */
  } else if (s != NULL && !r->is_empty) {
    s->is_busy = false;
    s->in_flight = 0;
  } else {
    up->is_step_busy = false;
  }
  cm_reply_t reply;
  memset(&reply, 0, sizeof(reply));
  reply.http_status = (int) h->http_status;
  int code = status;
  if (status == 0 && h->http_status / 100 != 2) {
    json_error_t jerr;
    json_t* root = h->body != NULL ? json_loadb((const char*) h->body,
                                                h->body_len, 0, &jerr)
                                   : NULL;
    code = client_parse_error(&reply, root);
    json_decref(root);
    upload_error(h, &reply);
  }
  verdict_t v = classify(r, status, &reply);
  if (r->kind == RQ_OPTIONS && r->is_probe) {
    up->is_caps_probed = true;
    if (v != V_OK) {
      /* No answer, or a server without OPTIONS: what it takes is
       * unknown, its creation will tell. */
      client_log(up->client, CM_LOG_DEBUG, "upload %s: OPTIONS: %s", up->path,
                 status != 0 ? cm_strerror(status) : reply.error_message);
      v = V_ABORTED;
    }
  }
  if (r->kind == RQ_DELETE) {
    v = V_ABORTED; /* best effort: nothing depends on it */
  } else if (r->kind == RQ_HEAD && s == NULL && status == 0 &&
             h->http_status != 404 && h->http_status != 410 &&
             h->http_status / 100 != 2 &&
             net_hreq_header(h, "CryoMamba-Upload-Error", NULL, 0)) {
    /* The final failed (its reason is above) and its parts are free
     * again. Not a valid MRC file: for good. Anything else (a full disk,
     * a server error) may pass: one more final from the same parts. */
    v = V_FATAL;
    if (h->http_status != 422 && !up->is_final_retried) {
      up->is_final_retried = true;
      up->final_url[0] = '\0';
      up->is_record_dirty = true;
      v = V_ABORTED;
    }
  }
  switch (v) {
  case V_OK:
    handle_ok(up, r);
    break;
  case V_ABORTED:
    if (s != NULL && r->kind == RQ_PATCH) {
      s->is_known = false; /* the server may have kept part of it */
    }
    break;
  case V_RESEND:
    if (s != NULL) {
      s->has_chunk = false; /* read it again */
    }
    /* fall through */
  case V_RETRY:
  case V_RESYNC:
    if (s != NULL) {
      s->is_known = false;
    }
    up_retry_later(up, code, &reply);
    break;
  case V_GONE:
    if (r->kind == RQ_HEAD && s == NULL) {
      /* The final upload of a concatenation is gone: a failed attempt;
       * then see what of the parts is left (what is missing goes again:
       * RETRYING lets the phase go back from COMPLETING). */
      up->final_url[0] = '\0';
      for (unsigned i = 0; i < up->stream_count; i++) {
        up->streams[i].is_known = false;
      }
      up->is_record_dirty = true;
      up_retry_later(up, code, &reply);
      break;
    }
    /* Expired, terminated, or (an empty PATCH) dropped after a failed
     * validation whose answer was lost: create it anew. */
    up_start_over(up, code, &reply);
    break;
  case V_FATAL:
    /* 422: the server refused the file and removed the upload, so the
     * record names nothing; 413: the file is over what the server takes;
     * any other refusal (a token, the quota, a full disk) may be fixed and
     * the upload resumed. */
    up_fail(up, code, &reply,
            reply.http_status != 422 && reply.http_status != 413);
    break;
  }
  net_hreq_free_body(h);
  free(r->headers);
  free(r);
  up_advance(up);
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
  url_target(up, url, r->target, sizeof(r->target));
  net_hreq_opts_t o = {
      .host = c->host,
      .port = c->port,
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
      .tls_ctx = c->tls_ctx,
  };
  int err = net_hreq_start(&r->h, &c->loop, &o, on_done, r);
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
