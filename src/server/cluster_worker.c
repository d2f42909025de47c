/* cluster_worker.c: a worker's side of the cluster (cluster.h). It reads
 * one stream entry at a time while a running slot is free (XREADGROUP on
 * its own connection, BLOCK 1 s), restores the job from its hash into the
 * local registry (srv_job_restore: it then runs like any queued job, with
 * the registry's engine) and registers a sink on the job's topic. The sink
 * sees every job event as the exact frame subscribers get; it publishes
 * the frame's payload on cm:ev:<id>, keeps the latest state, preview and
 * terminal message, updates the hash, and XACKs the entry once Redis has
 * the terminal record (MULTI/EXEC). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/engines.h"
#include "server/job.h"
#include "server/job_json.h"
#include "server/jobs.h"

typedef struct {
  srv_sink_t sink; /* first: the hub hands it back */
  srv_cluster_t* c;
  srv_job_t* job; /* a reference */
  char entry[64]; /* the stream entry to XACK */
} wsink_t;

typedef struct {
  srv_cluster_t* c;
  char entry[64];
} take_t;

static void lens_of(int argc, const char** argv, size_t* lens) {
  for (int i = 0; i < argc; i++) {
    lens[i] = strlen(argv[i]);
  }
}


static void on_group(void* arg, redisReply* reply, int status) {
  (void) arg;
  (void) reply;
  (void) status; /* BUSYGROUP is expected; a real failure shows in reads */
}


static void on_ignored(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
    c->publish_errors++;
  }
}


static void wsink_free(wsink_t* w) {
  srv_topic_remove(&w->job->topic, &w->sink);
  srv_job_unref(w->job);
  free(w);
}


static void on_acked(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
    c->publish_errors++;
  }
  srv_cluster_worker_pump(c);
}


static void on_terminal_stored(void* arg, redisReply* reply, int status) {
  wsink_t* w = arg;
  srv_cluster_t* c = w->c;
  bool ok = status == 0 && reply->type == REDIS_REPLY_ARRAY;
  for (size_t i = 0; ok && i < reply->elements; i++) {
    ok = reply->element[i]->type != REDIS_REPLY_ERROR;
  }
  if (ok && !c->is_stopping) {
    const char* argv[] = {"XACK", SRV_CLUSTER_STREAM, SRV_CLUSTER_GROUP,
                          w->entry};
    size_t lens[4];
    lens_of(4, argv, lens);
    if (srv_redis_command(c->cmd, on_acked, c, 4, argv, lens) != 0) {
      c->publish_errors++;
    }
  } else {
    /* Not acknowledged: the entry stays pending in the group. */
    c->publish_errors++;
    srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.terminal_not_stored",
            "s:job_id", w->job->id, NULL);
  }
  wsink_free(w);
}


/* HSET of the job's record and public JSON; `argv` has room for 6. */
static int hset_job(srv_cluster_t* c, const srv_job_t* job, const char* key) {
  json_t* rec = srv_job_to_record(job);
  json_t* pub = srv_job_to_json(job);
  char* rec_s = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
  char* pub_s = pub != NULL ? json_dumps(pub, JSON_COMPACT) : NULL;
  json_decref(rec);
  json_decref(pub);
  int rc = -ENOMEM;
  if (rec_s != NULL && pub_s != NULL) {
    const char* argv[] = {"HSET", key, "record", rec_s, "public", pub_s};
    size_t lens[6];
    lens_of(6, argv, lens);
    rc = srv_redis_command(c->cmd, on_ignored, c, 6, argv, lens);
  }
  free(rec_s);
  free(pub_s);
  return rc;
}


static void deliver(srv_sink_t* sink, net_frame_t* frame, net_wq_class_t cls) {
  wsink_t* w = (wsink_t*) sink;
  srv_cluster_t* c = w->c;
  srv_job_t* job = w->job;
  size_t len = 0;
  const char* payload = (const char*) net_ws_frame_payload(frame, &len);
  bool is_terminal = frame == job->topic.terminal;
  bool is_preview = strncmp(payload, "{\"type\":\"preview\"", 17) == 0;
  bool is_state = strncmp(payload, "{\"type\":\"state\"", 15) == 0;
  unsigned need = is_terminal ? 6 : is_state ? 3 : is_preview ? 2 : 1;
  if (c->is_stopping || srv_redis_room(c->cmd) < need) {
    /* Latest-only for previews and progress, as for a slow reader. */
    if (cls == NET_WQ_ESSENTIAL) {
      c->publish_errors++;
    } else {
      c->events_dropped++;
    }
    if (is_terminal) {
      wsink_free(w);
    }
    return;
  }
  char key[64], ch[64], latest[64];
  snprintf(key, sizeof(key), "cm:job:%s", job->id);
  snprintf(ch, sizeof(ch), "cm:ev:%s", job->id);
  snprintf(latest, sizeof(latest), "cm:%s:%s",
           is_terminal  ? "term"
           : is_preview ? "prev"
                        : "state",
           job->id);
  const char* set[] = {"SET", latest, payload};
  size_t set_l[] = {3, strlen(latest), len};
  const char* pub[] = {"PUBLISH", ch, payload};
  size_t pub_l[] = {7, strlen(ch), len};
  const char* multi[] = {"MULTI"};
  const char* exec[] = {"EXEC"};
  size_t ml[] = {5}, el[] = {4};
  if (is_terminal) {
    srv_redis_command(c->cmd, on_ignored, c, 1, multi, ml);
  }
  if (is_terminal || is_preview || is_state) {
    srv_redis_command(c->cmd, on_ignored, c, 3, set, set_l);
  }
  if (is_terminal || is_state) {
    hset_job(c, job, key);
  }
  if (is_terminal && job->artifact_bytes > 0) {
    srv_cluster_count_artifact(c, job, on_ignored, c); /* the quota's */
  }
  srv_redis_command(c->cmd, on_ignored, c, 3, pub, pub_l);
  if (is_terminal &&
      srv_redis_command(c->cmd, on_terminal_stored, w, 1, exec, el) != 0) {
    c->publish_errors++;
    wsink_free(w);
  }
}


static void gone(srv_sink_t* sink) {
  wsink_free((wsink_t*) sink);
}


static const srv_sink_ops_t wsink_ops = {deliver, gone};


static void on_record(void* arg, redisReply* reply, int status) {
  take_t* t = arg;
  srv_cluster_t* c = t->c;
  srv_ctx_t* ctx = c->ctx;
  c->takes_pending--;
  json_t* rec = status == 0 && reply->type == REDIS_REPLY_STRING
                    ? json_loadb(reply->str, reply->len, 0, NULL)
                    : NULL;
  const char* id = json_string_value(json_object_get(rec, "job_id"));
  const char* engine = json_string_value(
      json_object_get(json_object_get(rec, "params"), "engine"));
  srv_job_t* job = NULL;
  if (rec != NULL && id != NULL &&
      srv_job_restore(ctx, rec, srv_engines_for_record(ctx->engines, engine)) ==
          0) {
    job = srv_job_find(ctx, id, strlen(id));
  }
  wsink_t* w = job != NULL ? calloc(1, sizeof(*w)) : NULL;
  if (w == NULL) {
    c->publish_errors++;
    srv_log(&ctx->log, SRV_LOG_ERROR, "cluster.job_unreadable", "s:entry",
            t->entry, NULL);
  } else {
    core_list_init(&w->sink.link);
    w->sink.ops = &wsink_ops;
    w->sink.encoding = CORE_ENC_BASE64;
    w->c = c;
    w->job = srv_job_ref(job);
    memcpy(w->entry, t->entry, sizeof(w->entry));
    srv_topic_add(&job->topic, &w->sink);
    srv_log(&ctx->log, SRV_LOG_INFO, "cluster.job_taken", "s:job_id", job->id,
            "s:entry", t->entry, NULL);
    srv_jobs_schedule(ctx);
  }
  json_decref(rec);
  free(t);
  srv_cluster_worker_pump(c);
}


static void take(srv_cluster_t* c, const redisReply* entry) {
  const redisReply* fields = entry->element[1];
  const char* job_id = NULL;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (strcmp(fields->element[i]->str, "job_id") == 0) {
      job_id = fields->element[i + 1]->str;
    }
  }
  take_t* t = calloc(1, sizeof(*t));
  if (job_id == NULL || t == NULL || entry->element[0]->len >= 64) {
    free(t);
    c->publish_errors++;
    return;
  }
  t->c = c;
  memcpy(t->entry, entry->element[0]->str, entry->element[0]->len);
  char key[96];
  snprintf(key, sizeof(key), "cm:job:%.40s", job_id);
  const char* argv[] = {"HGET", key, "record"};
  size_t lens[3];
  lens_of(3, argv, lens);
  if (srv_redis_command(c->cmd, on_record, t, 3, argv, lens) != 0) {
    free(t);
    c->publish_errors++;
    return;
  }
  c->takes_pending++;
  c->jobs_taken++;
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
        take(c, e);
      }
    }
  }
  srv_cluster_worker_pump(c);
}


void srv_cluster_worker_on_connect(srv_cluster_t* c) {
  /* On this connection, so the group exists before the first read. */
  const char* argv[] = {"XGROUP",          "CREATE", SRV_CLUSTER_STREAM,
                        SRV_CLUSTER_GROUP, "0",      "MKSTREAM"};
  size_t lens[6];
  lens_of(6, argv, lens);
  srv_redis_command(c->stream, on_group, c, 6, argv, lens);
  srv_cluster_worker_pump(c);
}


void srv_cluster_worker_pump(srv_cluster_t* c) {
  srv_ctx_t* ctx = c->ctx;
  if (c->is_stopping || ctx->is_stopping || c->is_reading ||
      !srv_redis_is_connected(c->stream) ||
      ctx->running_count + ctx->queued_count + c->takes_pending >=
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
  size_t lens[11];
  lens_of(11, argv, lens);
  if (srv_redis_command(c->stream, on_read, c, 11, argv, lens) == 0) {
    c->is_reading = true;
  }
}
