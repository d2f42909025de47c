/* cluster_cancel_queued.c: a gateway ends a queued job no worker has taken
 * at once (cluster_cancel.c hands it over), as --role all does, instead of
 * leaving it `cancelling` until a worker frees a slot, which may be hours
 * on a busy cluster. The gateway builds what a worker would store for the
 * end from the job's record (a mirror job: state cancelled, the next seq,
 * the finished time): the record, the public JSON and the terminal
 * message; one script stores them, publishes the message and adds the job
 * to the finished index, only if the hash still has no owner and the job
 * is still queued. Otherwise a worker took it meanwhile and cancels it
 * itself (the cancel field was set by the first script), and the answer
 * stays 202. The stream entry stays: the worker that reads it finds the
 * job ended and acknowledges it without running it (cluster_take.c).
 * Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/job_json.h"
#include "server/jobs.h"

/* KEYS: hash, terminal key, channel, finished index. ARGV: record, public,
 * terminal message, its seq, finished time (µs), id. 1 ended, 2 ended
 * already (another gateway's cancel came first), 0 a worker has it. */
static const char k_end_queued_lua[] =
    "local pub = redis.call('HGET', KEYS[1], 'public')\n"
    "local st = pub and cjson.decode(pub).state\n"
    "if st == 'cancelled' then return 2 end\n"
    "if st ~= 'queued' or redis.call('HGET', KEYS[1], 'owner') then\n"
    "  return 0 end\n"
    "redis.call('HSET', KEYS[1], 'record', ARGV[1], 'public', ARGV[2],\n"
    "           'seq', ARGV[4])\n"
    "redis.call('SET', KEYS[2], ARGV[3])\n"
    "redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])\n"
    "redis.call('PUBLISH', KEYS[3], ARGV[3])\n"
    "return 1\n";

typedef struct {
  srv_cluster_cancel_cb cb;
  void* arg;
  char id[CORE_UUID_STR_LEN + 1];
} end_t;


static void on_ended(void* arg, redisReply* reply, int status) {
  end_t* e = arg;
  /* Not ended here (a worker took it first, or this script was lost):
   * the cancel is recorded all the same, and the worker that takes the
   * job ends it; so a 202, never an error. */
  bool ended =
      status == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 1;
  e->cb(e->arg, e->id, ended ? "cancelled" : "queued", 0);
  free(e);
}


/* The end's three texts from the record (each malloc'ed, the caller's):
 * 0 or -ENOMEM / -EINVAL (a record that does not parse). */
static int build_end(srv_ctx_t* ctx,
                     const char* rec_text,
                     uint64_t published_seq,
                     char* out[3],
                     uint64_t* seq,
                     int64_t* finished_us) {
  json_t* rec = json_loads(rec_text, 0, NULL);
  srv_job_t* job = rec != NULL ? srv_job_mirror(ctx, rec) : NULL;
  json_decref(rec);
  if (job == NULL) {
    return rec != NULL ? -ENOMEM : -EINVAL;
  }
  job->state = CORE_JOB_CANCELLED;
  job->finished_us = job->updated_us = srv_now_us();
  job->seq = (job->seq > published_seq ? job->seq : published_seq) + 1;
  *seq = job->seq;
  *finished_us = job->finished_us;
  json_t* r = srv_job_to_record(job);
  json_t* p = srv_job_to_json(job);
  net_frame_t* f = srv_job_terminal_frame(job);
  out[0] = r != NULL ? json_dumps(r, JSON_COMPACT) : NULL;
  out[1] = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
  size_t len = 0;
  const char* term =
      f != NULL ? (const char*) net_ws_frame_payload(f, &len) : NULL;
  out[2] = term != NULL ? strndup(term, len) : NULL;
  json_decref(r);
  json_decref(p);
  if (f != NULL) {
    net_frame_unref(f);
  }
  srv_job_unref(job);
  if (out[0] == NULL || out[1] == NULL || out[2] == NULL) {
    for (int i = 0; i < 3; i++) {
      free(out[i]);
    }
    return -ENOMEM;
  }
  return 0;
}


int srv_cluster_cancel_queued(srv_ctx_t* ctx,
                              const char* id,
                              const char* rec_text,
                              uint64_t published_seq,
                              srv_cluster_cancel_cb cb,
                              void* arg) {
  char* text[3] = {NULL, NULL, NULL};
  uint64_t seq = 0;
  int64_t finished_us = 0;
  int rc = build_end(ctx, rec_text, published_seq, text, &seq, &finished_us);
  end_t* e = rc == 0 ? malloc(sizeof(*e)) : NULL;
  if (e == NULL) {
    for (int i = 0; i < 3; i++) {
      free(text[i]);
    }
    return rc != 0 ? rc : -ENOMEM;
  }
  *e = (end_t){.cb = cb, .arg = arg};
  snprintf(e->id, sizeof(e->id), "%s", id);
  char key[64], term[64], ch[64], seq_s[24], fin_s[24];
  snprintf(key, sizeof(key), "cm:job:%s", e->id);
  snprintf(term, sizeof(term), "cm:term:%s", e->id);
  snprintf(ch, sizeof(ch), "cm:ev:%s", e->id);
  snprintf(seq_s, sizeof(seq_s), "%llu", (unsigned long long) seq);
  snprintf(fin_s, sizeof(fin_s), "%lld", (long long) finished_us);
  const char* argv[] = {"EVAL",
                        k_end_queued_lua,
                        "4",
                        key,
                        term,
                        ch,
                        SRV_CLUSTER_FINISHED_INDEX,
                        text[0],
                        text[1],
                        text[2],
                        seq_s,
                        fin_s,
                        e->id};
  rc = srv_redis_command_str(ctx->cluster->cmd, on_ended, e, 13, argv);
  for (int i = 0; i < 3; i++) {
    free(text[i]); /* hiredis copied them into its buffer */
  }
  if (rc != 0) {
    free(e);
  }
  return rc;
}
