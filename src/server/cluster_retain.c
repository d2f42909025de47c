/* cluster_retain.c: --retention-max-jobs and --retention-max-age for the
 * cluster's job records, as jobs.c's retire() for --role all: finished
 * jobs beyond the count (oldest first) and those finished longer ago than
 * the age are deleted. The worker's terminal script adds each ended job to
 * cm:jobs:finished (score: its finished time, µs); a gateway, once a
 * second while Redis is reachable and no retire is in flight, runs one
 * script that picks at most RETAIN_BATCH of the oldest entries due and
 * deletes what a purge deletes (cluster_jobs.c: the keys, the chunk table,
 * the index entries, the artifact's bytes in cm:storage:used), then
 * unlinks their files on the shared directory on libuv's pool. Any gateway
 * may run it; the script is atomic, so two gateways never retire the same
 * job twice, and a file already gone is fine. Jobs that ended before this
 * version have no cm:jobs:finished entry and are kept until purged. Loop
 * thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_files.h"
#include "server/cluster_rest.h"

#define RETAIN_BATCH "256" /* jobs one script deletes at most */

/* KEYS: the finished index, the jobs' index, the storage counter. ARGV:
 * the count kept (0: no bound), the finished time before which a job is
 * too old (0: no bound), the batch. Returns the ids deleted. */
static const char k_retain_script[] =
    "local keep = tonumber(ARGV[1])\n"
    "local cutoff = tonumber(ARGV[2])\n"
    "local due = 0\n"
    "if keep > 0 then\n"
    "  due = math.max(0, redis.call('ZCARD', KEYS[1]) - keep) end\n"
    "if cutoff > 0 then\n"
    "  due = math.max(due, redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. "
    "ARGV[2])) end\n"
    "due = math.min(due, tonumber(ARGV[3]))\n"
    "if due == 0 then return {} end\n"
    "local gone = {}\n"
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, due - 1)) do\n"
    "  local h = 'cm:job:' .. id\n"
    "  local pub = redis.call('HGET', h, 'public')\n"
    "  local st = pub and cjson.decode(pub).state\n"
    "  if not pub or st == 'completed' or st == 'failed' or\n"
    "      st == 'cancelled' then\n"
    "    local n = tonumber(redis.call('HGET', h, 'storage_bytes'))\n"
    "    if n then redis.call('DECRBY', KEYS[3], n) end\n"
    "    redis.call('DEL', h, 'cm:state:' .. id, 'cm:prev:' .. id,\n"
    "               'cm:term:' .. id, 'cm:chunks:' .. id,\n"
    "               'cm:chunkmeta:' .. id)\n"
    "    redis.call('ZREM', KEYS[2], id)\n"
    "    gone[#gone + 1] = id\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "end\n"
    "return gone\n";

/* The files a retired job may have left on the shared directory. */
static const char* const k_suffixes[] = {"-mask.mrc", "-mask.mrc.tmp"};


static void on_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req); /* ENOENT: never written, or swept */
  free(req);
}


static void unlink_files(srv_ctx_t* ctx, const char* id) {
  if (ctx->cfg.shared_dir[0] == '\0') {
    return; /* no artifacts on a gateway without one */
  }
  for (size_t i = 0; i < sizeof(k_suffixes) / sizeof(k_suffixes[0]); i++) {
    char path[1300];
    if (srv_cluster_job_file(ctx, id, k_suffixes[i], path, sizeof(path)) != 0) {
      continue;
    }
    uv_fs_t* req = malloc(sizeof(*req)); /* freed in on_unlinked */
    if (req != NULL && uv_fs_unlink(ctx->loop, req, path, on_unlinked) != 0) {
      free(req);
    }
  }
}


static void on_retired(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  c->retain_busy = false;
  if (status != 0 || reply->type != REDIS_REPLY_ARRAY) {
    if (status == 0 && reply->type == REDIS_REPLY_ERROR) {
      srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.retain_failed", "s:error",
              reply->str, NULL);
    }
    return; /* the next tick tries again */
  }
  for (size_t i = 0; i < reply->elements; i++) {
    const redisReply* id = reply->element[i];
    if (id->type == REDIS_REPLY_STRING) {
      unlink_files(c->ctx, id->str);
      c->ctx->metrics.jobs_retired_total++;
    }
  }
}


void srv_cluster_retain_tick(srv_ctx_t* ctx) {
  srv_cluster_t* c = ctx->cluster;
  const srv_config_t* cfg = &ctx->cfg;
  if (c == NULL || cfg->role != SRV_ROLE_GATEWAY || c->is_stopping ||
      c->retain_busy || !srv_redis_is_connected(c->cmd) ||
      (cfg->retention_max_jobs == 0 && cfg->retention_max_age_s <= 0)) {
    return;
  }
  char keep[24], cutoff[24];
  snprintf(keep, sizeof(keep), "%u", cfg->retention_max_jobs);
  long long before = cfg->retention_max_age_s > 0
                         ? (long long) srv_now_us() -
                               (long long) (cfg->retention_max_age_s * 1e6)
                         : 0;
  snprintf(cutoff, sizeof(cutoff), "%lld", before > 0 ? before : 0);
  const char* argv[] = {"EVAL",
                        k_retain_script,
                        "3",
                        SRV_CLUSTER_FINISHED_INDEX,
                        SRV_CLUSTER_JOB_INDEX,
                        SRV_CLUSTER_USED_KEY,
                        keep,
                        cutoff,
                        RETAIN_BATCH};
  if (srv_redis_command_str(c->cmd, on_retired, c, 9, argv) == 0) {
    c->retain_busy = true;
  }
}
