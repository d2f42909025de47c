/* cluster_usage.c: the cluster's storage counter, cm:storage:used (bytes
 * of volumes and artifacts on the shared directory; the storage quota,
 * cluster_uploads.c). Volumes add theirs in the script that stores them
 * and take them back in the one that deletes them (cluster_volumes.c); a
 * worker adds an artifact's bytes here, inside the MULTI/EXEC that stores
 * the terminal record, and the purge takes them back (cluster_jobs.c).
 * The bytes counted for a job are kept in its hash (field storage_bytes,
 * set once: HSETNX), so a job whose terminal record is stored twice (a
 * retry, a takeover) is counted once and the purge takes back exactly what
 * was added. A gateway with a storage quota also reads the counter once a
 * second (srv_cluster_usage_tick), so a PATCH's quota check, which cannot
 * wait for Redis, is at most about a second behind the cluster. Loop
 * thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_files.h"
#include "server/cluster_rest.h"

/* KEYS: the job's hash, the counter; ARGV: the bytes. */
static const char k_count_script[] =
    "if redis.call('HSETNX', KEYS[1], 'storage_bytes', ARGV[1]) == 1 then\n"
    "  redis.call('INCRBY', KEYS[2], ARGV[1])\n"
    "end\n"
    "return 1\n";


int srv_cluster_count_artifact(srv_cluster_t* c,
                               const srv_job_t* job,
                               srv_redis_reply_cb cb,
                               void* arg) {
  char key[64], bytes[32];
  snprintf(key, sizeof(key), "cm:job:%s", job->id);
  snprintf(bytes, sizeof(bytes), "%llu",
           (unsigned long long) job->artifact_bytes);
  const char* argv[] = {"EVAL", k_count_script,       "2",
                        key,    SRV_CLUSTER_USED_KEY, bytes};
  return srv_redis_command_str(c->cmd, cb, arg, 6, argv);
}


static void on_used(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  c->usage_busy = false;
  if (status == 0 &&
      (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_NIL)) {
    long long n = reply->type == REDIS_REPLY_STRING ? atoll(reply->str) : 0;
    c->shared_used_bytes = n > 0 ? (uint64_t) n : 0;
  }
}


void srv_cluster_usage_tick(srv_ctx_t* ctx) {
  srv_cluster_t* c = ctx->cluster;
  if (c == NULL || ctx->cfg.role != SRV_ROLE_GATEWAY ||
      ctx->cfg.storage_quota_bytes == 0 || c->is_stopping || c->usage_busy ||
      !srv_redis_is_connected(c->cmd)) {
    return;
  }
  const char* argv[] = {"GET", SRV_CLUSTER_USED_KEY};
  size_t lens[] = {3, strlen(SRV_CLUSTER_USED_KEY)};
  if (srv_redis_command(c->cmd, on_used, c, 2, argv, lens) == 0) {
    c->usage_busy = true;
  }
}
