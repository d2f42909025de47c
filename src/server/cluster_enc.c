/* cluster_enc.c: a gateway's raw and zstd previews from the published
 * base64 message. See cluster_enc.h. The gate and its callbacks run on
 * the loop; enc_work runs on the pool and touches only its work_t. */
#include "server/cluster_enc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/base64.h"
#include "core/preview_bin.h"
#include "core/timefmt.h"
#include "server/cluster.h"
#include "server/jobs.h"
#include "server/render.h"

#define HELD_MAX 256 /* messages waiting behind an encode, as cluster_sub.c */
#define ZSTD_LEVEL 1 /* as render.c: previews favour speed */

typedef struct {
  char* text;
  size_t len;
} held_t;

struct srv_cluster_enc_s {
  srv_job_t* job; /* a reference */
  srv_cluster_enc_apply_fn apply;
  void* arg;
  bool is_busy;     /* an encode is in flight */
  bool is_draining; /* held messages are being applied */
  bool is_gone;     /* the mirror went: free when idle */
  bool is_filling;  /* the encode in flight is a fill (quiet, then wake) */
  bool fill_wanted; /* a late joiner asked while a fill was in flight */
  held_t held[HELD_MAX];
  unsigned held_n;
};

typedef struct {
  uv_work_t req;
  srv_cluster_enc_t* e;
  net_frame_t* b64; /* a reference */
  bool want_zstd;
  bool is_fill; /* a late joiner's: quiet, then wake the waiters */
  char job_id[64];
  net_frame_t* out[CORE_ENC_COUNT]; /* raw, zstd: sealed */
  int err;
  uint64_t work_us; /* the pool thread's time for the decode and encodes */
} work_t;


srv_cluster_enc_t* srv_cluster_enc_new(srv_job_t* job,
                                       srv_cluster_enc_apply_fn apply,
                                       void* arg) {
  srv_cluster_enc_t* e = calloc(1, sizeof(*e));
  if (e == NULL) {
    return NULL;
  }
  e->job = srv_job_ref(job);
  e->apply = apply;
  e->arg = arg;
  return e;
}


static void held_clear(srv_cluster_enc_t* e) {
  for (unsigned i = 0; i < e->held_n; i++) {
    free(e->held[i].text);
  }
  e->held_n = 0;
}


static void enc_destroy(srv_cluster_enc_t* e) {
  held_clear(e);
  srv_job_unref(e->job);
  free(e);
}


void srv_cluster_enc_free(srv_cluster_enc_t* e) {
  if (e == NULL) {
    return;
  }
  e->is_gone = true;
  if (!e->is_busy && !e->is_draining) {
    enc_destroy(e);
  }
}


static bool is_preview(const char* text, size_t len) {
  static const char head[] = "{\"type\":\"preview\"";
  return len >= sizeof(head) - 1 && memcmp(text, head, sizeof(head) - 1) == 0;
}


bool srv_cluster_enc_hold(srv_cluster_enc_t* e, const char* text, size_t len) {
  if (!e->is_busy) {
    return false;
  }
  if (is_preview(text, len)) {
    /* Latest-only: a newer preview replaces a held one. */
    for (unsigned i = 0; i < e->held_n; i++) {
      if (is_preview(e->held[i].text, e->held[i].len)) {
        free(e->held[i].text);
        memmove(&e->held[i], &e->held[i + 1],
                sizeof(held_t) * (e->held_n - i - 1));
        e->held_n--;
        break;
      }
    }
  }
  if (e->held_n == HELD_MAX) {
    /* The oldest goes: the terminal message is always the newest. */
    free(e->held[0].text);
    memmove(&e->held[0], &e->held[1], sizeof(held_t) * (HELD_MAX - 1));
    e->held_n--;
  }
  held_t* h = &e->held[e->held_n];
  h->text = malloc(len);
  if (h->text != NULL) {
    memcpy(h->text, text, len);
    h->len = len;
    e->held_n++;
  }
  return true;
}


/* ---- the pool side ---- */

/* The unsigned numbers after `key` (e.g. "\"shape\":[") in the first
 * `n` bytes of `s`; 0 or -EINVAL. */
static int numbers_after(const char* s,
                         size_t n,
                         const char* key,
                         uint64_t* out,
                         int count) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl < n; i++) {
    if (memcmp(s + i, key, kl) != 0) {
      continue;
    }
    const char* p = s + i + kl;
    for (int k = 0; k < count; k++) {
      char* end = NULL;
      out[k] = strtoull(p, &end, 10);
      if (end == p || end >= s + n) {
        return -EINVAL;
      }
      p = end + 1; /* the ',' or ']' */
    }
    return 0;
  }
  return -EINVAL;
}


/* Where `key`'s string value starts in the first `n` bytes of `s`. */
static const char* string_after(const char* s, size_t n, const char* key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl < n; i++) {
    if (memcmp(s + i, key, kl) == 0) {
      return s + i + kl;
    }
  }
  return NULL;
}


static net_frame_t* seal_bin(const work_t* w,
                             net_frame_t* f,
                             uint64_t seq,
                             int64_t ts_us,
                             const core_shape_t* shape,
                             uint32_t scale,
                             core_encoding_t enc) {
  uint8_t head[CORE_PREVIEW_BIN_HEAD_MAX];
  int hl = core_preview_bin_head(w->job_id, seq, ts_us, shape, scale, enc,
                                 f->len, head, sizeof(head));
  if (hl < 0) {
    return NULL;
  }
  memcpy(net_frame_prepend(f, (size_t) hl), head, (size_t) hl);
  net_frame_seal_ws(f, NET_WS_OP_BINARY);
  return f;
}


/* The envelope is core_msg_preview_layout's: everything up to the payload
 * is in its first few hundred bytes, the payload ends 3 bytes before the
 * end ("}}). */
static int decode(work_t* w) {
  size_t len = 0;
  const char* text = (const char*) net_ws_frame_payload(w->b64, &len);
  size_t head_n = len < 512 ? len : 512;
  uint64_t seq = 0, scale = 0, d[3];
  const char* ts = string_after(text, head_n, "\"timestamp\":\"");
  const char* payload = string_after(text, head_n, "\"payload\":\"");
  if (numbers_after(text, head_n, "\"seq\":", &seq, 1) != 0 ||
      numbers_after(text, head_n, "\"scale\":[", &scale, 1) != 0 ||
      numbers_after(text, head_n, "\"shape\":[", d, 3) != 0 || ts == NULL ||
      payload == NULL || len < 3 || memcmp(text + len - 3, "\"}}", 3) != 0 ||
      (size_t) (ts - text) + CORE_TIMESTAMP_LEN > head_n || scale == 0 ||
      scale > UINT32_MAX || d[0] > UINT32_MAX || d[1] > UINT32_MAX ||
      d[2] > UINT32_MAX) {
    return -EINVAL;
  }
  char ts_s[CORE_TIMESTAMP_LEN + 1];
  memcpy(ts_s, ts, CORE_TIMESTAMP_LEN);
  ts_s[CORE_TIMESTAMP_LEN] = '\0';
  int64_t ts_us = 0;
  if (core_timestamp_parse(ts_s, &ts_us) != 0) {
    return -EINVAL;
  }
  core_shape_t shape = {{(uint32_t) d[0], (uint32_t) d[1], (uint32_t) d[2]}};
  size_t b64_len = (size_t) (text + len - 3 - payload);
  uint64_t n = core_shape_voxels(&shape);
  if (n == 0 || n > SIZE_MAX / 2 ||
      core_base64_encoded_len((size_t) n) != b64_len) {
    return -EINVAL;
  }
  net_frame_t* raw = srv_frame_for(NULL, core_base64_decoded_max(b64_len));
  if (raw == NULL) {
    return -ENOMEM;
  }
  size_t got = 0;
  if (core_base64_decode(payload, b64_len, raw->data, &got) != 0 || got != n) {
    net_frame_unref(raw);
    return -EINVAL;
  }
  raw->len = got;
  net_frame_t* z = NULL;
  if (w->want_zstd) {
    size_t cap = core_zstd_bound(got);
    z = srv_frame_for(NULL, cap);
    long zl = z != NULL
                  ? core_zstd_compress(raw->data, got, z->data, cap, ZSTD_LEVEL)
                  : -ENOMEM;
    if (zl < 0) {
      net_frame_unref(z);
      net_frame_unref(raw);
      return z == NULL ? -ENOMEM : -EIO;
    }
    z->len = (size_t) zl;
  }
  uint32_t sc = (uint32_t) scale;
  w->out[CORE_ENC_RAW] = seal_bin(w, raw, seq, ts_us, &shape, sc, CORE_ENC_RAW);
  if (z != NULL) {
    w->out[CORE_ENC_ZSTD] =
        seal_bin(w, z, seq, ts_us, &shape, sc, CORE_ENC_ZSTD);
  }
  if (w->out[CORE_ENC_RAW] == NULL ||
      (z != NULL && w->out[CORE_ENC_ZSTD] == NULL)) {
    return -EINVAL;
  }
  return 0;
}


static void enc_work(uv_work_t* req) {
  work_t* w = req->data;
  uint64_t t0 = uv_hrtime();
  w->err = decode(w);
  w->work_us = (uv_hrtime() - t0) / 1000;
}


/* ---- back on the loop ---- */

static int fill_start(srv_cluster_enc_t* e);


/* A subscriber's encoding has no latest frame while a base64 one exists. */
static bool needs_fill(const srv_cluster_enc_t* e) {
  const srv_topic_t* t = &e->job->topic;
  return t->latest[CORE_ENC_BASE64] != NULL &&
         ((t->sinks_by_enc[CORE_ENC_RAW] > 0 &&
           t->latest[CORE_ENC_RAW] == NULL) ||
          (t->sinks_by_enc[CORE_ENC_ZSTD] > 0 &&
           t->latest[CORE_ENC_ZSTD] == NULL));
}

static void drain(srv_cluster_enc_t* e) {
  e->is_draining = true;
  while (e->held_n > 0 && !e->is_busy && !e->is_gone) {
    held_t h = e->held[0];
    memmove(&e->held[0], &e->held[1], sizeof(held_t) * (e->held_n - 1));
    e->held_n--;
    e->apply(e->arg, h.text, h.len);
    free(h.text);
  }
  e->is_draining = false;
  if (e->is_gone && !e->is_busy) {
    enc_destroy(e);
  }
}


static void enc_done(uv_work_t* req, int status) {
  work_t* w = req->data;
  srv_cluster_enc_t* e = w->e;
  e->is_busy = false;
  e->is_filling = false;
  srv_cluster_t* c = e->job->ctx->cluster;
  c->encodes++;
  c->encode_us += w->work_us;
  c->encode_errors += status != 0 || w->err != 0 ? 1 : 0;
  if (status != 0 || w->err != 0) {
    for (int i = 0; i < CORE_ENC_COUNT; i++) {
      net_frame_unref(w->out[i]);
      w->out[i] = NULL;
    }
  }
  if (e->is_gone) {
    for (int i = 0; i < CORE_ENC_COUNT; i++) {
      net_frame_unref(w->out[i]);
    }
    net_frame_unref(w->b64);
  } else if (w->is_fill) {
    /* The base64 frame stays (its subscribers have it): only the binary
     * frames are added, quietly; the waiters then get theirs. */
    srv_topic_t* t = &e->job->topic;
    for (int i = CORE_ENC_RAW; i < CORE_ENC_COUNT; i++) {
      if (w->out[i] != NULL) {
        if (t->latest[i] != NULL) {
          net_frame_mark_held(t->latest[i], t->held);
          net_frame_unref(t->latest[i]);
        }
        t->latest[i] = w->out[i];
      }
    }
    net_frame_unref(w->b64);
    bool wake = true;
    if (e->fill_wanted) {
      /* Asked meanwhile for an encoding this one did not make (zstd). */
      e->fill_wanted = false;
      wake = !needs_fill(e) || fill_start(e) != 0;
    }
    if (wake) {
      srv_topic_wake(t);
    }
  } else {
    w->out[CORE_ENC_BASE64] = w->b64;
    srv_topic_set_preview(&e->job->topic, w->out, false);
  }
  free(w);
  drain(e);
}


static int start(srv_cluster_enc_t* e, net_frame_t* b64, bool is_fill) {
  work_t* w = calloc(1, sizeof(*w));
  if (w == NULL) {
    return -ENOMEM;
  }
  const srv_topic_t* t = &e->job->topic;
  w->e = e;
  w->b64 = b64;
  w->is_fill = is_fill;
  w->want_zstd = t->sinks_by_enc[CORE_ENC_ZSTD] > 0;
  snprintf(w->job_id, sizeof(w->job_id), "%s", e->job->id);
  w->req.data = w;
  if (uv_queue_work(e->job->ctx->loop, &w->req, enc_work, enc_done) != 0) {
    free(w);
    return -ENOMEM;
  }
  e->is_busy = true;
  e->is_filling = is_fill;
  return 0;
}


void srv_cluster_enc_preview(srv_cluster_enc_t* e, net_frame_t* b64) {
  const srv_topic_t* t = &e->job->topic;
  if (t->sinks_by_enc[CORE_ENC_RAW] + t->sinks_by_enc[CORE_ENC_ZSTD] > 0 &&
      start(e, b64, false) == 0) {
    return;
  }
  /* Nobody wants binary frames (or no memory for the work): base64 only;
   * a later binary subscriber has the latest one filled. */
  net_frame_t* frames[CORE_ENC_COUNT] = {0};
  frames[CORE_ENC_BASE64] = b64;
  srv_topic_set_preview(&e->job->topic, frames, false);
}


static int fill_start(srv_cluster_enc_t* e) {
  net_frame_t* b64 = e->job->topic.latest[CORE_ENC_BASE64];
  if (b64 == NULL) {
    return -ENOENT;
  }
  net_frame_ref(b64);
  int rc = start(e, b64, true);
  if (rc != 0) {
    net_frame_unref(b64);
  }
  return rc;
}


int srv_cluster_enc_fill(srv_cluster_enc_t* e) {
  if (e->is_busy && e->is_filling) {
    /* Its waiters are woken when it lands, this one with them (and a
     * fill of an encoding it lacks follows first). */
    e->fill_wanted = true;
    return 0;
  }
  if (e->is_busy) {
    /* A new preview is being encoded with every encoding wanted now: it
     * is delivered to this subscriber like to the others. */
    return -EBUSY;
  }
  return fill_start(e);
}
