/* chunks.h: a job's chunk table (docs/protocol.md §11): for every level of
 * the label pyramid and every chunk, its latest version and its chunk
 * message (a sealed WebSocket binary frame, shared by every subscriber; the
 * table owns one reference). A table is made when a job's first chunks
 * subscriber arrives and lives as long as the job.
 *
 * Regions the engine wrote are marked dirty; a *pass* (at most one in
 * flight) takes the dirty set, runs on the worker pool inside a preview
 * render (srv_chunk_pass_run: reads the full-resolution boxes it needs
 * through a callback, cuts them into chunks, compresses each non-zero one,
 * keeps only those whose bytes changed, folds changed chunks up the
 * pyramid), and is applied on the loop with the seq of the preview it
 * belongs to. While a pass runs the worker reads the table's frames and the
 * loop does not change them; applying is the only change. Subscribers
 * (ws_chunks.c) are told after each apply. Loop thread only, except
 * srv_chunk_pass_run. */
#ifndef SRV_CHUNKS_H
#define SRV_CHUNKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/chunk.h"
#include "core/list.h"
#include "net/frame.h"

#define SRV_CHUNK_MAX_BOXES 32 /* dirty boxes kept apart, then merged */

typedef struct {
  net_frame_t* frame; /* the chunk message; NULL: never sent (zero) */
  uint32_t version;   /* 0 until its content first changed */
  uint32_t zstd_len;  /* bytes of zstd after the header; 0: zero chunk */
} srv_chunk_t;

typedef struct srv_chunk_pass_s srv_chunk_pass_t;

/* The last delta composed for subscribers of one level that were complete
 * at `base` and have no view: every such subscriber needs exactly these
 * chunks to reach `seq`, so it is composed once (ws_chunks.c) and sent to
 * all of them. The table owns the references; seq != the table's seq
 * makes it stale. */
#define SRV_CHUNK_SHARED_MAX 48u
typedef struct {
  bool is_valid;
  uint32_t base;
  uint32_t seq;
  uint64_t gen;        /* the table's generation it was composed at */
  net_frame_t* header; /* the delta message */
  unsigned count;
  net_frame_t* frames[SRV_CHUNK_SHARED_MAX];
  uint64_t index[SRV_CHUNK_SHARED_MAX];
  uint32_t version[SRV_CHUNK_SHARED_MAX];
} srv_chunk_shared_t;

/* Lets go of a shared delta's references. */
void srv_chunk_shared_clear(srv_chunk_shared_t* d);

/* A chunks subscriber: told after each apply (ws_chunks.c). */
typedef struct srv_chunk_watch_s srv_chunk_watch_t;
struct srv_chunk_watch_s {
  core_list_t link;
  void (*changed)(srv_chunk_watch_t* w);
  /* A gateway's table was emptied for another attempt's (cluster_epoch.c):
   * the watch must leave the list now. NULL: it stays (told at the next
   * change as usual). */
  void (*replaced)(srv_chunk_watch_t* w);
};

typedef struct srv_chunks_s {
  core_shape_t vol;
  core_chunk_grid_t grid[CORE_CHUNK_LEVELS];
  srv_chunk_t* chunks[CORE_CHUNK_LEVELS];
  uint32_t seq;   /* the seq of the last apply (0: none yet) */
  uint64_t gen;   /* applies so far: a shared delta of another is stale */
  bool is_ready;  /* the table is the mask as of seq (first pass landed) */
  char epoch[17]; /* 16 hex digits, new for every table */
  bool all_dirty; /* the next pass examines every chunk */
  core_box_t boxes[SRV_CHUNK_MAX_BOXES]; /* full-resolution dirty boxes */
  unsigned box_count;
  bool pass_in_flight;
  uint64_t frame_bytes; /* bytes of the chunk messages held */
  core_list_t watches;  /* srv_chunk_watch_t */
  srv_chunk_shared_t shared[CORE_CHUNK_LEVELS]; /* per level, see above */
  atomic_uint_least64_t* held; /* the server's slow-reader counter */
} srv_chunks_t;

/* What a pass carries between the loop (chunks.c) and its worker
 * (chunk_pass.c); only those two files touch its fields. */
/* One changed chunk: its new zstd bytes in a frame with headroom for the
 * chunk header and the WebSocket header (NULL: the chunk became zero). */
typedef struct {
  uint8_t level;
  uint64_t index;
  net_frame_t* zstd;
} srv_chunk_update_t;

struct srv_chunk_pass_s {
  const srv_chunks_t* t; /* read only while the pass runs */
  bool all;
  core_box_t boxes[SRV_CHUNK_MAX_BOXES];
  unsigned box_count;
  bool has_run;
  int err;                 /* 0 or a negative errno */
  srv_chunk_update_t* ups; /* owned; frames owned until applied */
  size_t up_count;
  size_t up_cap;
};

/* A table for a volume of shape `vol`, every chunk zero, nothing dirty, not
 * ready. NULL on ENOMEM. */
srv_chunks_t* srv_chunks_new(const core_shape_t* vol,
                             atomic_uint_least64_t* held);

/* Frees the table (no pass may be in flight); watches are unlinked. */
void srv_chunks_free(srv_chunks_t* t);

/* Bytes the table holds: its chunk messages and its bookkeeping. */
uint64_t srv_chunks_bytes(const srv_chunks_t* t);

/* Marks full-resolution box `b` (within the volume) / everything dirty. */
void srv_chunks_mark(srv_chunks_t* t, const core_box_t* b);
void srv_chunks_mark_all(srv_chunks_t* t);

/* True when something is dirty and no pass is in flight. */
bool srv_chunks_wants_pass(const srv_chunks_t* t);

/* True when the table is the engine's last word: no pass in flight and
 * nothing dirty. */
bool srv_chunks_is_settled(const srv_chunks_t* t);

/* Declares the table ready without a pass (a job whose mask is still all
 * zero: queued, or ended without one) at `seq`; watches are told. */
void srv_chunks_set_ready(srv_chunks_t* t, uint32_t seq);

/* Takes the dirty set into a new pass (the table is clean after). NULL
 * when srv_chunks_wants_pass() is false or on ENOMEM. */
srv_chunk_pass_t* srv_chunks_pass_begin(srv_chunks_t* t);

/* Fills `out` (b's extents, C order) with the full-resolution voxels of box
 * `b`. Runs on the pass's worker. Returns 0 or a negative errno. */
typedef int (*srv_chunk_read_fn)(void* ctx, const core_box_t* b, uint8_t* out);

/* The pass's work, on a worker thread. */
void srv_chunk_pass_run(srv_chunk_pass_t* p, srv_chunk_read_fn read, void* ctx);

/* Applies a pass that ran (its changed chunks get version `seq`) and tells
 * the watches; a pass that failed, or did not run (`seq` 0), marks its
 * boxes dirty again. Frees the pass. */
void srv_chunks_pass_end(srv_chunks_t* t, srv_chunk_pass_t* p, uint32_t seq);

/* Chunks changed by the pass after it ran (for metrics), and its error. */
uint64_t srv_chunk_pass_changed(const srv_chunk_pass_t* p);
int srv_chunk_pass_error(const srv_chunk_pass_t* p);

#endif
