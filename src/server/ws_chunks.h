/* ws_chunks.h: one WebSocket subscriber of the chunks encoding
 * (docs/protocol.md §11): what it has received (the version of each chunk
 * of its level, and of its plane level while a view is set), its view, and
 * the rounds that bring it to the job's chunk table: composed only when
 * its write queue has written the previous one, at most
 * SRV_CHUNK_ROUND_CHUNKS chunks or SRV_CHUNK_ROUND_BYTES each, the view's
 * chunks first. The terminal message waits for the round that completes
 * the final mask. Memory: the bookkeeping arrays, never preview bytes.
 * Loop thread only; owned by the WebSocket connection (ws_conn.c). */
#ifndef SRV_WS_CHUNKS_H
#define SRV_WS_CHUNKS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/chunk_view.h"
#include "server/chunks.h"
#include "server/conn.h"
#include "server/job.h"

#define SRV_CHUNK_ROUND_CHUNKS 48u
#define SRV_CHUNK_ROUND_BYTES (4u << 20)

typedef struct srv_chunk_sub_s {
  srv_chunk_watch_t watch; /* on the table's watches while started */
  srv_conn_t* conn;        /* borrowed: the sub is part of its state */
  srv_job_t* job;          /* borrowed: the connection holds a reference */
  srv_chunks_t* t;         /* job->chunks */
  unsigned level;          /* the connection's level */
  uint32_t* sent[CORE_CHUNK_LEVELS]; /* version last sent per chunk */
  core_view_t view;
  bool has_view;
  unsigned plane_level;
  bool is_started; /* the first delta went out */
  bool want_since; /* reconnect: since/epoch given */
  uint32_t since;
  char since_epoch[17];
  uint32_t base;         /* seq of the last complete delta */
  bool is_clean;         /* its last round was complete (or a resume): it needs
                            exactly the chunks changed since base */
  net_frame_t* terminal; /* a reference while it waits for the last round */
  bool is_stopped;
  /* A gateway replaced the job's table (another attempt's epoch): the sub
   * is stopped, then this runs (the connection closes it); set after
   * start. */
  void (*on_replaced)(struct srv_chunk_sub_s* s);
} srv_chunk_sub_t;

/* Starts a subscriber of `job` at `level` on `conn` (since: a reconnect's
 * since/epoch, or NULL epoch); the table is made or caught up and the first
 * round goes out once it is ready. Returns 0 or -ENOMEM. */
int srv_chunk_sub_start(srv_chunk_sub_t* s,
                        srv_conn_t* conn,
                        srv_job_t* job,
                        unsigned level,
                        const char* since_epoch,
                        uint32_t since);

/* Stops it and frees its bookkeeping; idempotent. */
void srv_chunk_sub_stop(srv_chunk_sub_t* s);

/* Sends the next round if the connection has written the previous one
 * (else asks for a drain: call again from on_drain). */
void srv_chunk_sub_pump(srv_chunk_sub_t* s);

/* The job's terminal message: sent after the round that completes the
 * final mask (a reference is taken). */
void srv_chunk_sub_terminal(srv_chunk_sub_t* s, net_frame_t* terminal);

/* Replaces the view (a parsed view message). Returns 0 or -ENOMEM. */
int srv_chunk_sub_view(srv_chunk_sub_t* s, const core_view_t* v);

/* The `connected` message's data.chunks object. */
json_t* srv_chunk_sub_connected(const srv_chunk_sub_t* s);

#endif
