/* cluster.h: gateways and workers over Redis (--role gateway|worker).
 * A gateway stores each new job's record in the hash cm:job:<id> and adds
 * its id to the stream cm:jobs in one MULTI/EXEC, and reads jobs back from
 * their hashes; a worker (cluster_worker.c) reads the stream through the
 * consumer group "workers", runs each job with the registry's engines and
 * publishes its events on cm:ev:<id>, keeping the latest state, preview
 * and terminal message in cm:state:<id>, cm:prev:<id> and cm:term:<id>.
 * A worker renews the entries of the jobs it runs and takes over those of
 * lost workers (cluster_lease.c, cluster_take.c); only the attempt named
 * by the hash's `owner` may publish (the fence). A gateway's cancel is a
 * field of the hash its worker polls (cluster_cancel.c).
 * docs/operations.md, "Cluster". Loop thread only. */
#ifndef SRV_CLUSTER_H
#define SRV_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/list.h"
#include "server/ctx.h"
#include "server/redis_conn.h"

#define SRV_CLUSTER_STREAM "cm:jobs"
#define SRV_CLUSTER_GROUP "workers"
/* Sorted set of job ids by creation time (gateway lists, cluster_list.c). */
#define SRV_CLUSTER_JOB_INDEX "cm:jobs:index"
/* Ended jobs by finished time (µs), for retention (cluster_retain.c). */
#define SRV_CLUSTER_FINISHED_INDEX "cm:jobs:finished"

typedef struct srv_cluster_s {
  srv_ctx_t* ctx;
  srv_redis_url_t url;
  srv_redis_t* cmd;       /* commands: records, events, acknowledgements */
  srv_redis_t* stream;    /* worker: the blocking XREADGROUP, alone */
  srv_redis_t* sub;       /* gateway: SUBSCRIBE cm:ev:<id> (cluster_sub.c) */
  core_list_t mirrors;    /* gateway: jobs with local subscribers */
  uint64_t stale_dropped; /* gateway: published frames already sent */
  uint64_t chunk_swaps;   /* gateway: tables replaced by a later attempt's */
  uint64_t encodes;       /* gateway: previews decoded for raw/zstd */
  uint64_t encode_us;     /* gateway: pool time those took */
  uint64_t encode_errors; /* gateway: of those, not decodable or no memory */
  uint64_t chunk_batches; /* gateway: chunk batches applied to mirrors */
  uint64_t chunk_pages;   /* gateway: HSCAN pages read into mirror tables */
  char consumer[128];     /* worker: its name in the group */
  bool is_reading;        /* worker: an XREADGROUP is in flight */
  unsigned takes_pending; /* worker: entries read, record not yet fetched */
  unsigned terms_pending; /* worker: ended jobs Redis has not acknowledged */
  bool is_stopping;
  bool queued_oom;   /* gateway: a queued command was refused: OOM */
  int redis_durable; /* 1: AOF fsync'ed per write, 0: not, -1: unknown */
  core_list_t wjobs; /* worker: jobs taken (srv_wjob_t, cluster_wjob.h) */
  struct srv_lease_s*
      lease;               /* worker: renewal and takeover (cluster_lease.c) */
  uint64_t takeovers;      /* worker: entries of lost workers taken */
  uint64_t fenced;         /* worker: jobs another worker took from it */
  uint64_t jobs_taken;     /* worker: stream entries read */
  uint64_t events_dropped; /* worker: previews not published (in flight) */
  uint64_t publish_errors; /* worker: event commands refused or failed */
  uint64_t shared_used_bytes; /* gateway: cm:storage:used as last read */
  bool usage_busy;            /* gateway: a read of it is in flight */
  bool sweep_busy;            /* gateway: a sweep (cluster_sweep.c) runs */
  uint64_t sweep_due_ms;      /* gateway: the next sweep, loop time */
  uint64_t sweep_cursor;      /* gateway: entries the sweeps examined */
  uint64_t orphans_removed;   /* gateway: files the sweeps removed */
  bool retain_busy;           /* gateway: a retire (cluster_retain.c) runs */
} srv_cluster_t;

/* Starts the role's connections (they connect and reconnect by
 * themselves). 0, or -1 with a sentence in `why` (a bad --redis). */
int srv_cluster_start(srv_ctx_t* ctx, char* why, size_t why_len);

/* Closes the connections (pending callbacks get -ECANCELED). */
void srv_cluster_stop(srv_ctx_t* ctx);

/* Gateway: deletes the finished jobs past --retention-max-jobs and
 * --retention-max-age, a batch at a time (cluster_retain.c). Once a
 * second from the loop's housekeeping. */
void srv_cluster_retain_tick(srv_ctx_t* ctx);

/* An outcome: 0 once Redis acknowledged, else negative. */
typedef void (*srv_cluster_cb)(void* arg, int status);

/* Gateway: stores `job`'s record and queues its id in one transaction. 0
 * (cb will run), or -ENOTCONN (Redis is down), -EBUSY (too many commands in
 * flight), -ENOMEM: cb will not run. */
int srv_cluster_submit(srv_ctx_t* ctx,
                       const srv_job_t* job,
                       srv_cluster_cb cb,
                       void* arg);

/* A job's public JSON (owned by the callee: incref to keep), or NULL with
 * status -ENOENT (no such job) or another negative error. */
typedef void (*srv_cluster_get_cb)(void* arg, json_t* job, int status);

/* Gateway: reads a job from its hash. 0 (cb will run) or as for submit. */
int srv_cluster_get(srv_ctx_t* ctx,
                    const char* id,
                    srv_cluster_get_cb cb,
                    void* arg);

/* Appends the cluster's Prometheus lines to `out` via `emit`. */
void srv_cluster_metrics(const srv_ctx_t* ctx,
                         void (*emit)(void* out,
                                      const char* name,
                                      const char* help,
                                      unsigned long long value),
                         void* out);

/* Gateway (cluster_sub.c): a WebSocket subscriber waiting for, then
 * holding, its job's mirror. The first of a job makes the gateway SUBSCRIBE
 * cm:ev:<id> and then read the stored latest preview and terminal message;
 * the last one's leave UNSUBSCRIBEs. */
typedef struct srv_cluster_join_s srv_cluster_join_t;
struct srv_cluster_join_s {
  core_list_t link; /* the mirror's waiters until ready */
  void* mirror;     /* cluster_sub.c's; NULL when not joined */
  /* The mirror job (topic holding the latest preview and terminal; borrow:
   * ref to keep) or NULL with status -ENOENT (no such job) or -EIO. */
  void (*ready)(srv_cluster_join_t* j, srv_job_t* job, int status);
};

/* Joins job `id` (a valid uuid): ready runs later, once. 0, or -ENOTCONN
 * (Redis down) / -ENOMEM: ready will not run. */
int srv_cluster_join(srv_ctx_t* ctx, const char* id, srv_cluster_join_t* j);

/* Leaves (a no-op when not joined); after ready or before it. */
void srv_cluster_leave(srv_cluster_join_t* j);

/* Gateway: the subscriber connection's callbacks (cluster_sub.c). */
void srv_cluster_sub_on_connect(void* arg);
void srv_cluster_sub_on_subscribed(void* arg,
                                   const char* unused,
                                   size_t unused_len,
                                   const char* channel,
                                   size_t len);
void srv_cluster_sub_on_unsubscribed(void* arg,
                                     const char* unused,
                                     size_t unused_len,
                                     const char* channel,
                                     size_t len);
void srv_cluster_sub_on_message(void* arg,
                                const char* channel,
                                size_t channel_len,
                                const char* payload,
                                size_t payload_len);

/* Worker (cluster_worker.c): starts reading the stream once connected; and
 * the group is created (idempotent) by both roles at each connect. */
/* The status of a reply that is not the one expected: -ENOSPC when Redis
 * refused a write for want of memory (an OOM error, also inside a script
 * or a transaction's replies), else -EIO. */
int srv_cluster_error_status(const struct redisReply* reply);

void srv_cluster_worker_on_connect(srv_cluster_t* c);
/* The command connection (re)connected: running jobs store their records
 * again with their next frame, then a read of the stream. */
void srv_cluster_worker_on_cmd_connect(srv_cluster_t* c);
void srv_cluster_worker_pump(srv_cluster_t* c);

/* Worker (cluster_take.c): takes stream entry `entry` of job `job_id`
 * (read, or claimed from a lost worker): makes this worker the job's owner
 * in its hash (a new attempt), restores and runs it, or fails it when its
 * previous worker was lost and --on-worker-lost/--max-attempts say so. */
void srv_cluster_take(srv_cluster_t* c, const char* entry, const char* job_id);

/* Worker (cluster_lease.c): the timer that renews the entries of the jobs
 * this worker runs and claims those of lost workers (XAUTOCLAIM). 0 or
 * -ENOMEM; stop closes it. */
int srv_cluster_lease_start(srv_cluster_t* c);
void srv_cluster_lease_stop(srv_cluster_t* c);

/* Gateway (cluster_cancel.c): records a cancel request in the job's hash.
 * cb's status: 0 (requested; `state` the job's state then), -ENOENT,
 * -EALREADY (`state` the terminal one), or another negative error. */
typedef void (*srv_cluster_cancel_cb)(void* arg,
                                      const char* id,
                                      const char* state,
                                      int status);
int srv_cluster_cancel(srv_ctx_t* ctx,
                       const char* id,
                       srv_cluster_cancel_cb cb,
                       void* arg);

/* The job is queued and no worker has taken it (its cancel is recorded):
 * stores its end as a worker would, from `rec_text`, with a seq above
 * `published_seq`, unless a worker takes it first (cluster_cancel_queued.c).
 * cb: state "cancelled" (ended here) or "queued" (the worker ends it),
 * status 0. Returns 0 or a negative error (cb is then not called). */
int srv_cluster_cancel_queued(srv_ctx_t* ctx,
                              const char* id,
                              const char* rec_text,
                              uint64_t published_seq,
                              srv_cluster_cancel_cb cb,
                              void* arg);

#endif
