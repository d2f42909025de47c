/* cluster_take.c: a worker takes a job from a stream entry (read with
 * XREADGROUP, or claimed from a lost worker with XAUTOCLAIM, cluster_lease.c).
 * One script makes it the job's owner: it increments the job's `attempt`
 * and sets `owner` to consumer#attempt in the hash, which fences out any
 * earlier owner (cluster_wjob.h), and returns the record, the highest seq
 * published so far and whether a cancel was requested. The job is then
 * restored into the local registry with its seq above that high-water
 * mark, so gateways (which drop seqs they already fanned out) pass the new
 * attempt's events. An attempt after the first means a worker was lost:
 * the job is requeued from the start (a `state` event back to `queued`,
 * reason `worker_lost`, and the attempt) or failed `worker_lost`, as
 * --on-worker-lost and --max-attempts say. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_wjob.h"
#include "server/engines.h"
#include "server/job.h"
#include "server/jobs.h"

/* KEYS: hash, latest-preview key, chunks, chunkmeta; ARGV: consumer,
 * entry. An ended or missing job's entry is acknowledged and nil returned;
 * else {record, attempt, seq, cancel, owner}. A new attempt drops the lost
 * attempt's latest preview and chunk table, so a late joiner does not see
 * its progress as current and a gateway's fill never mixes two tables. */
static const char take_lua[] =
    "local h = KEYS[1]\n"
    "local rec = redis.call('HGET', h, 'record')\n"
    "local pub = redis.call('HGET', h, 'public')\n"
    "local st = pub and cjson.decode(pub).state\n"
    "if not rec or st == 'completed' or st == 'failed' or st == 'cancelled' "
    "then\n"
    "  redis.call('XACK', '" SRV_CLUSTER_STREAM "', '" SRV_CLUSTER_GROUP
    "', ARGV[2])\n"
    "  return false end\n"
    "local attempt = redis.call('HINCRBY', h, 'attempt', 1)\n"
    "local owner = ARGV[1] .. '#' .. attempt\n"
    "redis.call('HSET', h, 'owner', owner)\n"
    "if attempt > 1 then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end\n"
    "return {rec, tostring(attempt), redis.call('HGET', h, 'seq') or '0',\n"
    "        redis.call('HGET', h, 'cancel') or '', owner}\n";

typedef struct {
  srv_cluster_t* c;
  char entry[64];
  char job_id[CORE_UUID_STR_LEN + 1];
} take_t;


static void take_done(take_t* t) {
  srv_cluster_t* c = t->c;
  c->takes_pending--;
  free(t);
  srv_cluster_worker_pump(c);
}


static json_t* worker_lost_error(unsigned attempt) {
  char message[160];
  snprintf(message, sizeof(message),
           "the worker running this job was lost (attempt %u)", attempt);
  return json_pack("{s:s, s:s, s:s, s:b}", "code", "worker_lost", "message",
                   message, "hint", "submit the job again", "retryable", 1);
}


/* A lost attempt's job: back to queued, from the start. */
static void rewind_record(json_t* rec) {
  json_object_set_new(rec, "state", json_string("queued"));
  json_object_set_new(rec, "progress", json_real(0.0));
  json_object_set_new(rec, "started_at", json_null());
}


/* Runs (or ends) the job as the take's reply says. */
static void start_taken(take_t* t, const redisReply* r) {
  srv_cluster_t* c = t->c;
  srv_ctx_t* ctx = c->ctx;
  json_t* rec = json_loadb(r->element[0]->str, r->element[0]->len, 0, NULL);
  unsigned attempt = (unsigned) strtoul(r->element[1]->str, NULL, 10);
  uint64_t seq = strtoull(r->element[2]->str, NULL, 10);
  bool cancel = r->element[3]->len > 0;
  const char* engine = json_string_value(
      json_object_get(json_object_get(rec, "params"), "engine"));
  const char* previous = json_string_value(json_object_get(rec, "state"));
  bool was_running = previous != NULL && strcmp(previous, "running") == 0;
  if (rec != NULL && attempt > 1) {
    rewind_record(rec);
  }
  srv_job_t* job = NULL;
  if (rec != NULL &&
      srv_job_restore(ctx, rec, srv_engines_for_record(ctx->engines, engine)) ==
          0) {
    job = srv_job_find(ctx, t->job_id, strlen(t->job_id));
  }
  srv_wjob_t* w = job != NULL
                      ? srv_wjob_attach(c, job, t->entry, r->element[4]->str)
                      : NULL;
  json_decref(rec);
  if (w == NULL) {
    /* The entry stays pending: a lease takes it again later. */
    c->publish_errors++;
    srv_log(&ctx->log, SRV_LOG_ERROR, "cluster.job_unreadable", "s:entry",
            t->entry, NULL);
    return;
  }
  if (job->seq < seq) {
    job->seq = seq; /* continue above what gateways have fanned out */
  }
  srv_log(&ctx->log, SRV_LOG_INFO, "cluster.job_taken", "s:job_id", job->id,
          "s:entry", t->entry, "i:attempt", (int64_t) attempt, NULL);
  if (cancel) {
    srv_wjob_cancel(w);
  } else if (attempt > 1 && (ctx->cfg.fail_on_worker_lost ||
                             attempt > ctx->cfg.max_attempts)) {
    c->takeovers++;
    srv_job_finish(job, CORE_JOB_FAILED, worker_lost_error(attempt - 1));
  } else if (attempt > 1) {
    c->takeovers++;
    srv_job_publish(
        job, "state",
        json_pack("{s:s, s:f, s:s, s:s, s:i}", "state", "queued", "progress",
                  0.0, "previous", was_running ? "running" : "queued", "reason",
                  "worker_lost", "attempt", (int) attempt),
        NET_WQ_ESSENTIAL);
  }
  srv_jobs_schedule(ctx);
}


static void on_taken(void* arg, redisReply* reply, int status) {
  take_t* t = arg;
  if (status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 5) {
    bool ok = true;
    for (size_t i = 0; i < 5; i++) {
      ok = ok && reply->element[i]->type == REDIS_REPLY_STRING;
    }
    if (ok) {
      start_taken(t, reply);
    }
  } else if (status == 0 && reply->type == REDIS_REPLY_NIL) {
    srv_log(&t->c->ctx->log, SRV_LOG_INFO, "cluster.entry_ended", "s:job_id",
            t->job_id, "s:entry", t->entry, NULL);
  } else {
    t->c->publish_errors++;
    srv_log(
        &t->c->ctx->log, SRV_LOG_ERROR, "cluster.take_failed", "s:job_id",
        t->job_id, "s:error",
        status == 0 && reply->type == REDIS_REPLY_ERROR ? reply->str : "lost",
        NULL);
  }
  take_done(t);
}


static void send_take(take_t* t) {
  srv_cluster_t* c = t->c;
  char key[64], prev[64], chunks[64], meta[64];
  snprintf(key, sizeof(key), "cm:job:%s", t->job_id);
  snprintf(prev, sizeof(prev), "cm:prev:%s", t->job_id);
  snprintf(chunks, sizeof(chunks), "cm:chunks:%s", t->job_id);
  snprintf(meta, sizeof(meta), "cm:chunkmeta:%s", t->job_id);
  const char* argv[] = {"EVAL", take_lua, "4",         key,     prev,
                        chunks, meta,     c->consumer, t->entry};
  if (srv_redis_command_str(c->cmd, on_taken, t, 9, argv) != 0) {
    c->publish_errors++;
    take_done(t); /* the entry stays pending: a lease takes it later */
  }
}


/* This worker's registry kept an ended run of the job (a restart with the
 * same --state-dir, or a run fenced out): the old run goes first. */
static void on_local_deleted(void* arg, srv_job_t* job, int status) {
  take_t* t = arg;
  (void) job;
  if (status == 0) {
    send_take(t);
  } else {
    take_done(t);
  }
}


void srv_cluster_take(srv_cluster_t* c, const char* entry, const char* job_id) {
  size_t id_len = strlen(job_id);
  take_t* t = calloc(1, sizeof(*t));
  if (t == NULL || strlen(entry) >= sizeof(t->entry) ||
      id_len != CORE_UUID_STR_LEN) {
    free(t);
    c->publish_errors++;
    return;
  }
  t->c = c;
  memcpy(t->entry, entry, strlen(entry) + 1);
  memcpy(t->job_id, job_id, id_len + 1);
  c->takes_pending++;
  c->jobs_taken++;
  srv_job_t* local = srv_job_find(c->ctx, job_id, id_len);
  if (local == NULL) {
    send_take(t);
  } else if (!core_job_state_is_terminal(local->state) || local->is_ending ||
             srv_job_delete(local, on_local_deleted, t) != 0) {
    /* Still running here (a claim of our own entry renews it) or busy:
     * leave the entry pending; a later claim retries. */
    c->jobs_taken--;
    take_done(t);
  }
}


void srv_cluster_take_entry(srv_cluster_t* c, const redisReply* e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
      e->element[0]->type != REDIS_REPLY_STRING ||
      e->element[1]->type != REDIS_REPLY_ARRAY) {
    return; /* XAUTOCLAIM: an entry deleted meanwhile */
  }
  const redisReply* fields = e->element[1];
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (fields->element[i]->type == REDIS_REPLY_STRING &&
        fields->element[i + 1]->type == REDIS_REPLY_STRING &&
        strcmp(fields->element[i]->str, "job_id") == 0) {
      srv_cluster_take(c, e->element[0]->str, fields->element[i + 1]->str);
      return;
    }
  }
  c->publish_errors++;
}
