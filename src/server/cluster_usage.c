/* cluster_usage.c: the cluster's storage counter, cm:storage:used (bytes
 * of volumes and artifacts on the shared directory; the storage quota,
 * cluster_uploads.c). Volumes add theirs in the script that stores them
 * and take them back in the one that deletes them (cluster_volumes.c); a
 * worker adds an artifact's bytes here, inside the MULTI/EXEC that stores
 * the terminal record, and the purge takes them back (cluster_jobs.c).
 * The bytes counted for a job are kept in its hash (field storage_bytes,
 * set once: HSETNX), so a job whose terminal record is stored twice (a
 * retry, a takeover) is counted once and the purge takes back exactly what
 * was added. Loop thread only. */
#include <stdio.h>
#include <string.h>

#include "server/cluster.h"
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
  size_t lens[6];
  for (int i = 0; i < 6; i++) {
    lens[i] = strlen(argv[i]);
  }
  return srv_redis_command(c->cmd, cb, arg, 6, argv, lens);
}
