/* ws_chunks.c: a chunks subscriber's rounds. See ws_chunks.h. */
#include "server/ws_chunks.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "server/chunk_jobs.h"

_Static_assert(1 + SRV_CHUNK_ROUND_CHUNKS <= NET_WQ_PUSH_ALL_MAX,
               "a round goes out in one push");
_Static_assert(SRV_CHUNK_SHARED_MAX == SRV_CHUNK_ROUND_CHUNKS,
               "a shared delta holds a round");

typedef struct {
  net_frame_t* frames[SRV_CHUNK_ROUND_CHUNKS];
  uint64_t index[SRV_CHUNK_ROUND_CHUNKS];
  uint32_t version[SRV_CHUNK_ROUND_CHUNKS];
  unsigned count;
  uint64_t bytes;
  bool is_full;
  bool keyframe;
} round_t;


static void on_changed(srv_chunk_watch_t* w) {
  srv_chunk_sub_pump(CORE_CONTAINER_OF(w, srv_chunk_sub_t, watch));
}


static void on_replaced(srv_chunk_watch_t* w) {
  srv_chunk_sub_t* s = CORE_CONTAINER_OF(w, srv_chunk_sub_t, watch);
  srv_chunk_sub_stop(s); /* off the table before its chunks go */
  if (s->on_replaced != NULL) {
    s->on_replaced(s);
  }
}


static int ensure_sent(srv_chunk_sub_t* s, unsigned level) {
  if (s->sent[level] == NULL) {
    s->sent[level] = calloc(s->t->grid[level].count, sizeof(uint32_t));
    if (s->sent[level] == NULL) {
      return -ENOMEM;
    }
  }
  return 0;
}


int srv_chunk_sub_start(srv_chunk_sub_t* s,
                        srv_conn_t* conn,
                        srv_job_t* job,
                        unsigned level,
                        const char* since_epoch,
                        uint32_t since) {
  memset(s, 0, sizeof(*s));
  s->conn = conn;
  s->job = job;
  s->level = level;
  s->watch.changed = on_changed;
  s->watch.replaced = on_replaced;
  core_list_init(&s->watch.link);
  if (since_epoch != NULL) {
    s->want_since = true;
    s->since = since;
    snprintf(s->since_epoch, sizeof(s->since_epoch), "%s", since_epoch);
  }
  s->t = srv_chunks_for_job(job);
  if (s->t == NULL || ensure_sent(s, level) != 0) {
    s->is_stopped = true;
    return -ENOMEM;
  }
  core_list_push_back(&s->t->watches, &s->watch.link);
  return 0;
}


void srv_chunk_sub_stop(srv_chunk_sub_t* s) {
  if (core_list_is_linked(&s->watch.link)) {
    core_list_remove(&s->watch.link);
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    free(s->sent[l]);
    s->sent[l] = NULL;
  }
  net_frame_unref(s->terminal);
  s->terminal = NULL;
  s->is_stopped = true;
}


/* The first round's bookkeeping: what a reconnecting client already holds,
 * or nothing (a keyframe). */
static bool begin(srv_chunk_sub_t* s) {
  const srv_chunks_t* t = s->t;
  bool resume = s->want_since && strcmp(s->since_epoch, t->epoch) == 0 &&
                s->since <= t->seq;
  const srv_chunk_t* ch = t->chunks[s->level];
  uint32_t* sent = s->sent[s->level];
  for (uint64_t i = 0; i < t->grid[s->level].count; i++) {
    sent[i] = resume && ch[i].version <= s->since ? ch[i].version : 0;
  }
  s->base = resume ? s->since : 0;
  s->is_clean = resume;
  return !resume;
}


/* Adds chunk i of `level` to the round if the connection lacks its
 * version. A keyframe skips zero chunks (the client cleared everything). */
static void consider(srv_chunk_sub_t* s,
                     round_t* r,
                     unsigned level,
                     uint64_t i) {
  const srv_chunk_t* ch = &s->t->chunks[level][i];
  uint32_t* sent = &s->sent[level][i];
  if (r->is_full || ch->version <= *sent) {
    return;
  }
  if (r->keyframe && ch->zstd_len == 0) {
    *sent = ch->version;
    return;
  }
  if (r->count == SRV_CHUNK_ROUND_CHUNKS || r->bytes >= SRV_CHUNK_ROUND_BYTES) {
    r->is_full = true; /* and this chunk waits for the next round */
    return;
  }
  r->index[r->count] = i;
  r->version[r->count] = ch->version;
  r->frames[r->count++] = ch->frame;
  r->bytes += ch->frame->len;
  *sent = ch->version;
}


/* The view's chunks at the plane level: those each shown plane cuts. */
static void gather_view(srv_chunk_sub_t* s, round_t* r) {
  const core_chunk_grid_t* g = &s->t->grid[s->plane_level];
  for (int a = 0; a < 3 && !r->is_full; a++) {
    if (!s->view.has[a]) {
      continue;
    }
    uint32_t c[3];
    c[a] = (s->view.at[a] >> s->plane_level) / CORE_CHUNK_EDGE;
    int b = (a + 1) % 3;
    int d = (a + 2) % 3;
    for (c[b] = 0; c[b] < g->n[b] && !r->is_full; c[b]++) {
      for (c[d] = 0; c[d] < g->n[d] && !r->is_full; c[d]++) {
        consider(s, r, s->plane_level, core_chunk_index(g, c));
      }
    }
  }
}


/* The delta message of round r (a new frame, or NULL on ENOMEM). */
static net_frame_t* header_for(const srv_chunk_sub_t* s,
                               const round_t* r,
                               bool complete) {
  const core_chunk_grid_t* g = &s->t->grid[s->level];
  json_t* shape =
      json_pack("[I,I,I]", (json_int_t) g->shape.d[0],
                (json_int_t) g->shape.d[1], (json_int_t) g->shape.d[2]);
  json_t* data = json_pack(
      "{s:s, s:I, s:b, s:b, s:I, s:I, s:o, s:o}", "epoch", s->t->epoch, "base",
      (json_int_t) s->base, "keyframe", r->keyframe, "complete", complete,
      "chunks", (json_int_t) r->count, "scale", (json_int_t) (1u << s->level),
      "shape", shape, "plane_scale",
      s->has_view ? json_integer((json_int_t) (1u << s->plane_level))
                  : json_null());
  size_t len = 0;
  char* text = data != NULL ? core_msg_encode("delta", s->job->id, s->t->seq,
                                              srv_now_us(), data, &len)
                            : NULL;
  net_frame_t* f = text != NULL ? net_frame_ws_text(text, len) : NULL;
  free(text);
  return f;
}


/* Sends a delta message and its chunks. Returns 0, or -1 when a send failed
 * (the connection is closed: nothing is sent after it). */
static int send_round(srv_chunk_sub_t* s,
                      net_frame_t* header,
                      net_frame_t* const* frames,
                      unsigned count) {
  if (header == NULL) {
    srv_conn_close(s->conn);
    return -1;
  }
  net_frame_t* all[1 + SRV_CHUNK_ROUND_CHUNKS];
  all[0] = header;
  memcpy(all + 1, frames, count * sizeof(*frames));
  return srv_conn_send_all(s->conn, all, 1 + count);
}


/* The shared delta, if this subscriber is one it fits: sent, bookkeeping
 * updated. True when it was used. */
static bool use_shared(srv_chunk_sub_t* s, bool* failed) {
  srv_chunk_shared_t* d = &s->t->shared[s->level];
  if (!s->is_started || s->has_view || !s->is_clean || !d->is_valid ||
      d->seq != s->t->seq || d->gen != s->t->gen || d->base != s->base) {
    return false;
  }
  uint32_t* sent = s->sent[s->level];
  for (unsigned i = 0; i < d->count; i++) {
    assert(sent[d->index[i]] < d->version[i]);
    sent[d->index[i]] = d->version[i];
  }
  *failed = send_round(s, d->header, d->frames, d->count) != 0;
  s->base = d->seq;
  s->conn->ctx->metrics.chunk_deltas_sent++;
  s->conn->ctx->metrics.chunk_deltas_shared++;
  return true;
}


/* Keeps a complete round of a clean, view-less subscriber for the others
 * at the same base (the header reference is taken). */
static void keep_shared(srv_chunk_sub_t* s,
                        const round_t* r,
                        net_frame_t* header) {
  srv_chunk_shared_t* d = &s->t->shared[s->level];
  srv_chunk_shared_clear(d);
  d->is_valid = true;
  d->base = s->base;
  d->seq = s->t->seq;
  d->gen = s->t->gen;
  d->header = net_frame_ref(header);
  d->count = r->count;
  for (unsigned i = 0; i < r->count; i++) {
    d->frames[i] = net_frame_ref(r->frames[i]);
    d->index[i] = r->index[i];
    d->version[i] = r->version[i];
  }
}


/* The terminal message, once the final mask is complete here. */
static void send_terminal(srv_chunk_sub_t* s) {
  net_frame_t* f = s->terminal;
  s->terminal = NULL;
  srv_conn_send(s->conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
}


/* One round; true when it left more for another round. */
static bool one_round(srv_chunk_sub_t* s, bool* failed) {
  if (use_shared(s, failed)) {
    return false; /* a shared delta is always complete */
  }
  round_t r;
  memset(&r, 0, sizeof(r));
  if (!s->is_started) {
    r.keyframe = begin(s);
  }
  if (s->has_view) {
    gather_view(s, &r);
  }
  const srv_chunks_t* t = s->t;
  for (uint64_t i = 0; i < t->grid[s->level].count && !r.is_full; i++) {
    consider(s, &r, s->level, i);
  }
  bool complete = !r.is_full;
  if (r.count == 0 && complete && s->is_started && !r.keyframe) {
    return false; /* nothing new here; base stays what the client knows */
  }
  net_frame_t* header = header_for(s, &r, complete);
  bool shareable = header != NULL && complete && s->is_started && s->is_clean &&
                   !s->has_view && !r.keyframe;
  if (shareable) {
    keep_shared(s, &r, header);
  }
  *failed = send_round(s, header, r.frames, r.count) != 0;
  net_frame_unref(header);
  s->conn->ctx->metrics.chunk_deltas_sent++;
  s->is_started = true;
  s->is_clean = complete;
  if (complete) {
    s->base = t->seq;
  }
  return !complete;
}


void srv_chunk_sub_pump(srv_chunk_sub_t* s) {
  for (;;) {
    if (s->is_stopped || s->conn->is_closing || !s->t->is_ready) {
      return;
    }
    if (s->conn->wq.item_count > 0 && !srv_conn_wait_drain(s->conn)) {
      return; /* on_drain calls again */
    }
    bool failed = false;
    bool more = one_round(s, &failed);
    if (failed) {
      return;
    }
    if (more) {
      continue; /* written at once, or waits for on_drain above */
    }
    if (s->terminal != NULL) {
      if (srv_chunks_is_settled(s->t)) {
        send_terminal(s);
      } else {
        srv_chunks_for_job(s->job); /* the ended job's table catches up */
      }
    }
    return;
  }
}


void srv_chunk_sub_terminal(srv_chunk_sub_t* s, net_frame_t* terminal) {
  if (s->is_stopped) {
    return;
  }
  net_frame_unref(s->terminal);
  s->terminal = net_frame_ref(terminal);
  srv_chunks_for_job(s->job); /* an ended job's table catches up */
  srv_chunk_sub_pump(s);
}


int srv_chunk_sub_view(srv_chunk_sub_t* s, const core_view_t* v) {
  if (s->is_stopped) {
    return 0;
  }
  bool any = v->has[0] || v->has[1] || v->has[2];
  unsigned pl = core_view_plane_level(v->zoom, s->level);
  if (any && ensure_sent(s, pl) != 0) {
    return -ENOMEM;
  }
  s->view = *v;
  s->has_view = any;
  s->plane_level = pl;
  srv_chunk_sub_pump(s);
  return 0;
}


json_t* srv_chunk_sub_connected(const srv_chunk_sub_t* s) {
  return json_pack("{s:i, s:i, s:s}", "edge", (int) CORE_CHUNK_EDGE, "levels",
                   (int) CORE_CHUNK_LEVELS, "epoch",
                   s->t != NULL ? s->t->epoch : "");
}
