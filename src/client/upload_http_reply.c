/* upload_http_reply.c: what the answer to an upload's tus request means.
 * Each is classified once (done, retry later, resend the chunk, HEAD
 * first, start over, fail) and, when it succeeded, applied to the upload
 * (offsets, URLs, the volume's id and JSON); the driver (up_advance,
 * upload.c) decides what follows. The requests themselves are
 * upload_http.c's. Client thread. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/upload_http_int.h"

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


/* The path of a Location header (absolute URLs lose their authority). */
static void location_path(const char* loc, char* out, size_t cap) {
  snprintf(out, cap, "%s", up_http_url_path(loc));
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


void up_http_on_done(net_hreq_t* h, int status) {
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
    if (r->server == up->srv) {
      up->srv_fails = 0;
    }
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
    if (status != 0) {
      up_fail_over(up, r->server, status);
    } else if (r->server == up->srv) {
      up->srv_fails = 0; /* it answers */
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
