/* cluster_lease.c: a worker's lease on the stream entries of the jobs it
 * runs, and the takeover of a lost worker's. A pending entry's idle time
 * is its lease: every tick (a third of --worker-lease-ms, at most 1 s) a
 * script renews each job's entry (XCLAIM ... 0 JUSTID resets its idle
 * time) if the hash still names this worker's attempt as the owner, and
 * says whether a cancel was requested (the gateway's DELETE sets the
 * hash's `cancel` field: polling it here costs nothing more than the
 * renewal and needs no subscriber connection, and bounds a cancel's delay
 * by the tick). A renewal that finds another owner fences the local run.
 * On the same tick, while a running slot is free, XAUTOCLAIM takes entries
 * idle longer than the lease (their worker died, or stalled past the
 * lease) and cluster_take.c runs their jobs again or fails them.
 * Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_wjob.h"
#include "server/jobs.h"

/* KEYS: hash; ARGV: owner, consumer, entry. 0: another owner; 1: renewed;
 * 2: renewed, and a cancel is requested. No owner at all: as for publish
 * (cluster_worker.c), Redis lost its data; not fenced. */
static const char renew_lua[] =
    "local o = redis.call('HGET', KEYS[1], 'owner')\n"
    "if o and o ~= ARGV[1] then return 0 end\n"
    "redis.pcall('XCLAIM', '" SRV_CLUSTER_STREAM "', '" SRV_CLUSTER_GROUP
    "', ARGV[2], 0, ARGV[3], 'JUSTID')\n"
    "if redis.call('HEXISTS', KEYS[1], 'cancel') == 1 then return 2 end\n"
    "return 1\n";

typedef struct srv_lease_s {
  uv_timer_t timer;
  srv_cluster_t* c;
  bool is_claiming; /* an XAUTOCLAIM is in flight */
  /* Where the next XAUTOCLAIM scans from: it examines at most 10 x COUNT
   * pending entries per call, so restarting at 0-0 each time would never
   * reach a lost entry behind many live ones. */
  char cursor[64];
  uint64_t connects;    /* the command connection's, at the last tick */
  uint64_t grace_until; /* no claim before (loop ms): see in_grace */
} srv_lease_t;


/* After a reconnect (not the first connect) Redis may have been away
 * longer than the lease: every live worker's entries look idle then, and
 * a claim would take (and run again) jobs whose workers only wait for
 * their own reconnect (at most SRV_REDIS_BACKOFF_MAX_MS) to renew them or
 * store their ends. So no claim for a lease plus that backoff. */
static bool in_grace(srv_lease_t* l) {
  srv_cluster_t* c = l->c;
  uint64_t now = uv_now(c->ctx->loop);
  uint64_t connects = srv_redis_connects_total(c->cmd);
  if (connects != l->connects) {
    if (l->connects != 0) {
      l->grace_until =
          now + c->ctx->cfg.worker_lease_ms + SRV_REDIS_BACKOFF_MAX_MS;
    }
    l->connects = connects;
  }
  return now < l->grace_until;
}


static void on_renewed(void* arg, redisReply* reply, int status) {
  srv_wjob_t* w = arg;
  if (status == 0 && reply->type == REDIS_REPLY_INTEGER) {
    if (reply->integer == 0) {
      srv_wjob_fence(w);
    } else if (reply->integer == 2) {
      srv_wjob_cancel(w);
    }
  }
  /* Redis lost or refusing: the next tick renews again; if the outage
   * outlasts the lease another worker may take the job (then fenced). */
  srv_wjob_unref(w);
}


static void renew(srv_wjob_t* w) {
  srv_cluster_t* c = w->c;
  char key[64];
  snprintf(key, sizeof(key), "cm:job:%s", w->job->id);
  const char* argv[] = {"EVAL",   renew_lua,   "1",     key,
                        w->owner, c->consumer, w->entry};
  if (srv_redis_command_str(c->cmd, on_renewed, srv_wjob_ref(w), 7, argv) !=
      0) {
    srv_wjob_unref(w);
  }
}


/* `arg` is the cluster, which outlives its connections' callbacks (the
 * lease is freed at stop, before them). */
static void on_claimed(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  if (c->lease != NULL) {
    c->lease->is_claiming = false;
  }
  if (status != 0 || c->is_stopping) {
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.claim_failed", "s:error",
            reply->str, NULL);
    return;
  }
  /* [next-cursor, [[id, [field, value, ...]], ...], [deleted ids]] */
  if (c->lease != NULL && reply->type == REDIS_REPLY_ARRAY &&
      reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_STRING &&
      reply->element[0]->len < sizeof(c->lease->cursor)) {
    memcpy(c->lease->cursor, reply->element[0]->str,
           reply->element[0]->len + 1); /* 0-0 once the scan wrapped */
  }
  const redisReply* entries =
      reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
              reply->element[1]->type == REDIS_REPLY_ARRAY
          ? reply->element[1]
          : NULL;
  for (size_t i = 0; entries != NULL && i < entries->elements; i++) {
    srv_log(&c->ctx->log, SRV_LOG_WARN, "cluster.entry_claimed", "s:entry",
            entries->element[i]->type == REDIS_REPLY_ARRAY &&
                    entries->element[i]->elements >= 1 &&
                    entries->element[i]->element[0]->type == REDIS_REPLY_STRING
                ? entries->element[i]->element[0]->str
                : "?",
            NULL);
    srv_cluster_take_entry(c, entries->element[i]);
  }
}


static void claim(srv_lease_t* l, unsigned free_slots) {
  srv_cluster_t* c = l->c;
  char idle[24], count[24];
  snprintf(idle, sizeof(idle), "%u", c->ctx->cfg.worker_lease_ms);
  snprintf(count, sizeof(count), "%u", free_slots);
  const char* argv[] = {
      "XAUTOCLAIM", SRV_CLUSTER_STREAM, SRV_CLUSTER_GROUP, c->consumer,
      idle,         l->cursor,          "COUNT",           count};
  if (srv_redis_command_str(c->cmd, on_claimed, c, 8, argv) == 0) {
    l->is_claiming = true;
  }
}


static void on_tick(uv_timer_t* timer) {
  srv_lease_t* l = timer->data;
  srv_cluster_t* c = l->c;
  srv_ctx_t* ctx = c->ctx;
  if (c->is_stopping || ctx->is_stopping || !srv_redis_is_connected(c->cmd)) {
    return;
  }
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &c->wjobs) {
    srv_wjob_t* w = CORE_CONTAINER_OF(it, srv_wjob_t, link);
    if (!w->is_fenced) {
      renew(w);
      srv_wjob_term_send(w); /* an end Redis has not acknowledged yet */
    }
  }
  unsigned busy = ctx->running_count + ctx->queued_count + c->takes_pending +
                  c->terms_pending;
  if (!l->is_claiming && busy < ctx->cfg.max_running && !in_grace(l)) {
    claim(l, ctx->cfg.max_running - busy);
  }
}


int srv_cluster_lease_start(srv_cluster_t* c) {
  srv_lease_t* l = calloc(1, sizeof(*l));
  if (l == NULL || uv_timer_init(c->ctx->loop, &l->timer) != 0) {
    free(l);
    return -ENOMEM;
  }
  l->c = c;
  l->timer.data = l;
  snprintf(l->cursor, sizeof(l->cursor), "0-0");
  uint64_t period = c->ctx->cfg.worker_lease_ms / 3;
  if (period > 1000) {
    period = 1000;
  }
  uv_timer_start(&l->timer, on_tick, period, period);
  c->lease = l;
  return 0;
}


static void on_closed(uv_handle_t* h) {
  free(h->data);
}


void srv_cluster_lease_stop(srv_cluster_t* c) {
  /* The jobs this worker runs stay pending in the group (taken over after
   * the lease); their sinks go now, or job and sink would hold each other
   * past the registry's end. */
  while (!core_list_is_empty(&c->wjobs)) {
    srv_wjob_detach(CORE_CONTAINER_OF(c->wjobs.next, srv_wjob_t, link));
  }
  srv_lease_t* l = c->lease;
  if (l == NULL) {
    return;
  }
  c->lease = NULL;
  uv_timer_stop(&l->timer);
  uv_close((uv_handle_t*) &l->timer, on_closed);
}
