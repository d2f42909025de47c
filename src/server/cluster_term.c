/* cluster_term.c: a worker's terminal record until Redis has it. The end
 * of a job is acknowledged only by the publish script's reply (its keys,
 * record, message and XACK, one step); until then the wjob stays on
 * c->wjobs and on the topic (so the worker's preview cache does not evict
 * the job's chunk table and latest preview, which a resend needs; the
 * sink takes nothing more), with a copy of the script's arguments: its
 * lease is renewed on every tick (so no other worker takes the entry and
 * runs the job again) and the script is sent again on the ticks while no
 * send is in flight, its chunk table first (a new connection sends the
 * whole table again). A resend after a reply lost is harmless: the same
 * HSET/SET, a PUBLISH of a seq gateways already fanned out (dropped), an
 * XACK of nothing. Each waiting terminal holds a running slot (pump and
 * claim count them), so at most --max-running wait. Loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_chunks.h"
#include "server/cluster_rest.h"
#include "server/cluster_wjob.h"

struct srv_term_s {
  int argc;
  char* argv[SRV_TERM_MAX_ARGS];
  size_t lens[SRV_TERM_MAX_ARGS];
  unsigned sends; /* scripts sent so far */
  bool is_retry;  /* a send failed or could not go: Redis was away */
};


void srv_term_free(srv_term_t* t) {
  if (t == NULL) {
    return;
  }
  for (int i = 0; i < t->argc; i++) {
    free(t->argv[i]);
  }
  free(t);
}


static srv_term_t* term_new(int argc, const char** argv, const size_t* lens) {
  srv_term_t* t = calloc(1, sizeof(*t));
  if (t == NULL || argc > SRV_TERM_MAX_ARGS) {
    free(t);
    return NULL;
  }
  for (int i = 0; i < argc; i++) {
    t->argv[i] = malloc(lens[i] + 1);
    if (t->argv[i] == NULL) {
      srv_term_free(t);
      return NULL;
    }
    memcpy(t->argv[i], argv[i], lens[i]);
    t->argv[i][lens[i]] = '\0';
    t->lens[i] = lens[i];
    t->argc = i + 1;
  }
  return t;
}


static void on_term_published(void* arg, redisReply* reply, int status) {
  srv_wjob_t* w = arg;
  srv_cluster_t* c = w->c;
  w->is_term_in_flight = false;
  if (w->term != NULL) {
    if (status == 0 && reply->type == REDIS_REPLY_INTEGER) {
      if (w->term->is_retry) {
        srv_log(&c->ctx->log, SRV_LOG_INFO, "cluster.terminal_stored",
                "s:job_id", w->job->id, "i:sends", (int64_t) w->term->sends,
                NULL);
      }
      if (reply->integer == 0) {
        srv_wjob_fence(w); /* another attempt owns the job's end */
      }
      srv_wjob_detach(w); /* done: Redis has it (or it is not ours) */
    } else {
      c->publish_errors++;
      if (!w->term->is_retry) {
        w->term->is_retry = true;
        srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.terminal_not_stored",
                "s:job_id", w->job->id, "s:error",
                status == 0 && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                : "lost",
                NULL);
      }
    }
  }
  srv_wjob_unref(w);
  srv_cluster_worker_pump(c);
}


static void on_counted(void* arg, redisReply* reply, int status) {
  srv_cluster_t* c = arg;
  if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
    c->publish_errors++; /* resent with the terminal if that fails too */
  }
}


void srv_wjob_term_send(srv_wjob_t* w) {
  srv_cluster_t* c = w->c;
  srv_term_t* t = w->term;
  if (t == NULL || w->is_term_in_flight) {
    return;
  }
  if (!srv_redis_is_connected(c->cmd) || srv_redis_room(c->cmd) < 1) {
    if (!t->is_retry) {
      t->is_retry = true;
      srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.terminal_not_stored",
              "s:job_id", w->job->id, "s:error", "redis unavailable", NULL);
    }
    return; /* the next lease tick */
  }
  srv_cluster_chunk_pub_retry(w->chunks); /* the final chunks first */
  if (t->is_retry) {
    srv_wjob_republish_preview(w); /* then the final preview, if lost */
  }
  if (w->term == NULL || srv_redis_room(c->cmd) < 1) {
    return; /* fenced meanwhile, or no room left: the next tick */
  }
  if (w->job->artifact_bytes > 0 && srv_redis_room(c->cmd) >= 2) {
    /* The quota's count, before the terminal: once per job (HSETNX). */
    srv_cluster_count_artifact(c, w->job, on_counted, c);
  }
  if (srv_redis_command(c->cmd, on_term_published, srv_wjob_ref(w), t->argc,
                        (const char**) t->argv, t->lens) != 0) {
    srv_wjob_unref(w);
    return;
  }
  t->sends++;
  w->is_term_in_flight = true;
}


void srv_wjob_end(srv_wjob_t* w,
                  int argc,
                  const char** argv,
                  const size_t* lens) {
  srv_cluster_t* c = w->c;
  w->term = term_new(argc, argv, lens);
  if (w->term == NULL) {
    /* Out of memory: as before, the entry stays pending for a lease. */
    c->publish_errors++;
    srv_log(&c->ctx->log, SRV_LOG_ERROR, "cluster.terminal_not_stored",
            "s:job_id", w->job->id, "s:error", "out of memory", NULL);
    srv_wjob_detach(w);
    return;
  }
  c->terms_pending++;
  srv_wjob_term_send(w);
}
