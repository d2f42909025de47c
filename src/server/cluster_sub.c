/* cluster_sub.c: a gateway's WebSocket fan-out of Redis's job events
 * (cluster.h). One mirror per job with local subscribers: a detached job
 * (srv_job_mirror) whose topic holds the latest preview and the terminal
 * message and hands every frame to the local sinks, built once per
 * gateway from the published payload (byte-identical to the worker's, same
 * seq). Order: SUBSCRIBE first and, once Redis confirmed it, read the
 * record, cm:prev:<id> and cm:term:<id>; what is published meanwhile is
 * buffered; then the stored frames, the waiting subscribers (connected,
 * latest preview, terminal), and the buffer, each frame only if its seq is
 * above the last one fanned out. A reconnect of the subscriber connection
 * does the same again (what was published during the outage is in the
 * stored keys). The last subscriber's leave UNSUBSCRIBEs and the mirror
 * is forgotten at Redis's confirmation; a join before it revives the
 * mirror and subscribes again after it (hiredis drops a channel's callback
 * at the confirmation, so a SUBSCRIBE sent before it would be lost). Loop
 * thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "core/uuid.h"
#include "server/cluster.h"
#include "server/cluster_chunks.h"
#include "server/cluster_enc.h"
#include "server/jobs.h"

#define BUFFERED_MAX 256 /* messages held while the stored ones are read */

typedef struct {
  char* text;
  size_t len;
} msg_t;

typedef struct {
  core_list_t link; /* cluster->mirrors; unlinked once dropped */
  srv_cluster_t* c;
  srv_job_t* job; /* the mirror, NULL until the first read */
  char id[CORE_UUID_STR_LEN + 1];
  char channel[64];
  core_list_t waiters;   /* srv_cluster_join_t waiting for ready */
  unsigned users;        /* joins, waiting or ready */
  unsigned replies;      /* replies awaited: the struct outlives them */
  bool is_ready;         /* stored frames read; live frames go out */
  bool is_dropped;       /* forgotten: freed when no reply is awaited */
  bool is_unsubscribing; /* UNSUBSCRIBE sent, not confirmed */
  bool read_failed;      /* a reply of the read was lost or an error */
  bool needs_read;       /* subscribed again while a read was in flight */
  json_t* rec;           /* the read's results until all arrived */
  msg_t stored[2];       /* cm:prev, cm:term */
  msg_t buf[BUFFERED_MAX];
  unsigned buf_n;
  uint64_t last_seq;            /* the last frame fanned out */
  srv_cluster_enc_t* enc;       /* raw/zstd previews (cluster_enc.h) */
  srv_cluster_chunks_t* chunks; /* its table once a chunks subscriber came */
} mirror_t;


static void read_stored(mirror_t* m);


static void msg_clear(msg_t* m) {
  free(m->text);
  *m = (msg_t){NULL, 0};
}


static void mirror_free(mirror_t* m) {
  for (unsigned i = 0; i < m->buf_n; i++) {
    msg_clear(&m->buf[i]);
  }
  msg_clear(&m->stored[0]);
  msg_clear(&m->stored[1]);
  json_decref(m->rec);
  srv_cluster_enc_free(m->enc);
  srv_cluster_chunks_free(m->chunks);
  if (m->job != NULL) {
    srv_job_unref(m->job);
  }
  free(m);
}


static mirror_t* find(srv_cluster_t* c, const char* channel, size_t len) {
  for (core_list_t* l = c->mirrors.next; l != &c->mirrors; l = l->next) {
    mirror_t* m = CORE_CONTAINER_OF(l, mirror_t, link);
    if (strlen(m->channel) == len && memcmp(m->channel, channel, len) == 0) {
      return m;
    }
  }
  return NULL;
}


/* The seq of a message (core_msg_encode puts it near the front). */
static uint64_t seq_of(const char* text, size_t len) {
  size_t n = len < 256 ? len : 256;
  for (size_t i = 0; i + 6 < n; i++) {
    if (memcmp(text + i, "\"seq\":", 6) == 0) {
      return strtoull(text + i + 6, NULL, 10);
    }
  }
  return 0;
}


static bool is_type(const char* text, size_t len, const char* type) {
  char head[40];
  int n = snprintf(head, sizeof(head), "{\"type\":\"%s\"", type);
  return n > 0 && (size_t) n <= len && memcmp(text, head, (size_t) n) == 0;
}


/* The mirror's state and progress follow the small events, so a late
 * joiner's connected message is current. */
static void follow(srv_job_t* job, const char* text, size_t len) {
  json_t* msg = json_loadb(text, len, 0, NULL);
  json_t* data = json_object_get(msg, "data");
  const char* state = json_string_value(json_object_get(data, "state"));
  core_job_state_t s;
  if (state != NULL && core_job_state_parse(state, &s) == 0) {
    job->state = s;
  }
  json_t* p = json_object_get(data, "progress");
  if (json_is_number(p)) {
    job->progress = json_number_value(p);
  }
  json_decref(msg);
}


/* Fans one published payload out, unless already sent. */
static void apply(mirror_t* m, const char* text, size_t len) {
  if (m->enc != NULL && srv_cluster_enc_hold(m->enc, text, len)) {
    return; /* behind a raw/zstd encode: applied in order after it */
  }
  uint64_t seq = seq_of(text, len);
  if (seq == 0 || seq <= m->last_seq) {
    m->c->stale_dropped++;
    return;
  }
  net_frame_t* f = net_frame_ws_text(text, len);
  if (f == NULL) {
    return; /* out of memory: this frame is lost, a later one follows */
  }
  srv_job_t* job = m->job;
  m->last_seq = seq;
  job->seq = seq;
  bool is_preview = is_type(text, len, "preview");
  if (!is_preview) {
    follow(job, text, len);
  }
  if (is_preview && m->enc != NULL) {
    srv_cluster_enc_preview(m->enc, f);
  } else if (is_preview) {
    net_frame_t* frames[CORE_ENC_COUNT] = {0};
    frames[CORE_ENC_BASE64] = f;
    srv_topic_set_preview(&job->topic, frames, false);
  } else if (is_type(text, len, "completed") || is_type(text, len, "error") ||
             is_type(text, len, "cancelled")) {
    /* (a failed job's terminal message is "error"; seq 0 ones are never
     * published) */
    srv_topic_set_terminal(&job->topic, f);
    if (m->chunks != NULL) {
      srv_cluster_chunks_ended(m->chunks); /* after: waiters get the end */
    }
  } else {
    srv_topic_publish(&job->topic, f,
                      is_type(text, len, "progress") ? NET_WQ_LATEST_PROGRESS
                                                     : NET_WQ_ESSENTIAL);
    net_frame_unref(f);
  }
}


static void apply_held(void* arg, const char* text, size_t len) {
  apply(arg, text, len);
}


static void forget(mirror_t* m) {
  m->is_dropped = true;
  core_list_remove(&m->link);
  if (m->replies == 0) {
    mirror_free(m);
  }
}


/* No user left. */
static void drop(mirror_t* m) {
  if (m->is_unsubscribing) {
    return;
  }
  if (srv_redis_is_connected(m->c->sub) &&
      srv_redis_unsubscribe(m->c->sub, m->channel) == 0) {
    m->is_unsubscribing = true; /* forgotten at the confirmation */
    return;
  }
  forget(m);
}


/* All of the read arrived: the stored frames, the waiters, the buffer. */
static void on_read_done(mirror_t* m) {
  uint64_t rec_seq = 0;
  if (m->job == NULL && m->rec != NULL) {
    m->job = srv_job_mirror(m->c->ctx, m->rec);
    if (m->job != NULL) {
      m->job->final_preview_seq = 0; /* no engine here re-renders it */
      rec_seq = m->job->seq; /* its last state event's, e.g. a takeover's */
      m->job->seq = 0;
      m->enc = srv_cluster_enc_new(m->job, apply_held, m); /* or base64 only */
    }
  }
  int status = m->job != NULL                      ? 0
               : m->rec == NULL && !m->read_failed ? -ENOENT
                                                   : -EIO;
  m->read_failed = false;
  if (m->job != NULL) {
    for (int i = 0; i < 2; i++) {
      if (m->stored[i].text != NULL) {
        apply(m, m->stored[i].text, m->stored[i].len);
      }
      msg_clear(&m->stored[i]);
    }
    if (m->last_seq < rec_seq) {
      m->last_seq = m->job->seq = rec_seq; /* connected's last_seq */
    }
    m->is_ready = true;
  }
  json_decref(m->rec);
  m->rec = NULL;
  /* A waiter's callback may leave (and drop the mirror): held meanwhile. */
  m->replies++;
  while (!core_list_is_empty(&m->waiters)) {
    srv_cluster_join_t* j =
        CORE_CONTAINER_OF(m->waiters.next, srv_cluster_join_t, link);
    core_list_remove(&j->link);
    core_list_init(&j->link);
    if (status != 0) {
      j->mirror = NULL;
      m->users--;
    }
    j->ready(j, status == 0 ? m->job : NULL, status);
  }
  for (unsigned i = 0; i < m->buf_n; i++) {
    if (status == 0 && !m->is_dropped) {
      apply(m, m->buf[i].text, m->buf[i].len);
    }
    msg_clear(&m->buf[i]);
  }
  m->buf_n = 0;
  m->replies--;
  if (m->is_dropped && m->replies == 0) {
    mirror_free(m);
  } else if (!m->is_dropped && m->users == 0) {
    drop(m);
  }
}


static void on_reply(mirror_t* m, redisReply* reply, int status, int which) {
  m->replies--;
  if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
    m->read_failed = true;
  } else if (!m->is_dropped && reply->type == REDIS_REPLY_STRING) {
    if (which < 0) {
      m->rec = json_loadb(reply->str, reply->len, 0, NULL);
    } else {
      msg_t* s = &m->stored[which];
      msg_clear(s);
      s->text = malloc(reply->len);
      if (s->text != NULL) {
        memcpy(s->text, reply->str, reply->len);
        s->len = reply->len;
      }
    }
  }
  if (m->replies > 0) {
    return;
  }
  if (m->is_dropped) {
    mirror_free(m);
    return;
  }
  if (m->needs_read) {
    m->needs_read = false;
    m->read_failed = false;
    read_stored(m); /* the read began before the subscription */
    return;
  }
  on_read_done(m);
}


static void on_rec(void* arg, redisReply* reply, int status) {
  on_reply(arg, reply, status, -1);
}


static void on_prev(void* arg, redisReply* reply, int status) {
  on_reply(arg, reply, status, 0);
}


static void on_term(void* arg, redisReply* reply, int status) {
  on_reply(arg, reply, status, 1);
}


/* After Redis confirmed the subscription: nothing published from here on
 * is missed, and the stored keys hold what came before. */
static void read_stored(mirror_t* m) {
  srv_cluster_t* c = m->c;
  char key[3][64];
  snprintf(key[0], sizeof(key[0]), "cm:job:%s", m->id);
  snprintf(key[1], sizeof(key[1]), "cm:prev:%s", m->id);
  snprintf(key[2], sizeof(key[2]), "cm:term:%s", m->id);
  const char* hget[] = {"HGET", key[0], "record"};
  size_t hl[] = {4, strlen(key[0]), 6};
  const char* get1[] = {"GET", key[1]};
  size_t l1[] = {3, strlen(key[1])};
  const char* get2[] = {"GET", key[2]};
  size_t l2[] = {3, strlen(key[2])};
  srv_cluster_chunks_refill(m->chunks); /* published meanwhile: stored */
  if (srv_redis_room(c->cmd) < 3) {
    m->replies++; /* as if the read failed: waiters get -EIO */
    on_reply(m, NULL, -ENOTCONN, -1);
    return;
  }
  m->replies += 3;
  if (m->job != NULL) {
    m->replies--; /* the record is only read once */
  } else if (srv_redis_command(c->cmd, on_rec, m, 3, hget, hl) != 0) {
    m->replies--;
  }
  if (srv_redis_command(c->cmd, on_prev, m, 2, get1, l1) != 0) {
    m->replies--;
  }
  if (srv_redis_command(c->cmd, on_term, m, 2, get2, l2) != 0) {
    m->replies--;
  }
  if (m->replies == 0) {
    m->replies++;
    on_reply(m, NULL, -ENOTCONN, -1);
  }
}


int srv_cluster_join(srv_ctx_t* ctx, const char* id, srv_cluster_join_t* j) {
  srv_cluster_t* c = ctx->cluster;
  char channel[64];
  snprintf(channel, sizeof(channel), "cm:ev:%.36s", id);
  mirror_t* m = find(c, channel, strlen(channel));
  if (m == NULL) {
    if (!srv_redis_is_connected(c->sub) || !srv_redis_is_connected(c->cmd)) {
      return -ENOTCONN;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
      return -ENOMEM;
    }
    m->c = c;
    snprintf(m->id, sizeof(m->id), "%.36s", id);
    memcpy(m->channel, channel, sizeof(m->channel));
    core_list_init(&m->waiters);
    if (srv_redis_subscribe(c->sub, m->channel) != 0) {
      free(m);
      return -ENOTCONN;
    }
    core_list_push_back(&c->mirrors, &m->link);
  }
  m->users++;
  j->mirror = m;
  core_list_init(&j->link);
  core_list_push_back(&m->waiters, &j->link);
  if (m->is_ready) {
    /* Already current: admitted at once (ready runs inside the call). */
    core_list_remove(&j->link);
    core_list_init(&j->link);
    j->ready(j, m->job, 0);
  }
  return 0;
}


void srv_cluster_leave(srv_cluster_join_t* j) {
  mirror_t* m = j->mirror;
  if (m == NULL) {
    return;
  }
  j->mirror = NULL;
  core_list_remove(&j->link);
  core_list_init(&j->link);
  if (--m->users == 0 && !m->is_dropped && m->replies == 0) {
    drop(m);
  }
}


/* A mirror whose subscription went (a reconnect, a confirmed UNSUBSCRIBE):
 * freed when nobody watches it any more, else subscribed again; until that
 * is confirmed, what is published comes from the stored keys. */
static void resubscribe_or_forget(srv_cluster_t* c, mirror_t* m) {
  m->is_unsubscribing = false;
  if (m->users == 0) {
    forget(m);
    return;
  }
  m->is_ready = false;
  srv_redis_subscribe(c->sub, m->channel);
}


void srv_cluster_sub_on_connect(void* arg) {
  srv_cluster_t* c = arg;
  /* A reconnect: subscribe again; the stored keys fill the gap. An
   * unconfirmed UNSUBSCRIBE went with the old connection. */
  core_list_t *it, *tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &c->mirrors) {
    resubscribe_or_forget(c, CORE_CONTAINER_OF(it, mirror_t, link));
  }
}


void srv_cluster_sub_on_unsubscribed(void* arg,
                                     const char* unused,
                                     size_t unused_len,
                                     const char* channel,
                                     size_t len) {
  (void) unused;
  (void) unused_len;
  srv_cluster_t* c = arg;
  mirror_t* m = find(c, channel, len);
  if (m == NULL || !m->is_unsubscribing) {
    return;
  }
  /* Joined again meanwhile: subscribed anew once the old one is gone. */
  resubscribe_or_forget(c, m);
}


void srv_cluster_sub_on_subscribed(void* arg,
                                   const char* unused,
                                   size_t unused_len,
                                   const char* channel,
                                   size_t len) {
  (void) unused;
  (void) unused_len;
  mirror_t* m = find(arg, channel, len);
  if (m == NULL || m->is_unsubscribing || m->is_ready) {
    return;
  }
  if (m->replies == 0) {
    read_stored(m);
  } else {
    m->needs_read = true;
  }
}


void srv_cluster_sub_on_message(void* arg,
                                const char* channel,
                                size_t channel_len,
                                const char* payload,
                                size_t payload_len) {
  mirror_t* m = find(arg, channel, channel_len);
  if (m == NULL) {
    return;
  }
  if (payload_len > 0 && payload[0] != '{') {
    /* A chunk batch: for the table, if a chunks subscriber came. */
    if (m->chunks != NULL) {
      srv_cluster_chunks_message(m->chunks, payload, payload_len);
    }
    return;
  }
  if (m->is_ready) {
    apply(m, payload, payload_len);
    return;
  }
  if (is_type(payload, payload_len, "preview")) {
    /* Latest-only: a newer preview replaces a buffered one. */
    for (unsigned i = 0; i < m->buf_n; i++) {
      if (is_type(m->buf[i].text, m->buf[i].len, "preview")) {
        msg_clear(&m->buf[i]);
        memmove(&m->buf[i], &m->buf[i + 1], sizeof(msg_t) * (m->buf_n - i - 1));
        m->buf_n--;
        break;
      }
    }
  }
  if (m->buf_n == BUFFERED_MAX) {
    /* The oldest goes: the terminal message is always the newest. */
    msg_clear(&m->buf[0]);
    memmove(&m->buf[0], &m->buf[1], sizeof(msg_t) * (BUFFERED_MAX - 1));
    m->buf_n--;
  }
  msg_t* b = &m->buf[m->buf_n];
  b->text = malloc(payload_len);
  if (b->text != NULL) {
    memcpy(b->text, payload, payload_len);
    b->len = payload_len;
    m->buf_n++;
  }
}


int srv_cluster_fill_preview(srv_ctx_t* ctx, srv_job_t* job) {
  char channel[64];
  snprintf(channel, sizeof(channel), "cm:ev:%s", job->id);
  mirror_t* m = find(ctx->cluster, channel, strlen(channel));
  if (m == NULL || m->job != job || m->enc == NULL) {
    return -ENOENT;
  }
  return srv_cluster_enc_fill(m->enc);
}


srv_chunks_t* srv_cluster_chunks_for_mirror(srv_job_t* job) {
  char channel[64];
  snprintf(channel, sizeof(channel), "cm:ev:%s", job->id);
  mirror_t* m = find(job->ctx->cluster, channel, strlen(channel));
  if (m == NULL || m->job != job) {
    return job->chunks; /* a mirror that went: what it had */
  }
  if (m->chunks == NULL) {
    m->chunks = srv_cluster_chunks_new(m->c, job);
  }
  return m->chunks != NULL ? job->chunks : NULL;
}
