/* cluster_chunks_pub.c: a worker's chunk tables into Redis. See
 * cluster_chunks.h. A watch on the job's table runs after every applied
 * pass: every chunk whose version is above what was last sent goes out,
 * in batches, each one script (HSET cm:chunks:<id>, HSET cm:chunkmeta:<id>,
 * PUBLISH) that runs only while the job's hash names this attempt as its
 * owner, as cluster_worker.c's events: a worker that stalled past its
 * lease must not write its old table over the new attempt's. A batch Redis
 * refused (or lost) makes the next change send again from what Redis
 * acknowledged; a new connection (Redis restarted, perhaps empty) sends the
 * whole table again. Loop thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/chunk_jobs.h"
#include "server/cluster_chunks.h"

struct srv_cluster_chunk_pub_s {
  srv_chunk_watch_t watch; /* on the table's watches while publishing */
  srv_cluster_t* c;
  srv_job_t* job;     /* borrowed: the worker's sink holds a reference */
  uint32_t sent_seq;  /* chunks up to this version were sent */
  uint32_t acked_seq; /* ... and Redis acknowledged all of them */
  uint64_t connects;  /* the connection they were sent on */
  unsigned replies;   /* EXECs awaited: the struct outlives them */
  bool is_pending;    /* a change waits for room on the connection */
  bool needs_meta;    /* the epoch is not in Redis yet (or may be lost) */
  bool is_stopped;
  bool is_fenced; /* the hash names another owner: send nothing more */
  char owner[192];
};

/* KEYS: job hash, chunks hash, meta hash, channel; ARGV: owner, epoch,
 * seq, batch message, then field, value pairs. 1, or 0 when fenced out (a
 * hash without an owner: Redis restarted empty, as publish_lua). The HSETs
 * go in groups: Lua's unpack has a stack limit. */
static const char batch_lua[] =
    "local o = redis.call('HGET', KEYS[1], 'owner')\n"
    "if o and o ~= ARGV[1] then return 0 end\n"
    "for i = 5, #ARGV, 512 do\n"
    "  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 511, #ARGV)))\n"
    "end\n"
    "redis.call('HSET', KEYS[3], 'epoch', ARGV[2], 'seq', ARGV[3])\n"
    "redis.call('PUBLISH', KEYS[4], ARGV[4])\n"
    "return 1\n";

#define BATCH_ARGS 11 /* EVAL, script, 4, 4 keys, 4 arguments */

typedef struct {
  srv_cluster_chunk_pub_t* p;
  uint32_t seq;
  unsigned left; /* batches of this flush awaited */
  bool failed;
} flush_t;

/* One batch being built: the message and the HSET's argv. */
typedef struct {
  char* msg;
  size_t len, cap;
  const char** argv;
  size_t* lens;
  char (*fields)[32];
  unsigned n, n_cap;
} batch_t;


static void put_u32(char* out, uint32_t v) {
  out[0] = (char) (v >> 24);
  out[1] = (char) (v >> 16);
  out[2] = (char) (v >> 8);
  out[3] = (char) v;
}


static void pub_free(srv_cluster_chunk_pub_t* p) {
  free(p);
}


static void on_exec(void* arg, redisReply* reply, int status) {
  flush_t* f = arg;
  srv_cluster_chunk_pub_t* p = f->p;
  bool ok = status == 0 && reply->type == REDIS_REPLY_INTEGER;
  if (ok && reply->integer == 0) {
    p->is_fenced = true; /* another attempt owns the job now */
    p->is_pending = false;
  }
  f->failed = f->failed || !ok;
  p->replies--;
  if (--f->left == 0) {
    if (!f->failed && f->seq > p->acked_seq) {
      p->acked_seq = f->seq;
    } else if (f->failed && !p->is_fenced) {
      p->needs_meta = true;
      /* Sent again from what Redis holds, with the next change. */
      p->c->publish_errors++;
      p->sent_seq = p->acked_seq;
      p->is_pending = true;
    }
    free(f);
  }
  if (p->is_stopped && p->replies == 0) {
    pub_free(p);
  }
}


/* Sends one batch as one script. 0, or -1 (counted as failed). */
static int send_batch(srv_cluster_chunk_pub_t* p, batch_t* b, flush_t* f) {
  srv_cluster_t* c = p->c;
  const srv_chunks_t* t = p->job->chunks;
  char job[64], key[64], meta[64], ch[64], seq_s[16];
  snprintf(job, sizeof(job), "cm:job:%s", p->job->id);
  snprintf(key, sizeof(key), "cm:chunks:%s", p->job->id);
  snprintf(meta, sizeof(meta), "cm:chunkmeta:%s", p->job->id);
  snprintf(ch, sizeof(ch), "cm:ev:%s", p->job->id);
  snprintf(seq_s, sizeof(seq_s), "%u", (unsigned) f->seq);
  put_u32(b->msg + 24, b->n);
  const char* head[BATCH_ARGS] = {"EVAL",   batch_lua, "4",   job,
                                  key,      meta,      ch,    p->owner,
                                  t->epoch, seq_s,     b->msg};
  for (unsigned i = 0; i < BATCH_ARGS; i++) {
    b->argv[i] = head[i];
    b->lens[i] = i == BATCH_ARGS - 1 ? b->len : strlen(head[i]);
  }
  int argc = BATCH_ARGS + 2 * (int) b->n;
  if (srv_redis_command(c->cmd, on_exec, f, argc, b->argv, b->lens) != 0) {
    return -1; /* room was checked: only ENOMEM; the reply never comes */
  }
  p->replies++;
  return 0;
}


static void batch_reset(batch_t* b, const srv_chunks_t* t, uint32_t seq) {
  b->n = 0;
  memcpy(b->msg, SRV_CLUSTER_CHUNK_MAGIC, 4);
  memcpy(b->msg + 4, t->epoch, 16);
  put_u32(b->msg + 20, seq);
  b->len = SRV_CLUSTER_CHUNK_HEAD;
}


/* Counts the batches a flush takes (each at most `max` bytes). */
static unsigned batches_needed(const srv_chunks_t* t,
                               uint32_t since,
                               size_t max,
                               unsigned* chunks) {
  unsigned n = 0, count = 0;
  size_t len = SRV_CLUSTER_CHUNK_HEAD;
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    for (uint64_t i = 0; i < t->grid[l].count; i++) {
      const srv_chunk_t* ch = &t->chunks[l][i];
      if (ch->frame == NULL || ch->version <= since) {
        continue;
      }
      size_t sz = 0;
      net_ws_frame_payload(ch->frame, &sz);
      if (n == 0 || len + 4 + sz > max) {
        n++;
        len = SRV_CLUSTER_CHUNK_HEAD;
      }
      len += 4 + sz;
      count++;
    }
  }
  *chunks = count;
  return n;
}


static void flush(srv_cluster_chunk_pub_t* p) {
  srv_cluster_t* c = p->c;
  const srv_chunks_t* t = p->job->chunks;
  if (p->is_stopped || p->is_fenced || t == NULL || !t->is_ready) {
    return;
  }
  uint64_t connects = srv_redis_connects_total(c->cmd);
  if (connects != p->connects) {
    /* A new connection: Redis may have restarted empty. */
    p->connects = connects;
    p->sent_seq = p->acked_seq = 0;
    p->needs_meta = true;
  }
  p->is_pending = false;
  if (t->seq <= p->sent_seq && !p->needs_meta) {
    return;
  }
  size_t max = (size_t) c->ctx->cfg.redis_chunk_message_bytes;
  unsigned chunks = 0;
  unsigned batches = batches_needed(t, p->sent_seq, max, &chunks);
  if (batches == 0) {
    batches = 1; /* the meta alone: the table's seq and epoch */
  }
  if (!srv_redis_is_connected(c->cmd) || srv_redis_room(c->cmd) < batches) {
    p->is_pending = true; /* retried before the next event */
    c->events_dropped++;
    return;
  }
  flush_t* f = calloc(1, sizeof(*f));
  batch_t b = {0};
  b.cap = max;
  b.n_cap = chunks > 0 ? chunks : 1;
  b.msg = malloc(max);
  b.argv = calloc(BATCH_ARGS + 2 * (size_t) b.n_cap, sizeof(*b.argv));
  b.lens = calloc(BATCH_ARGS + 2 * (size_t) b.n_cap, sizeof(*b.lens));
  b.fields = calloc(b.n_cap, sizeof(*b.fields));
  if (f == NULL || b.msg == NULL || b.argv == NULL || b.lens == NULL ||
      b.fields == NULL) {
    free(f);
    p->is_pending = true;
    goto out;
  }
  f->p = p;
  f->seq = t->seq;
  f->left = batches;
  batch_reset(&b, t, t->seq);
  unsigned sent = 0;
  bool failed = false;
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS && !failed; l++) {
    for (uint64_t i = 0; i < t->grid[l].count && !failed; i++) {
      const srv_chunk_t* ch = &t->chunks[l][i];
      if (ch->frame == NULL || ch->version <= p->sent_seq) {
        continue;
      }
      size_t sz = 0;
      const uint8_t* bytes = net_ws_frame_payload(ch->frame, &sz);
      if (b.n > 0 && b.len + 4 + sz > max) {
        failed = send_batch(p, &b, f) != 0;
        sent++;
        batch_reset(&b, t, t->seq);
      }
      put_u32(b.msg + b.len, (uint32_t) sz);
      memcpy(b.msg + b.len + 4, bytes, sz);
      const char* value = b.msg + b.len + 4;
      b.len += 4 + sz;
      snprintf(b.fields[b.n], sizeof(b.fields[b.n]), "%u:%llu", l,
               (unsigned long long) i);
      b.argv[BATCH_ARGS + 2 * b.n] = b.fields[b.n];
      b.lens[BATCH_ARGS + 2 * b.n] = strlen(b.fields[b.n]);
      b.argv[BATCH_ARGS + 1 + 2 * b.n] = value;
      b.lens[BATCH_ARGS + 1 + 2 * b.n] = sz;
      b.n++;
    }
  }
  if (!failed) {
    failed = send_batch(p, &b, f) != 0;
    sent++;
  }
  if (failed) {
    c->publish_errors++;
    p->sent_seq = p->acked_seq;
    p->is_pending = true;
    f->failed = true;
    f->left = sent - 1; /* the EXECs that were sent */
    if (f->left == 0) {
      free(f);
    }
  } else {
    p->sent_seq = t->seq;
    p->needs_meta = false;
  }
out:
  free(b.msg);
  free(b.argv);
  free(b.lens);
  free(b.fields);
}


static void on_changed(srv_chunk_watch_t* w) {
  flush((srv_cluster_chunk_pub_t*) w);
}


srv_cluster_chunk_pub_t* srv_cluster_chunk_pub_start(srv_cluster_t* c,
                                                     srv_job_t* job,
                                                     const char* owner) {
  srv_cluster_chunk_pub_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->c = c;
  p->job = job;
  snprintf(p->owner, sizeof(p->owner), "%s", owner);
  p->watch.changed = on_changed;
  core_list_init(&p->watch.link);
  p->connects = srv_redis_connects_total(c->cmd);
  srv_chunks_t* t = srv_chunks_for_job(job);
  if (t == NULL) {
    free(p);
    return NULL;
  }
  srv_cluster_epoch_stamp(t, owner); /* before anything is published */
  core_list_push_back(&t->watches, &p->watch.link);
  /* The epoch at once: gateways wait for it before a chunks subscriber's
   * connected message, which carries it. */
  p->needs_meta = true;
  flush(p);
  return p;
}


void srv_cluster_chunk_pub_retry(srv_cluster_chunk_pub_t* p) {
  if (p != NULL &&
      (p->is_pending || (p->job->chunks != NULL &&
                         srv_redis_connects_total(p->c->cmd) != p->connects))) {
    flush(p);
  }
}


void srv_cluster_chunk_pub_stop(srv_cluster_chunk_pub_t* p) {
  if (p == NULL) {
    return;
  }
  core_list_remove(&p->watch.link); /* unlinked already if the table went */
  p->is_stopped = true;
  if (p->replies == 0) {
    pub_free(p);
  }
}
