/* cluster_wjob.h: a worker's taken job (internal to cluster_worker.c,
 * cluster_take.c and cluster_lease.c). A sink on the job's topic publishes
 * every frame through a script that first checks the job's `owner` field
 * in its hash (the fence: another worker that took the job over owns it
 * now, and a worker that only stalled must not publish over it). The
 * wjob is referenced by the topic (until Redis took the terminal, or the job's
 * end) and by each script in flight. Loop thread only. */
#ifndef SRV_CLUSTER_WJOB_H
#define SRV_CLUSTER_WJOB_H

#include <stdbool.h>
#include <stddef.h>

#include "server/cluster.h"
#include "server/job.h"

typedef struct srv_wjob_s {
  srv_sink_t sink;  /* first: the hub hands it back */
  core_list_t link; /* c->wjobs while on the topic */
  srv_cluster_t* c;
  srv_job_t* job;   /* a reference */
  char entry[64];   /* the stream entry: renewed, XACKed with the terminal */
  char owner[192];  /* consumer#attempt, the hash's `owner` while it is ours */
  unsigned refs;    /* topic + scripts in flight */
  bool is_attached; /* on the topic and in c->wjobs */
  bool is_fenced;   /* the hash names another owner: publish nothing more */
  struct srv_cluster_chunk_pub_s* chunks; /* its chunk table into Redis */
  struct srv_term_s* term; /* ended: the terminal script until acknowledged */
  bool is_term_in_flight;
  bool record_due; /* the next frame stores the record (a Redis reconnect) */
} srv_wjob_t;

/* The publish script's arguments (cluster_worker.c) at most. */
#define SRV_TERM_MAX_ARGS 18
typedef struct srv_term_s srv_term_t;

/* The job ended (cluster_term.c): the terminal script's
 * arguments copied and sent; the wjob stays on c->wjobs (renewed) until
 * Redis acknowledges it, or another attempt owns the job. */
void srv_wjob_end(srv_wjob_t* w,
                  int argc,
                  const char** argv,
                  const size_t* lens);

/* Sends the waiting terminal script again unless one is in flight or the
 * connection has no room (the lease tick calls it). */
void srv_wjob_term_send(srv_wjob_t* w);

void srv_term_free(srv_term_t* t);

/* Publishes the job's latest preview again (before a terminal resent: the
 * outage that lost the terminal may have lost the final preview too). */
void srv_wjob_republish_preview(srv_wjob_t* w);

/* A wjob attached to `job`'s topic and c->wjobs. NULL: out of memory. */
srv_wjob_t* srv_wjob_attach(srv_cluster_t* c,
                            srv_job_t* job,
                            const char* entry,
                            const char* owner);

/* Off the topic and the list (idempotent); drops the topic's reference and
 * a waiting terminal. */
void srv_wjob_detach(srv_wjob_t* w);

srv_wjob_t* srv_wjob_ref(srv_wjob_t* w);
void srv_wjob_unref(srv_wjob_t* w);

/* The hash named another owner: stop publishing, end the local run
 * (cancelled locally, never published). */
void srv_wjob_fence(srv_wjob_t* w);

/* The job's cancel was requested (its hash's `cancel` field): cancels the
 * local run, whose terminal message is then published as usual. */
void srv_wjob_cancel(srv_wjob_t* w);

/* A stream entry as XREADGROUP and XAUTOCLAIM return it ([id, [field,
 * value, ...]]): takes its job (srv_cluster_take). */
struct redisReply;
void srv_cluster_take_entry(srv_cluster_t* c, const struct redisReply* e);

#endif
