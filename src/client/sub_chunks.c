/* sub_chunks.c: the chunked delta previews of docs/protocol.md 11 on the
 * client side: the query of each connection (scale, and since/epoch of the
 * last complete delta so a reconnect only gets what changed), `connected`'s
 * chunk table, each delta and its chunk messages validated (core/chunk.c's
 * header, the grid of the job's volume, the zstd payload's exact size, the
 * base) and applied into a dense mask per level, then on_chunks. A
 * violation is reported and the connection dropped; the next one asks for
 * no since, so it starts from a keyframe. The view (cm_sub_set_view) and
 * cm_sub_chunk_mask. Client thread, except the two public calls. Not here:
 * the other messages (sub_parse.c), connections (sub.c). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "client/sub_int.h"

int sub_chunks_init(sub_chunks_t* k) {
  memset(k, 0, sizeof(*k));
  k->level = -1;
  k->dctx = ZSTD_createDCtx();
  k->scratch = malloc(CORE_CHUNK_VOXELS);
  if (k->dctx == NULL || k->scratch == NULL) {
    ZSTD_freeDCtx(k->dctx);
    free(k->scratch);
    return -ENOMEM;
  }
  pthread_mutex_init(&k->mask_mu, NULL);
  return 0;
}


void sub_chunks_free(sub_chunks_t* k) {
  if (k->dctx == NULL) {
    return; /* never set up */
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    free(k->mask[l]);
  }
  free(k->changed);
  free(k->scratch);
  ZSTD_freeDCtx(k->dctx);
  pthread_mutex_destroy(&k->mask_mu);
}


/* Appends `s` percent-encoded (RFC 3986 unreserved characters kept). */
static void put_escaped(char* out, size_t len, const char* s) {
  size_t n = strlen(out);
  for (; *s != '\0' && n + 4 < len; s++) {
    unsigned char c = (unsigned char) *s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out[n++] = (char) c;
    } else {
      n += (size_t) snprintf(out + n, len - n, "%%%02X", c);
    }
  }
  out[n] = '\0';
}


void sub_chunks_begin(cm_sub_t* sub, char* query, size_t len) {
  sub_chunks_t* k = &sub->ck;
  k->conn_epoch[0] = '\0';
  k->had_delta = false;
  k->is_broken = false;
  k->pending = 0;
  k->conn_seq = 0;
  k->changed_len = 0;
  k->sent_since = k->since > 0 && k->epoch[0] != '\0';
  k->expect_base = k->sent_since ? k->since : 0;
  int n = snprintf(query, len, "?encoding=chunks");
  if (sub->chunk_scale > 0) {
    n += snprintf(query + n, len - (size_t) n, "&scale=%u", sub->chunk_scale);
  }
  if (k->sent_since) {
    snprintf(query + n, len - (size_t) n,
             "&since=%llu&epoch=", (unsigned long long) k->since);
    put_escaped(query, len, k->epoch);
  }
}


/* A protocol violation: reported, the since forgotten, the connection
 * dropped (sub.c reconnects, and the next one gets a keyframe). */
static void violation(cm_sub_t* sub, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void violation(cm_sub_t* sub, const char* fmt, ...) {
  sub_chunks_t* k = &sub->ck;
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  sub_reject(sub, "chunks: %s; reconnecting for a keyframe", what);
  k->since = 0;
  k->epoch[0] = '\0';
  k->is_broken = true;
  k->pending = 0;
  k->changed_len = 0;
  if (sub->wsc != NULL) {
    net_wsc_close(sub->wsc, 1002);
  }
}


static bool get_epoch(const json_t* obj, char out[SUB_EPOCH_MAX]) {
  const char* e = json_string_value(json_object_get(obj, "epoch"));
  size_t n = e != NULL ? strlen(e) : 0;
  if (n == 0 || n >= SUB_EPOCH_MAX) {
    return false;
  }
  memcpy(out, e, n + 1);
  return true;
}


int sub_chunks_on_connected(cm_sub_t* sub, const json_t* data) {
  const json_t* c = json_object_get(data, "chunks");
  const json_t* edge = json_object_get(c, "edge");
  const json_t* levels = json_object_get(c, "levels");
  if (!json_is_integer(edge) || json_integer_value(edge) != CORE_CHUNK_EDGE ||
      !json_is_integer(levels) ||
      json_integer_value(levels) != CORE_CHUNK_LEVELS ||
      !get_epoch(c, sub->ck.conn_epoch)) {
    return -1;
  }
  sub_chunks_t* k = &sub->ck;
  if (k->sent_since && strcmp(k->conn_epoch, k->epoch) != 0) {
    /* Another chunk table (another server after a failover, or this one
     * rebuilt): our since means nothing to it, so the first delta must
     * be a keyframe; one building on our masks would mix two tables. */
    k->sent_since = false;
    k->expect_base = 0;
  }
  return 0;
}


void sub_chunks_send_view(cm_sub_t* sub) {
  sub_chunks_t* k = &sub->ck;
  if (!k->has_view || sub->wsc == NULL || !sub->is_ready) {
    return;
  }
  json_t* v = json_pack("{s:s}", "type", "view");
  static const char* axes[] = {"z", "y", "x"};
  for (int a = 0; v != NULL && a < 3; a++) {
    json_object_set_new(
        v, axes[a], k->view[a] >= 0 ? json_integer(k->view[a]) : json_null());
  }
  if (v != NULL && k->zoom > 0) {
    json_object_set_new(v, "zoom", json_real(k->zoom));
  }
  char* text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
  int err = text != NULL ? net_wsc_send_text(sub->wsc, text, strlen(text))
                         : UV_ENOMEM;
  if (err != 0) {
    client_log(sub->client, CM_LOG_WARN, "job %s: view not sent: %s",
               sub->job_id, cm_strerror(err));
  }
  free(text);
  json_decref(v);
}


/* The level of a JSON scale, or -1. */
static int level_of(const json_t* v) {
  if (!json_is_integer(v) || json_integer_value(v) < 1 ||
      json_integer_value(v) > CORE_SCALE_MAX) {
    return -1;
  }
  return core_chunk_level_of_scale((uint32_t) json_integer_value(v));
}


/* Level l's mask, allocated (zero) the first time. Returns 0, -EFBIG (over
 * the sub's max_mask_bytes with the masks it holds) or -ENOMEM. */
static int ensure_mask(cm_sub_t* sub, int l) {
  sub_chunks_t* k = &sub->ck;
  if (k->mask[l] != NULL) {
    return 0;
  }
  core_shape_t s = core_shape_downsample(&sub->volume, 1u << l);
  uint64_t held = core_shape_voxels(&s);
  for (unsigned i = 0; i < CORE_CHUNK_LEVELS; i++) {
    held += k->mask[i] != NULL ? core_shape_voxels(&k->mask_shape[i]) : 0;
  }
  if (sub->max_mask_bytes != 0 && held > sub->max_mask_bytes) {
    return -EFBIG;
  }
  uint8_t* m = calloc(1, (size_t) core_shape_voxels(&s));
  if (m == NULL) {
    return -ENOMEM;
  }
  pthread_mutex_lock(&k->mask_mu);
  k->mask[l] = m;
  k->mask_shape[l] = s;
  pthread_mutex_unlock(&k->mask_mu);
  return 0;
}


static void out_of_memory(cm_sub_t* sub, int l, int err) {
  core_shape_t s = core_shape_downsample(&sub->volume, 1u << l);
  char msg[200];
  if (err == -EFBIG) {
    snprintf(msg, sizeof(msg),
             "the chunk mask of scale %u (%llu bytes) would take the masks "
             "over max_mask_bytes (%llu)",
             1u << l, (unsigned long long) core_shape_voxels(&s),
             (unsigned long long) sub->max_mask_bytes);
    sub_emit_error(sub, CM_SUB_ERR_SKIPPED, 0, 0, "mask_too_large", msg,
                   "ask a larger scale, or a zoom below 1 for the planes",
                   false);
    sub_finish(sub, -EFBIG);
    return;
  }
  snprintf(msg, sizeof(msg),
           "no memory for the chunk mask of scale %u (%llu bytes)", 1u << l,
           (unsigned long long) core_shape_voxels(&s));
  sub_emit_error(sub, CM_SUB_ERR_SKIPPED, 0, 0, "out_of_memory", msg,
                 "a larger scale needs scale^3 times less memory", false);
  sub_finish(sub, -ENOMEM);
}


/* The delta's chunks are all in: on_chunks, and a complete one becomes
 * what a reconnect asks from. */
static void delta_done(cm_sub_t* sub) {
  sub_chunks_t* k = &sub->ck;
  if (k->is_complete) {
    k->since = k->seq;
    memcpy(k->epoch, k->conn_epoch, sizeof(k->epoch));
    k->expect_base = k->seq;
  }
  cm_chunks_t ev = {
      .seq = k->seq,
      .timestamp_us = k->ts_us,
      .epoch = k->conn_epoch,
      .is_keyframe = k->is_keyframe,
      .is_complete = k->is_complete,
      .scale = 1u << k->d_level,
      .plane_scale = k->d_plane >= 0 ? 1u << k->d_plane : 0,
      .chunk_count = k->changed_len,
      .chunks = k->changed,
  };
  memcpy(ev.shape, k->mask_shape[k->d_level].d, sizeof(ev.shape));
  sub_emit_chunks(sub, &ev);
  k->changed_len = 0;
}


void sub_chunks_on_delta(cm_sub_t* sub, const core_server_msg_t* m) {
  sub_chunks_t* k = &sub->ck;
  if (sub->encoding != CM_ENCODING_CHUNKS) {
    sub_reject(sub, "delta (seq %llu) on a subscription without chunks",
               (unsigned long long) m->seq);
    return;
  }
  if (k->is_broken) {
    return;
  }
  if (k->pending > 0) {
    violation(sub, "delta seq %llu while %u chunks of seq %llu were due",
              (unsigned long long) m->seq, k->pending,
              (unsigned long long) k->seq);
    return;
  }
  const json_t* d = m->data;
  char epoch[SUB_EPOCH_MAX];
  const json_t* base = json_object_get(d, "base");
  const json_t* key = json_object_get(d, "keyframe");
  const json_t* complete = json_object_get(d, "complete");
  const json_t* chunks = json_object_get(d, "chunks");
  const json_t* plane = json_object_get(d, "plane_scale");
  int level = level_of(json_object_get(d, "scale"));
  int plane_level = json_is_null(plane) || plane == NULL ? -1 : level_of(plane);
  core_shape_t shape;
  if (!get_epoch(d, epoch) || !json_is_integer(base) ||
      json_integer_value(base) < 0 || !json_is_boolean(key) ||
      !json_is_boolean(complete) || !json_is_integer(chunks) ||
      json_integer_value(chunks) < 0 || level < 0 ||
      !(plane_level >= 0 || plane == NULL || json_is_null(plane)) ||
      plane_level > level || !json_is_array(json_object_get(d, "shape"))) {
    violation(sub, "delta seq %llu with missing or invalid fields",
              (unsigned long long) m->seq);
    return;
  }
  core_chunk_grid_t g = core_chunk_grid(&sub->volume, (unsigned) level);
  const json_t* js = json_object_get(d, "shape");
  for (size_t i = 0; i < 3; i++) {
    const json_t* v = json_array_get(js, i);
    shape.d[i] = json_is_integer(v) && json_integer_value(v) >= 0 &&
                         json_integer_value(v) <= CORE_SHAPE_MAX_DIM
                     ? (uint32_t) json_integer_value(v)
                     : 0;
  }
  uint64_t b = (uint64_t) json_integer_value(base);
  bool is_key = json_is_true(key);
  uint64_t max_chunks =
      g.count +
      (plane_level >= 0
           ? core_chunk_grid(&sub->volume, (unsigned) plane_level).count
           : 0);
  if (json_array_size(js) != 3 || memcmp(&shape, &g.shape, sizeof(shape))) {
    violation(sub, "delta seq %llu: shape is not ceil(volume / scale %u)",
              (unsigned long long) m->seq, 1u << level);
  } else if (strcmp(epoch, k->conn_epoch) != 0) {
    violation(sub, "delta seq %llu of epoch \"%s\", not the connection's",
              (unsigned long long) m->seq, epoch);
  } else if ((uint64_t) json_integer_value(chunks) > max_chunks) {
    violation(sub, "delta seq %llu announces %lld chunks, more than its grids",
              (unsigned long long) m->seq,
              (long long) json_integer_value(chunks));
  } else if (is_key ? (b != 0 && b != k->expect_base) : b != k->expect_base) {
    violation(sub, "delta seq %llu has base %llu, the last complete is %llu",
              (unsigned long long) m->seq, (unsigned long long) b,
              (unsigned long long) k->expect_base);
  } else if (!is_key && !k->had_delta && !k->sent_since) {
    violation(sub, "the first delta (seq %llu) is no keyframe",
              (unsigned long long) m->seq);
  } else if (!is_key && level != k->level) {
    violation(sub, "delta seq %llu changes the level without a keyframe",
              (unsigned long long) m->seq);
  } else if (m->seq < b || m->seq < k->conn_seq) {
    violation(sub, "delta seq %llu goes back (base %llu, last %llu)",
              (unsigned long long) m->seq, (unsigned long long) b,
              (unsigned long long) k->conn_seq);
  } else {
    int err = ensure_mask(sub, level);
    if (err != 0) {
      out_of_memory(sub, level, err);
      return;
    }
    err = plane_level >= 0 ? ensure_mask(sub, plane_level) : 0;
    if (err != 0) {
      out_of_memory(sub, plane_level, err);
      return;
    }
    if (is_key) {
      /* Every level: chunks not sent are zero. */
      pthread_mutex_lock(&k->mask_mu);
      for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
        if (k->mask[l] != NULL) {
          memset(k->mask[l], 0, (size_t) core_shape_voxels(&k->mask_shape[l]));
        }
      }
      pthread_mutex_unlock(&k->mask_mu);
      k->expect_base = 0;
    }
    k->had_delta = true;
    k->conn_seq = m->seq;
    k->level = level;
    k->seq = m->seq;
    k->ts_us = m->ts_us;
    k->is_keyframe = is_key;
    k->is_complete = json_is_true(complete);
    k->d_level = level;
    k->d_plane = plane_level;
    k->pending = (uint32_t) json_integer_value(chunks);
    k->changed_len = 0;
    if (k->pending == 0) {
      delta_done(sub);
    }
  }
}


/* Applies one validated chunk; returns false after a violation. */
static bool apply_chunk(cm_sub_t* sub,
                        const core_chunk_head_t* h,
                        const uint8_t* payload) {
  sub_chunks_t* k = &sub->ck;
  int l = h->level;
  if (l != k->d_level && l != k->d_plane) {
    char plane[32] = "";
    if (k->d_plane >= 0) {
      snprintf(plane, sizeof(plane), " and %d (the view's)", k->d_plane);
    }
    violation(sub, "a chunk of level %d in a delta of level %d%s", l,
              k->d_level, plane);
    return false;
  }
  core_chunk_grid_t g = core_chunk_grid(&sub->volume, (unsigned) l);
  if (h->c[0] >= g.n[0] || h->c[1] >= g.n[1] || h->c[2] >= g.n[2]) {
    violation(sub, "chunk (%u,%u,%u) of level %d is outside its %ux%ux%u grid",
              h->c[0], h->c[1], h->c[2], l, g.n[0], g.n[1], g.n[2]);
    return false;
  }
  if (h->version > k->seq) {
    violation(sub, "chunk version %u is above the delta's seq %llu", h->version,
              (unsigned long long) k->seq);
    return false;
  }
  core_box_t box = core_chunk_box(&g, h->c);
  size_t n = (size_t) core_box_voxels(&box);
  if ((h->flags & CORE_CHUNK_FLAG_ZERO) != 0) {
    memset(k->scratch, 0, n);
  } else {
    size_t got =
        ZSTD_decompressDCtx(k->dctx, k->scratch, n, payload, h->payload_len);
    if (ZSTD_isError(got) || got != n) {
      violation(sub, "chunk (%u,%u,%u) of level %d: %s (%zu voxels due)",
                h->c[0], h->c[1], h->c[2], l,
                ZSTD_isError(got) ? ZSTD_getErrorName(got)
                                  : "decompressed to the wrong size",
                n);
      return false;
    }
  }
  if (k->changed_len == k->changed_cap) {
    size_t cap = k->changed_cap > 0 ? 2 * k->changed_cap : 64;
    cm_chunk_ref_t* c = realloc(k->changed, cap * sizeof(*c));
    if (c == NULL) {
      violation(sub, "no memory for the list of changed chunks");
      return false;
    }
    k->changed = c;
    k->changed_cap = cap;
  }
  cm_chunk_ref_t* r = &k->changed[k->changed_len++];
  r->scale = 1u << l;
  memcpy(r->c, h->c, sizeof(r->c));
  memcpy(r->lo, box.lo, sizeof(r->lo));
  memcpy(r->hi, box.hi, sizeof(r->hi));
  pthread_mutex_lock(&k->mask_mu);
  core_chunk_place(k->mask[l], &k->mask_shape[l], &box, k->scratch);
  pthread_mutex_unlock(&k->mask_mu);
  return true;
}


void sub_chunks_on_binary(cm_sub_t* sub, const uint8_t* data, size_t len) {
  sub_chunks_t* k = &sub->ck;
  if (k->is_broken) {
    return;
  }
  if (k->pending == 0) {
    violation(sub, "a binary message of %zu bytes outside a delta", len);
    return;
  }
  core_chunk_head_t h;
  if (core_chunk_head_parse(data, len, &h) != 0) {
    violation(sub, "a chunk message of %zu bytes with a bad header", len);
    return;
  }
  if (!apply_chunk(sub, &h, data + CORE_CHUNK_HEAD_LEN)) {
    return;
  }
  if (--k->pending == 0) {
    delta_done(sub);
  }
}


typedef struct {
  cm_sub_t* sub;
  int64_t view[3];
  double zoom;
} view_cmd_t;


static void do_view(void* arg) {
  view_cmd_t* c = arg;
  cm_sub_t* sub = c->sub;
  sub_chunks_t* k = &sub->ck;
  bool had = k->has_view;
  memcpy(k->view, c->view, sizeof(k->view));
  k->zoom = c->zoom;
  k->has_view = c->view[0] >= 0 || c->view[1] >= 0 || c->view[2] >= 0;
  if (!sub->is_closing && (k->has_view || had)) {
    bool keep = k->has_view;
    k->has_view = true; /* an empty view is sent once, to remove it */
    sub_chunks_send_view(sub);
    k->has_view = keep;
  }
  free(c);
  sub_unref(sub); /* the command's reference */
}


int cm_sub_set_view(cm_sub_t* sub,
                    int64_t z,
                    int64_t y,
                    int64_t x,
                    double zoom) {
  if (sub == NULL || sub->encoding != CM_ENCODING_CHUNKS || z < -1 || y < -1 ||
      x < -1 || !isfinite(zoom) || zoom < 0) {
    return CM_EBADARG;
  }
  if (atomic_load(&sub->is_finished) || atomic_load(&sub->is_user_closed)) {
    return 0;
  }
  view_cmd_t* c = malloc(sizeof(*c));
  if (c == NULL) {
    return -ENOMEM;
  }
  *c = (view_cmd_t){sub, {z, y, x}, zoom};
  atomic_fetch_add(&sub->refs, 1);
  int err = client_post(sub->client, do_view, c);
  if (err != 0) {
    free(c);
    sub_unref(sub);
  }
  return err;
}


const uint8_t* cm_sub_chunk_mask(const cm_sub_t* sub,
                                 uint32_t scale,
                                 uint32_t shape[3]) {
  int l = core_chunk_level_of_scale(scale);
  if (sub == NULL || sub->encoding != CM_ENCODING_CHUNKS || l < 0 ||
      sub->ck.mask[l] == NULL) {
    return NULL;
  }
  memcpy(shape, sub->ck.mask_shape[l].d, 3 * sizeof(uint32_t));
  return sub->ck.mask[l];
}
