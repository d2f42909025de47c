/* cluster.c: the cluster roles' connections and the gateway's job records
 * in Redis. See cluster.h. */
#include "server/cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "server/job.h"
#include "server/job_json.h"

typedef struct {
  srv_cluster_cb cb;
  void* arg;
  srv_cluster_t* c;
} submit_t;

typedef struct {
  srv_cluster_get_cb cb;
  void* arg;
} get_t;


static void on_group(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  /* BUSYGROUP: another process made it first, as expected. */
  if (status == 0 && reply->type == REDIS_REPLY_ERROR &&
      strncmp(reply->str, "BUSYGROUP", 9) != 0) {
    srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.group_failed", "s:error",
            reply->str, NULL);
  }
}


/* The group reads the stream from its start, so jobs queued before any
 * worker ever ran are not skipped. */
static void make_group(srv_cluster_t* c) {
  const char* argv[] = {"XGROUP",          "CREATE", SRV_CLUSTER_STREAM,
                        SRV_CLUSTER_GROUP, "0",      "MKSTREAM"};
  srv_redis_command_str(c->cmd, on_group, c, 6, argv);
}


/* Acknowledged means what Redis acknowledged: say so when Redis would lose
 * it on a crash (no AOF, or an AOF not fsync'ed before each reply). */
static void on_persistence(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  if (status != 0 || reply->type != REDIS_REPLY_ARRAY) {
    return; /* CONFIG may be renamed away: nothing is known */
  }
  bool aof = false, always = false;
  for (size_t i = 0; i + 1 < reply->elements; i += 2) {
    const redisReply* k = reply->element[i];
    const redisReply* v = reply->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING) {
      aof = aof ||
            (strcmp(k->str, "appendonly") == 0 && strcmp(v->str, "yes") == 0);
      always = always || (strcmp(k->str, "appendfsync") == 0 &&
                          strcmp(v->str, "always") == 0);
    }
  }
  c->redis_durable = aof && always ? 1 : 0;
  if (!c->redis_durable) {
    srv_log(&c->ctx->log, SRV_LOG_WARN, "redis.not_durable", "s:appendonly",
            aof ? "yes" : "no", "s:appendfsync", always ? "always" : "other",
            "s:hint",
            "a Redis crash loses acknowledged jobs: appendonly yes, "
            "appendfsync always",
            NULL);
  }
}


static void on_cmd_connect(void* arg) {
  srv_cluster_t* c = arg;
  const char* argv[] = {"CONFIG", "GET", "append*"};
  size_t lens[] = {6, 3, 7};
  srv_redis_command(c->cmd, on_persistence, c, 3, argv, lens);
  make_group(c);
  if (c->ctx->cfg.role == SRV_ROLE_WORKER) {
    srv_cluster_worker_on_cmd_connect(c);
  }
}


static void on_stream_connect(void* arg) {
  srv_cluster_t* c = arg;
  c->is_reading = false; /* a read lost with the connection */
  srv_cluster_worker_on_connect(c);
}


int srv_cluster_start(srv_ctx_t* ctx, char* why, size_t why_len) {
  srv_cluster_t* c = calloc(1, sizeof(*c));
  if (c == NULL) {
    snprintf(why, why_len, "out of memory");
    return -1;
  }
  c->ctx = ctx;
  c->redis_durable = -1;
  const char* pass_file = ctx->cfg.redis_password_file;
  if (srv_redis_parse_url(ctx->cfg.redis_url, &c->url, why, why_len) != 0 ||
      (pass_file[0] != '\0' &&
       srv_redis_read_password_file(&c->url, pass_file, why, why_len) != 0) ||
      srv_redis_check_auth(&c->url, why, why_len) != 0 ||
      srv_redis_resolve(&c->url, why, why_len) != 0) {
    free(c);
    return -1;
  }
  char host[64] = "host";
  gethostname(host, sizeof(host) - 1);
  snprintf(c->consumer, sizeof(c->consumer), "%s:%ld", host, (long) getpid());
  srv_redis_opts_t cmd = {.name = "cmd",
                          .max_in_flight = ctx->cfg.redis_max_in_flight,
                          .timeout_ms = ctx->cfg.redis_timeout_ms,
                          .on_connect = on_cmd_connect,
                          .arg = c};
  c->cmd = srv_redis_new(ctx->loop, &c->url, &cmd, &ctx->log);
  if (c->cmd != NULL && ctx->cfg.role == SRV_ROLE_WORKER) {
    srv_redis_opts_t st = {.name = "stream",
                           .max_in_flight = 2, /* XGROUP, XREADGROUP */
                           /* XREADGROUP blocks up to 1 s by design */
                           .timeout_ms = ctx->cfg.redis_timeout_ms + 1000,
                           .on_connect = on_stream_connect,
                           .arg = c};
    c->stream = srv_redis_new(ctx->loop, &c->url, &st, &ctx->log);
  }
  core_list_init(&c->mirrors);
  core_list_init(&c->wjobs);
  if (c->cmd != NULL && ctx->cfg.role == SRV_ROLE_GATEWAY) {
    srv_redis_opts_t sb = {.name = "sub",
                           .max_in_flight = 1,
                           .is_subscriber = true,
                           .on_connect = srv_cluster_sub_on_connect,
                           .on_message = srv_cluster_sub_on_message,
                           .on_subscribed = srv_cluster_sub_on_subscribed,
                           .on_unsubscribed = srv_cluster_sub_on_unsubscribed,
                           .arg = c};
    c->sub = srv_redis_new(ctx->loop, &c->url, &sb, &ctx->log);
  }
  if (c->cmd == NULL ||
      (ctx->cfg.role == SRV_ROLE_WORKER &&
       (c->stream == NULL || srv_cluster_lease_start(c) != 0)) ||
      (ctx->cfg.role == SRV_ROLE_GATEWAY && c->sub == NULL)) {
    srv_redis_close(c->cmd);
    srv_redis_close(c->stream);
    free(c);
    snprintf(why, why_len, "out of memory");
    return -1;
  }
  ctx->cluster = c;
  return 0;
}


void srv_cluster_stop(srv_ctx_t* ctx) {
  srv_cluster_t* c = ctx->cluster;
  if (c == NULL || c->is_stopping) {
    return;
  }
  c->is_stopping = true;
  srv_cluster_lease_stop(c);
  srv_redis_close(c->stream);
  srv_redis_close(c->sub);
  srv_redis_close(c->cmd);
  c->stream = c->sub = c->cmd = NULL;
}


/* ---- gateway: records ---- */

/* Redis refusing writes for memory (maxmemory, noeviction) says OOM in the
 * queued commands' errors, and EXECABORT for the transaction. */
static bool is_oom(const redisReply* r) {
  if (r->type == REDIS_REPLY_ERROR) {
    return strncmp(r->str, "OOM", 3) == 0 || strstr(r->str, "OOM") != NULL;
  }
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
    if (is_oom(r->element[i])) {
      return true;
    }
  }
  return false;
}


int srv_cluster_error_status(const redisReply* reply) {
  return is_oom(reply) ? -ENOSPC : -EIO;
}


static void on_exec(void* arg, redisReply* reply, int status) {
  submit_t* s = arg;
  bool queued_oom = s->c->queued_oom;
  s->c->queued_oom = false;
  if (status == 0 &&
      (is_oom(reply) || (reply->type == REDIS_REPLY_ERROR && queued_oom))) {
    status = -ENOSPC;
  } else if (status == 0 &&
             (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
              reply->element[0]->type == REDIS_REPLY_ERROR ||
              reply->element[1]->type == REDIS_REPLY_ERROR ||
              reply->element[2]->type == REDIS_REPLY_ERROR)) {
    status = -EIO; /* aborted (EXECABORT, nil) or a command failed */
  }
  s->cb(s->arg, status);
  free(s);
}


/* Replies come in order on the one connection, so the flag a transaction's
 * queued commands set is read by its own EXEC's reply. */
static void on_queued(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  /* EXEC's reply says what happened; EXECABORT does not say why. */
  if (status == 0 && is_oom(reply)) {
    c->queued_oom = true;
  }
}


int srv_cluster_submit(srv_ctx_t* ctx,
                       const srv_job_t* job,
                       srv_cluster_cb cb,
                       void* arg) {
  srv_cluster_t* c = ctx->cluster;
  if (srv_redis_room(c->cmd) < 5) {
    return srv_redis_is_connected(c->cmd) ? -EBUSY : -ENOTCONN;
  }
  json_t* rec = srv_job_to_record(job);
  json_t* pub = srv_job_to_json(job);
  char* rec_s = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
  char* pub_s = pub != NULL ? json_dumps(pub, JSON_COMPACT) : NULL;
  json_decref(rec);
  json_decref(pub);
  submit_t* s = malloc(sizeof(*s));
  if (rec_s == NULL || pub_s == NULL || s == NULL) {
    free(rec_s);
    free(pub_s);
    free(s);
    return -ENOMEM;
  }
  *s = (submit_t){cb, arg, c};
  char key[64];
  snprintf(key, sizeof(key), "cm:job:%s", job->id);
  const char* multi[] = {"MULTI"};
  const char* hset[] = {"HSET", key, "record", rec_s, "public", pub_s};
  const char* xadd[] = {"XADD", SRV_CLUSTER_STREAM, "*", "job_id", job->id};
  /* The list's index (cluster_list.c), in the same transaction. */
  char score[32];
  snprintf(score, sizeof(score), "%lld", (long long) job->created_us);
  const char* zadd[] = {"ZADD", SRV_CLUSTER_JOB_INDEX, score, job->id};
  size_t zl[] = {4, strlen(SRV_CLUSTER_JOB_INDEX), strlen(score),
                 strlen(job->id)};
  const char* exec[] = {"EXEC"};
  size_t ml[] = {5};
  size_t hl[] = {4, strlen(key), 6, strlen(rec_s), 6, strlen(pub_s)};
  size_t xl[] = {4, strlen(SRV_CLUSTER_STREAM), 1, 6, strlen(job->id)};
  size_t el[] = {4};
  /* Room was checked: all four go out, in order, or the connection is
   * lost and EXEC's callback says so. */
  int rc = srv_redis_command(c->cmd, on_queued, c, 1, multi, ml);
  if (rc == 0) {
    srv_redis_command(c->cmd, on_queued, c, 6, hset, hl);
    srv_redis_command(c->cmd, on_queued, c, 5, xadd, xl);
    srv_redis_command(c->cmd, on_queued, c, 4, zadd, zl);
    rc = srv_redis_command(c->cmd, on_exec, s, 1, exec, el);
  }
  free(rec_s);
  free(pub_s);
  if (rc != 0) {
    free(s);
  }
  return rc;
}


static void on_hget(void* arg, redisReply* reply, int status) {
  get_t* g = arg;
  json_t* job = NULL;
  if (status == 0 && reply->type == REDIS_REPLY_NIL) {
    status = -ENOENT;
  } else if (status == 0 && reply->type == REDIS_REPLY_STRING) {
    job = json_loadb(reply->str, reply->len, 0, NULL);
    status = job != NULL ? 0 : -EIO;
  } else if (status == 0) {
    status = -EIO;
  }
  g->cb(g->arg, job, status);
  json_decref(job);
  free(g);
}


int srv_cluster_get(srv_ctx_t* ctx,
                    const char* id,
                    srv_cluster_get_cb cb,
                    void* arg) {
  srv_cluster_t* c = ctx->cluster;
  get_t* g = malloc(sizeof(*g));
  if (g == NULL) {
    return -ENOMEM;
  }
  *g = (get_t){cb, arg};
  char key[64];
  snprintf(key, sizeof(key), "cm:job:%.40s", id);
  const char* argv[] = {"HGET", key, "public"};
  size_t lens[] = {4, strlen(key), 6};
  int rc = srv_redis_command(c->cmd, on_hget, g, 3, argv, lens);
  if (rc != 0) {
    free(g);
  }
  return rc;
}


void srv_cluster_metrics(const srv_ctx_t* ctx,
                         void (*emit)(void* out,
                                      const char* name,
                                      const char* help,
                                      unsigned long long value),
                         void* out) {
  const srv_cluster_t* c = ctx->cluster;
  if (c == NULL) {
    return;
  }
  emit(out, "cryomamba_redis_connected",
       "1 while the Redis command connection is up",
       srv_redis_is_connected(c->cmd) ? 1 : 0);
  emit(out, "cryomamba_redis_connects_total",
       "Redis command connections made (reconnects included)",
       srv_redis_connects_total(c->cmd));
  if (c->redis_durable >= 0) {
    emit(out, "cryomamba_redis_durable",
         "1 if Redis fsyncs its AOF before each reply (appendfsync always)",
         (unsigned long long) c->redis_durable);
  }
  emit(out, "cryomamba_redis_timeouts_total",
       "Redis connections dropped: a command went unanswered too long",
       srv_redis_timeouts_total(c->cmd) + srv_redis_timeouts_total(c->stream));
  emit(out, "cryomamba_redis_in_flight",
       "Redis commands awaiting their replies", srv_redis_in_flight(c->cmd));
  if (c->sub != NULL || c->ctx->cfg.role == SRV_ROLE_GATEWAY) {
    emit(out, "cryomamba_redis_sub_connected",
         "1 while the gateway's subscriber connection is up",
         srv_redis_is_connected(c->sub) ? 1 : 0);
    emit(out, "cryomamba_cluster_storage_used_bytes",
         "bytes of the cluster's volumes and artifacts, as last read",
         c->shared_used_bytes);
    emit(out, "cryomamba_cluster_orphans_removed_total",
         "orphaned files the sweeps removed from the shared directory",
         c->orphans_removed);
    emit(out, "cryomamba_cluster_stale_frames_dropped_total",
         "published frames not fanned out: their seq was already sent",
         c->stale_dropped);
    emit(out, "cryomamba_cluster_chunk_tables_replaced_total",
         "mirror chunk tables replaced by a later attempt's (takeover)",
         c->chunk_swaps);
    emit(out, "cryomamba_cluster_encodes_total",
         "previews decoded from base64 (and compressed) for raw/zstd "
         "subscribers, once per gateway",
         c->encodes);
    emit(out, "cryomamba_cluster_encode_microseconds_total",
         "worker-pool time of those decodes and compressions", c->encode_us);
    emit(out, "cryomamba_cluster_encode_errors_total",
         "of those, previews not decodable or out of memory", c->encode_errors);
    emit(out, "cryomamba_cluster_chunk_batches_total",
         "chunk batches applied to this gateway's mirror tables",
         c->chunk_batches);
    emit(out, "cryomamba_cluster_chunk_pages_total",
         "HSCAN pages of chunk tables read into this gateway's mirrors",
         c->chunk_pages);
  }
  if (c->stream != NULL) {
    emit(out, "cryomamba_redis_stream_connected",
         "1 while the worker's stream connection is up",
         srv_redis_is_connected(c->stream) ? 1 : 0);
    emit(out, "cryomamba_cluster_jobs_taken_total",
         "jobs this worker read from the stream", c->jobs_taken);
    emit(out, "cryomamba_cluster_previews_dropped_total",
         "previews not published: too many commands in flight",
         c->events_dropped);
    emit(out, "cryomamba_cluster_publish_errors_total",
         "job events Redis refused or lost", c->publish_errors);
    emit(out, "cryomamba_cluster_takeovers_total",
         "jobs this worker took from a lost worker", c->takeovers);
    emit(out, "cryomamba_cluster_fenced_total",
         "jobs another worker took over from this one", c->fenced);
    emit(out, "cryomamba_cluster_terminals_pending",
         "ended jobs whose terminal record Redis has not acknowledged",
         c->terms_pending);
  }
}
