/* cluster_worker.c: a worker's side of the cluster (cluster.h). It reads
 * one stream entry at a time while a running slot is free (XREADGROUP on
 * its own connection, BLOCK 1 s), restores the job from its hash into the
 * local registry (cluster_take.c) and registers a sink on the job's topic
 * (cluster_wjob.h). The sink sees every job event as the exact frame
 * subscribers get; one script publishes the frame's payload on cm:ev:<id>,
 * keeps the latest state, preview and terminal message, updates the hash,
 * and XACKs the entry with the terminal record, all only while the hash
 * still names this worker's attempt as the owner (the fence). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_chunks.h"
#include "server/cluster_wjob.h"
#include "server/engines.h"
#include "server/job.h"
#include "server/job_json.h"
#include "server/jobs.h"

/* Publishes one frame if this worker still owns the job (KEYS: hash,
 * latest-key, channel, the jobs' index, the finished index; ARGV: owner,
 * payload, seq, record, public, entry, flags: L the latest key, R the
 * record, A the end: XACK the entry and add the job to the finished index;
 * then the index's score, the job id, its finished time). The terminal's keys,
 * record, message and XACK are one atomic step, so what Redis acknowledged is
 * the whole end. Returns 1, or 0 when fenced out. A hash without an owner is
 * Redis restarted without its data: nobody else can own the job, so the
 * worker goes on, and its records rebuild the hash and the index entry
 * (the first frame after each reconnect carries one: record_due); XACK
 * then finds no group, which must not fail the script. */
static const char publish_lua[] =
    "local h = KEYS[1]\n"
    "local o = redis.call('HGET', h, 'owner')\n"
    "if o and o ~= ARGV[1] then return 0 end\n"
    "local f = ARGV[7]\n"
    "if string.find(f, 'L', 1, true) then redis.call('SET', KEYS[2], ARGV[2]) "
    "end\n"
    "if string.find(f, 'R', 1, true) then\n"
    "  redis.call('HSET', h, 'record', ARGV[4], 'public', ARGV[5])\n"
    "  redis.call('ZADD', KEYS[4], 'NX', ARGV[8], ARGV[9]) end\n"
    "if tonumber(ARGV[3]) > tonumber(redis.call('HGET', h, 'seq') or '0') "
    "then\n"
    "  redis.call('HSET', h, 'seq', ARGV[3]) end\n"
    "redis.call('PUBLISH', KEYS[3], ARGV[2])\n"
    "if string.find(f, 'A', 1, true) then\n"
    "  redis.call('ZADD', KEYS[5], ARGV[10], ARGV[9])\n"
    "  redis.pcall('XACK', '" SRV_CLUSTER_STREAM "', '" SRV_CLUSTER_GROUP
    "', ARGV[6]) end\n"
    "return 1\n";


static void on_group(void* arg, redisReply* reply, int status) {
  (void) arg;
  (void) reply;
  (void) status; /* BUSYGROUP is expected; a real failure shows in reads */
}


srv_wjob_t* srv_wjob_ref(srv_wjob_t* w) {
  w->refs++;
  return w;
}


void srv_wjob_unref(srv_wjob_t* w) {
  if (--w->refs == 0) {
    srv_job_unref(w->job);
    free(w);
  }
}


void srv_wjob_detach(srv_wjob_t* w) {
  if (!w->is_attached) {
    return;
  }
  w->is_attached = false;
  if (w->term != NULL) {
    w->c->terms_pending--;
    srv_term_free(w->term);
    w->term = NULL;
  }
  srv_cluster_chunk_pub_stop(w->chunks);
  w->chunks = NULL;
  srv_topic_remove(&w->job->topic, &w->sink);
  core_list_remove(&w->link);
  srv_wjob_unref(w);
}


void srv_wjob_fence(srv_wjob_t* w) {
  if (w->is_fenced) {
    return;
  }
  w->is_fenced = true;
  w->c->fenced++;
  srv_log(&w->c->ctx->log, SRV_LOG_WARN, "cluster.fenced", "s:job_id",
          w->job->id, "s:owner", w->owner, NULL);
  srv_job_t* job = w->job;
  if (!core_job_state_is_terminal(job->state) && !job->is_ending) {
    srv_job_cancel(job, NULL, NULL); /* locally: nothing is published */
  }
  if (w->term != NULL) {
    srv_wjob_detach(w); /* its end is the other attempt's now */
  }
}


void srv_wjob_cancel(srv_wjob_t* w) {
  srv_job_t* job = w->job;
  if (!w->is_fenced && !core_job_state_is_terminal(job->state) &&
      !job->is_ending) {
    srv_log(&w->c->ctx->log, SRV_LOG_INFO, "cluster.cancel_requested",
            "s:job_id", job->id, NULL);
    srv_job_cancel(job, NULL, NULL);
  }
}


/* The script's answer: 1 published, 0 fenced out. */
static bool published(srv_wjob_t* w, const redisReply* reply, int status) {
  srv_cluster_t* c = w->c;
  if (status != 0 || reply->type != REDIS_REPLY_INTEGER) {
    c->publish_errors++;
    return false;
  }
  if (reply->integer == 0) {
    srv_wjob_fence(w);
    return false;
  }
  return true;
}


static void on_published(void* arg, redisReply* reply, int status) {
  srv_wjob_t* w = arg;
  published(w, reply, status);
  srv_wjob_unref(w);
}


/* The frame's "seq" (every job event has one), 0 if none. */
static uint64_t seq_of(const char* payload, size_t len) {
  static const char key[] = "\"seq\":";
  const char* p = memmem(payload, len, key, sizeof(key) - 1);
  uint64_t seq = 0;
  if (p != NULL) {
    for (p += sizeof(key) - 1; p < payload + len && *p >= '0' && *p <= '9';
         p++) {
      seq = seq * 10 + (uint64_t) (*p - '0');
    }
  }
  return seq;
}


static void deliver(srv_sink_t* sink, net_frame_t* frame, net_wq_class_t cls) {
  srv_wjob_t* w = (srv_wjob_t*) sink;
  srv_cluster_t* c = w->c;
  srv_job_t* job = w->job;
  srv_cluster_chunk_pub_retry(w->chunks); /* chunks first, then the event */
  size_t len = 0;
  const char* payload = (const char*) net_ws_frame_payload(frame, &len);
  bool is_terminal = frame == job->topic.terminal;
  bool is_preview = strncmp(payload, "{\"type\":\"preview\"", 17) == 0;
  bool is_state = strncmp(payload, "{\"type\":\"state\"", 15) == 0;
  if (w->term != NULL && frame != job->topic.latest[CORE_ENC_BASE64]) {
    return; /* ended: only the final preview again (cluster_term.c) */
  }
  if (w->is_fenced || c->is_stopping ||
      (!is_terminal && srv_redis_room(c->cmd) < 1)) {
    /* Latest-only for previews and progress, as for a slow reader. */
    if (!w->is_fenced && cls == NET_WQ_ESSENTIAL) {
      c->publish_errors++;
    } else if (!w->is_fenced) {
      c->events_dropped++;
    }
    if (is_terminal) {
      srv_wjob_detach(w);
    }
    return;
  }
  char key[64], ch[64], latest[64], seq[24];
  snprintf(key, sizeof(key), "cm:job:%s", job->id);
  snprintf(ch, sizeof(ch), "cm:ev:%s", job->id);
  snprintf(latest, sizeof(latest), "cm:%s:%s",
           is_terminal  ? "term"
           : is_preview ? "prev"
                        : "state",
           job->id);
  snprintf(seq, sizeof(seq), "%llu", (unsigned long long) seq_of(payload, len));
  bool with_record = is_terminal || is_state || w->record_due;
  char* rec_s = NULL;
  char* pub_s = NULL;
  if (with_record) {
    json_t* rec = srv_job_to_record(job);
    json_t* pub = srv_job_to_json(job);
    rec_s = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
    pub_s = pub != NULL ? json_dumps(pub, JSON_COMPACT) : NULL;
    json_decref(rec);
    json_decref(pub);
  }
  char flags[4] = "";
  snprintf(flags, sizeof(flags), "%s%s%s",
           is_terminal || is_preview || is_state ? "L" : "",
           rec_s != NULL && pub_s != NULL ? "R" : "", is_terminal ? "A" : "");
  char score[24], finished[24];
  snprintf(score, sizeof(score), "%lld", (long long) job->created_us);
  snprintf(finished, sizeof(finished), "%lld", (long long) job->finished_us);
  const char* argv[] = {"EVAL",
                        publish_lua,
                        "5",
                        key,
                        latest,
                        ch,
                        SRV_CLUSTER_JOB_INDEX,
                        SRV_CLUSTER_FINISHED_INDEX,
                        w->owner,
                        payload,
                        seq,
                        rec_s ?: "",
                        pub_s ?: "",
                        w->entry,
                        flags,
                        score,
                        job->id,
                        finished};
  enum {
    ARGC = sizeof(argv) / sizeof(argv[0]),
    PAYLOAD = 9
  };
  static_assert(ARGC <= SRV_TERM_MAX_ARGS, "the terminal keeps them all");
  size_t lens[ARGC];
  for (int i = 0; i < ARGC; i++) {
    /* the payload is a frame's, not NUL-terminated */
    lens[i] = i == PAYLOAD ? len : strlen(argv[i]);
  }
  if (with_record && flags[1] != 'R') {
    c->publish_errors++;
  }
  if (is_terminal) {
    /* Kept until Redis acknowledges it (cluster_term.c). */
    srv_wjob_end(w, ARGC, argv, lens);
  } else if (srv_redis_command(c->cmd, on_published, srv_wjob_ref(w), ARGC,
                               argv, lens) != 0) {
    c->publish_errors++;
    srv_wjob_unref(w);
  } else if (flags[1] == 'R') {
    w->record_due = false; /* a lost connection sets it again */
  }
  free(rec_s);
  free(pub_s);
}


void srv_wjob_republish_preview(srv_wjob_t* w) {
  net_frame_t* latest = w->job->topic.latest[CORE_ENC_BASE64];
  if (latest != NULL) {
    deliver(&w->sink, latest, NET_WQ_LATEST_PREVIEW);
  }
}


static void gone(srv_sink_t* sink) {
  srv_wjob_detach((srv_wjob_t*) sink);
}


static const srv_sink_ops_t wjob_ops = {deliver, gone};


srv_wjob_t* srv_wjob_attach(srv_cluster_t* c,
                            srv_job_t* job,
                            const char* entry,
                            const char* owner) {
  srv_wjob_t* w = calloc(1, sizeof(*w));
  if (w == NULL) {
    return NULL;
  }
  core_list_init(&w->sink.link);
  w->sink.ops = &wjob_ops;
  w->sink.encoding = CORE_ENC_BASE64;
  w->c = c;
  w->job = srv_job_ref(job);
  snprintf(w->entry, sizeof(w->entry), "%s", entry);
  snprintf(w->owner, sizeof(w->owner), "%s", owner);
  w->refs = 1;
  w->is_attached = true;
  core_list_push_back(&c->wjobs, &w->link);
  srv_topic_add(&job->topic, &w->sink);
  w->chunks = srv_cluster_chunk_pub_start(c, job, owner); /* or none */
  return w;
}


static void on_read(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  c->is_reading = false;
  if (status != 0) {
    return; /* lost: the reconnect reads again */
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.read_failed", "s:error",
            reply->str, NULL);
    return;
  }
  /* [[stream, [[entry_id, [field, value, ...]]]]] or nil (timeout) */
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
    const redisReply* s = reply->element[0];
    const redisReply* entries = s->elements == 2 ? s->element[1] : NULL;
    for (size_t i = 0; entries != NULL && i < entries->elements; i++) {
      const redisReply* e = entries->element[i];
      if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
          e->element[1]->type == REDIS_REPLY_ARRAY) {
        srv_cluster_take_entry(c, e);
      }
    }
  }
  srv_cluster_worker_pump(c);
}


void srv_cluster_worker_on_cmd_connect(srv_cluster_t* c) {
  /* Redis may have restarted without its data: each running job's next
   * frame stores its record again (publish_lua). */
  core_list_t *it, *tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &c->wjobs) {
    CORE_CONTAINER_OF(it, srv_wjob_t, link)->record_due = true;
  }
  srv_cluster_worker_pump(c);
}


void srv_cluster_worker_on_connect(srv_cluster_t* c) {
  /* On this connection, so the group exists before the first read. */
  const char* argv[] = {"XGROUP",          "CREATE", SRV_CLUSTER_STREAM,
                        SRV_CLUSTER_GROUP, "0",      "MKSTREAM"};
  srv_redis_command_str(c->stream, on_group, c, 6, argv);
  srv_cluster_worker_pump(c);
}


void srv_cluster_worker_pump(srv_cluster_t* c) {
  srv_ctx_t* ctx = c->ctx;
  if (c->is_stopping || ctx->is_stopping || c->is_reading ||
      !srv_redis_is_connected(c->stream) ||
      ctx->running_count + ctx->queued_count + c->takes_pending +
              c->terms_pending >=
          ctx->cfg.max_running) {
    return;
  }
  const char* argv[] = {"XREADGROUP",
                        "GROUP",
                        SRV_CLUSTER_GROUP,
                        c->consumer,
                        "COUNT",
                        "1",
                        "BLOCK",
                        "1000",
                        "STREAMS",
                        SRV_CLUSTER_STREAM,
                        ">"};
  if (srv_redis_command_str(c->stream, on_read, c, 11, argv) == 0) {
    c->is_reading = true;
  }
}
