/* cluster_chunks.h: a job's chunk table (chunks.h, docs/protocol.md §11)
 * shared through Redis. The worker keeps the table of every job it runs
 * (cluster_chunks_pub.c: a pass rides on every preview render, as for a
 * --role all job with a chunks subscriber) and, after each applied pass,
 * stores the chunks changed since what Redis last acknowledged in the hash
 * cm:chunks:<id> (field "level:index", value the chunk message, header and
 * zstd bytes, as a client gets it), the table's epoch and seq in the hash
 * cm:chunkmeta:<id>, and publishes them on cm:ev:<id> in one MULTI/EXEC
 * per batch of at most --redis-chunk-message-bytes. A batch message is
 * binary (a JSON event starts with '{'):
 *   "CMC1" | epoch (16 hex digits) | seq (u32 BE) | count (u32 BE) |
 *   count x [ length (u32 BE) | chunk message ]
 * A gateway (cluster_chunks.c) fills its mirror job's table from the hash
 * once a chunks subscriber arrives (the subscription to cm:ev:<id> is
 * already confirmed: nothing published after the read is missed), then
 * applies each batch, keeping a chunk only when its version is above the
 * held one; ws_chunks.c serves it as on --role all, with the worker's
 * epoch, so since/epoch resumes on any gateway. Loop thread only. */
#ifndef SRV_CLUSTER_CHUNKS_H
#define SRV_CLUSTER_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "server/chunks.h"
#include "server/cluster.h"
#include "server/job.h"

#define SRV_CLUSTER_CHUNK_MAGIC "CMC1"
#define SRV_CLUSTER_CHUNK_HEAD (4 + 16 + 4 + 4)

/* ---- worker (cluster_chunks_pub.c) ---- */

typedef struct srv_cluster_chunk_pub_s srv_cluster_chunk_pub_t;

/* Makes `job`'s table (borrowed job: the caller holds a reference until
 * stop), its epoch stamped with `owner`'s attempt, and publishes its
 * changes from now on, each batch only while the job's hash names `owner`
 * (the fence). NULL on ENOMEM (the job then runs without chunks in
 * Redis). */
srv_cluster_chunk_pub_t* srv_cluster_chunk_pub_start(srv_cluster_t* c,
                                                     srv_job_t* job,
                                                     const char* owner);

/* Sends what a change could not send (no room on the connection); called
 * before each event is published, so the final chunks precede the
 * terminal message. NULL is a no-op. */
void srv_cluster_chunk_pub_retry(srv_cluster_chunk_pub_t* p);

/* Stops publishing; freed once no reply is awaited. NULL is a no-op. */
void srv_cluster_chunk_pub_stop(srv_cluster_chunk_pub_t* p);

/* ---- gateway (cluster_chunks.c) ---- */

typedef struct srv_cluster_chunks_s srv_cluster_chunks_t;

/* A mirror's chunk state for `job` (a reference is taken): its table is
 * made (job->chunks), not ready, and filled from Redis. NULL on ENOMEM. */
srv_cluster_chunks_t* srv_cluster_chunks_new(srv_cluster_t* c, srv_job_t* job);

/* Reads the stored table again (after a resubscription: what was
 * published meanwhile is in the hash); subscribers wait until it is in. */
void srv_cluster_chunks_refill(srv_cluster_chunks_t* s);

/* The mirror's job ended (its terminal message applied): a table no
 * worker made (the job never ran) becomes ready as it is. */
void srv_cluster_chunks_ended(srv_cluster_chunks_t* s);

/* A published batch (a binary message on cm:ev:<id>). */
void srv_cluster_chunks_message(srv_cluster_chunks_t* s,
                                const char* payload,
                                size_t len);

/* The mirror goes; freed once no reply is awaited. NULL is a no-op. */
void srv_cluster_chunks_free(srv_cluster_chunks_t* s);

/* Gateway (cluster_sub.c): `job`'s mirror's table, its state made on the
 * first call; NULL when `job` is no current mirror or on ENOMEM. */
srv_chunks_t* srv_cluster_chunks_for_mirror(srv_job_t* job);

/* ---- epochs (cluster_epoch.c) ---- */

/* Worker: the table's epoch begins with the attempt of `owner`
 * ("consumer#attempt"), so gateways can order the tables of a job. */
void srv_cluster_epoch_stamp(srv_chunks_t* t, const char* owner);

/* <0: epoch `a` is of an earlier attempt than `b`; 0 the same; >0 later. */
int srv_cluster_epoch_cmp(const char* a, const char* b);

/* Gateway: tells the table's watches (`replaced`), then empties the table
 * (every chunk zero, seq 0, not ready) under `epoch` (16 hex digits). */
void srv_cluster_chunks_replace(srv_chunks_t* t, const char* epoch);

#endif
