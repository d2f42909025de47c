/* cluster_chunks.c: a gateway's mirror chunk table, filled from Redis.
 * See cluster_chunks.h. The fill reads cm:chunkmeta:<id>, then
 * cm:chunks:<id> (in that order on one connection: the chunks read are at
 * least as new as the seq read, so the table never claims a seq its
 * chunks lack); batches published meanwhile are applied as they come.
 * The chunks come in HSCAN pages of --redis-chunk-read-count: neither
 * Redis nor the gateway handles a whole table at once. HSCAN returns
 * every chunk the hash holds from the first page to the last; one written
 * meanwhile may be missed, but it was written after the seq read, with
 * the batch that publishes it (one script), and that batch comes here. A
 * chunk is replaced only by a higher version, so the fill, the batches and
 * a refill after a reconnect can arrive in any order. Subscribers pump
 * only once the table is ready. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster_chunks.h"
#include "server/jobs.h"

static void fill(srv_cluster_chunks_t* s);

struct srv_cluster_chunks_s {
  srv_cluster_t* c;
  srv_job_t* job;     /* a reference */
  unsigned replies;   /* awaited: the struct outlives them */
  bool is_gone;       /* the mirror went: free once no reply is awaited */
  bool is_filling;    /* a read is in flight */
  bool refill_wanted; /* asked again while reading */
  bool has_epoch;     /* the table's epoch is the worker's */
  bool has_meta;      /* the read found cm:chunkmeta */
  bool has_read;      /* a read completed at least once */
  bool needs_fill;    /* a read could not be sent: at the next batch */
  bool is_replaced;   /* emptied for a new epoch: not ready before a read */
  bool is_scan_cut;   /* a page could not be asked for: read again */
  uint32_t meta_seq;
  char meta_epoch[17];
};


static uint32_t get_u32(const uint8_t* p) {
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 |
         (uint32_t) p[3];
}


/* The worker's epoch, adopted at first. A later attempt's (a takeover)
 * replaces the table: emptied, its subscribers closed (cluster_epoch.c),
 * then read again from Redis, where the take dropped the old table. An
 * earlier attempt's (a stalled worker) is refused: never back. */
static bool epoch_ok(srv_cluster_chunks_t* s, const char* epoch) {
  srv_chunks_t* t = s->job->chunks;
  if (!s->has_epoch) {
    memcpy(t->epoch, epoch, 16);
    t->epoch[16] = '\0';
    s->has_epoch = true;
    return true;
  }
  if (memcmp(t->epoch, epoch, 16) == 0) {
    return true;
  }
  if (srv_cluster_epoch_cmp(epoch, t->epoch) <= 0) {
    return false;
  }
  srv_log(&s->c->ctx->log, SRV_LOG_INFO, "cluster.chunks_replaced", "s:job_id",
          s->job->id, "s:epoch", epoch, NULL);
  s->c->chunk_swaps++;
  srv_cluster_chunks_replace(t, epoch);
  s->is_replaced = true;
  return true;
}


/* One chunk message; true when it replaced what the table held. */
static bool apply_chunk(srv_chunks_t* t, const uint8_t* msg, size_t len) {
  core_chunk_head_t h;
  if (core_chunk_head_parse(msg, len, &h) != 0) {
    return false;
  }
  const core_chunk_grid_t* g = &t->grid[h.level];
  if (h.c[0] >= g->n[0] || h.c[1] >= g->n[1] || h.c[2] >= g->n[2]) {
    return false;
  }
  srv_chunk_t* ch = &t->chunks[h.level][core_chunk_index(g, h.c)];
  if (h.version <= ch->version) {
    return false; /* already held (the fill and a batch overlap) */
  }
  net_frame_t* f = net_frame_new(NET_WS_MAX_HEADER_LEN, len);
  if (f == NULL) {
    return false; /* a later version, or the next refill, brings it */
  }
  memcpy(f->data, msg, len);
  net_frame_seal_ws(f, NET_WS_OP_BINARY);
  if (ch->frame != NULL) {
    t->frame_bytes -= ch->frame->cap;
    net_frame_mark_held(ch->frame, t->held);
    net_frame_unref(ch->frame);
  }
  ch->frame = f;
  ch->version = h.version;
  ch->zstd_len = (h.flags & CORE_CHUNK_FLAG_ZERO) != 0 ? 0 : h.payload_len;
  t->frame_bytes += f->cap;
  return true;
}


/* After a change: subscribers are told once the table is ready. */
static void changed(srv_chunks_t* t, uint32_t seq, bool make_ready) {
  t->gen++;
  if (seq > t->seq) {
    t->seq = seq;
  }
  if (t->is_ready || make_ready) {
    srv_chunks_set_ready(t, t->seq);
  }
}


void srv_cluster_chunks_message(srv_cluster_chunks_t* s,
                                const char* payload,
                                size_t len) {
  const uint8_t* p = (const uint8_t*) payload;
  srv_chunks_t* t = s->job->chunks;
  if (s->needs_fill && !s->is_filling) {
    fill(s); /* a read could not be sent: now */
  }
  bool was_replaced = s->is_replaced;
  if (t == NULL || len < SRV_CLUSTER_CHUNK_HEAD ||
      memcmp(p, SRV_CLUSTER_CHUNK_MAGIC, 4) != 0 || !epoch_ok(s, payload + 4)) {
    s->c->stale_dropped++;
    return;
  }
  if (s->is_replaced && !was_replaced) {
    fill(s); /* the new table's chunks sent before this batch (a read in
                flight may be of the old one: fill reads again after it) */
  }
  s->c->chunk_batches++;
  uint32_t seq = get_u32(p + 20);
  uint32_t count = get_u32(p + 24);
  size_t off = SRV_CLUSTER_CHUNK_HEAD;
  for (uint32_t i = 0; i < count && off + 4 <= len; i++) {
    uint32_t n = get_u32(p + off);
    if (n > len - off - 4) {
      break; /* malformed: what came before stays */
    }
    apply_chunk(t, p + off + 4, n);
    off += 4 + n;
  }
  /* A table read before the worker published its epoch is complete with
   * its first batch. */
  changed(t, seq, s->has_read && !s->is_filling && !s->is_replaced);
}


static void reply_done(srv_cluster_chunks_t* s) {
  if (--s->replies > 0) {
    return;
  }
  s->is_filling = false;
  s->has_read = true;
  s->is_replaced = false;
  if (s->is_gone) {
    srv_job_unref(s->job);
    free(s);
    return;
  }
  srv_chunks_t* t = s->job->chunks;
  if (s->refill_wanted || s->is_scan_cut) {
    s->refill_wanted = false;
    fill(s);
    return;
  }
  /* Ready once the worker's epoch is known (a subscriber's connected
   * message carries it): from the meta, or the worker's first batch
   * (above), sent when it takes the job. An ended job without one (its
   * worker could not store it) will get none: what there is. */
  bool ended = s->job->state == CORE_JOB_COMPLETED ||
               s->job->state == CORE_JOB_FAILED ||
               s->job->state == CORE_JOB_CANCELLED;
  bool ready = s->has_epoch || ended;
  changed(t, s->meta_seq, ready);
}


void srv_cluster_chunks_ended(srv_cluster_chunks_t* s) {
  /* No worker's epoch and no read in flight: none will come (a queued job
   * a gateway cancelled), so the waiting subscribers get the empty table;
   * a read in flight decides at its end (reply_done). */
  srv_chunks_t* t = s->job->chunks;
  if (!s->has_epoch && !s->is_filling && t != NULL && !t->is_ready) {
    changed(t, s->meta_seq, true);
  }
}


static void on_meta(void* arg, redisReply* reply, int status) {
  srv_cluster_chunks_t* s = arg;
  if (!s->is_gone && status == 0 && reply->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
      const redisReply* k = reply->element[i];
      const redisReply* v = reply->element[i + 1];
      if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
        continue;
      }
      if (strcmp(k->str, "seq") == 0) {
        s->meta_seq = (uint32_t) strtoul(v->str, NULL, 10);
        s->has_meta = true;
      } else if (strcmp(k->str, "epoch") == 0 && v->len == 16) {
        memcpy(s->meta_epoch, v->str, 16);
      }
    }
    if (s->has_meta && s->meta_epoch[0] != '\0' &&
        !epoch_ok(s, s->meta_epoch)) {
      s->has_meta = false; /* another table: refused, as its batches */
      s->meta_seq = 0;
    }
  }
  reply_done(s);
}


static int ask_page(srv_cluster_chunks_t* s, const char* cursor);


/* One HSCAN page: [cursor, [field, value, ...]]. The next is asked for
 * before this one counts as done, so the read ends with the last page. */
static void on_page(void* arg, redisReply* reply, int status) {
  srv_cluster_chunks_t* s = arg;
  bool ok = status == 0 && reply->type == REDIS_REPLY_ARRAY &&
            reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_STRING &&
            reply->element[1]->type == REDIS_REPLY_ARRAY;
  if (!s->is_gone && s->job->chunks != NULL && ok &&
      (s->has_meta || !s->has_epoch)) {
    s->c->chunk_pages++;
    const redisReply* kv = reply->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
      const redisReply* v = kv->element[i + 1];
      if (v->type == REDIS_REPLY_STRING) {
        apply_chunk(s->job->chunks, (const uint8_t*) v->str, v->len);
      }
    }
  }
  if (ok && !s->is_gone && strcmp(reply->element[0]->str, "0") != 0 &&
      ask_page(s, reply->element[0]->str) != 0) {
    /* No room or no connection for the next page: the table is not
     * whole; read it again (at once, or at the reconnect's refill). */
    s->is_scan_cut = true;
  }
  reply_done(s);
}


static int ask_page(srv_cluster_chunks_t* s, const char* cursor) {
  char key[64], count[16];
  snprintf(key, sizeof(key), "cm:chunks:%s", s->job->id);
  snprintf(count, sizeof(count), "%u", s->c->ctx->cfg.redis_chunk_read_count);
  const char* argv[] = {"HSCAN", key, cursor, "COUNT", count};
  size_t lens[] = {5, strlen(key), strlen(cursor), 5, strlen(count)};
  int err = srv_redis_command(s->c->cmd, on_page, s, 5, argv, lens);
  if (err == 0) {
    s->replies++;
  }
  return err;
}


static void fill(srv_cluster_chunks_t* s) {
  srv_cluster_t* c = s->c;
  if (s->is_filling) {
    s->refill_wanted = true;
    return;
  }
  char meta[64];
  snprintf(meta, sizeof(meta), "cm:chunkmeta:%s", s->job->id);
  const char* a1[] = {"HGETALL", meta};
  size_t l1[] = {7, strlen(meta)};
  s->has_meta = false;
  s->meta_seq = 0;
  s->meta_epoch[0] = '\0';
  if (srv_redis_room(c->cmd) < 2) {
    s->needs_fill = true; /* not now: at the next batch */
    return;
  }
  s->needs_fill = false;
  s->job->chunks->is_ready = false; /* subscribers wait for the read */
  s->is_filling = true;
  s->is_scan_cut = false;
  if (srv_redis_command(c->cmd, on_meta, s, 2, a1, l1) == 0) {
    s->replies++;
  }
  ask_page(s, "0");
  if (s->replies == 0) {
    s->is_filling = false;
  }
}


srv_cluster_chunks_t* srv_cluster_chunks_new(srv_cluster_t* c, srv_job_t* job) {
  srv_cluster_chunks_t* s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return NULL;
  }
  if (job->chunks == NULL) {
    job->chunks = srv_chunks_new(&job->shape, job->topic.held);
    if (job->chunks == NULL) {
      free(s);
      return NULL;
    }
  }
  s->c = c;
  s->job = srv_job_ref(job);
  fill(s);
  return s;
}


void srv_cluster_chunks_refill(srv_cluster_chunks_t* s) {
  if (s != NULL && !s->is_gone) {
    fill(s);
  }
}


void srv_cluster_chunks_free(srv_cluster_chunks_t* s) {
  if (s == NULL) {
    return;
  }
  s->is_gone = true;
  if (s->replies == 0) {
    srv_job_unref(s->job);
    free(s);
  }
}
