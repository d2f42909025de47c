/* sub_chunks.h: a subscription's side of the chunked delta previews
 * (docs/protocol.md 11): the dense masks it keeps per level, what it has
 * to say on reconnect (since, epoch), the view, and the state of the delta
 * being received. Part of cm_sub_t (sub_int.h); client thread, except
 * the masks (mask_mu) and the public calls. */
#ifndef CLIENT_SUB_CHUNKS_H
#define CLIENT_SUB_CHUNKS_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/chunk.h"
#include "core/msg.h"
#include "cryomamba/client.h"

#define SUB_EPOCH_MAX 64

typedef struct ZSTD_DCtx_s ZSTD_DCtx;

typedef struct {
  /* The masks, kept across connections, replaced by nothing: a level's is
   * allocated by the first delta that brings it and freed with the sub.
   * The client thread writes them under mask_mu; run_ev holds it around
   * on_chunks, the only place the application reads them. */
  pthread_mutex_t mask_mu;
  uint8_t* mask[CORE_CHUNK_LEVELS];
  core_shape_t mask_shape[CORE_CHUNK_LEVELS];
  int level; /* the last connection level seen, -1 none */
  /* What a reconnect asks for: the last complete delta applied. */
  uint64_t since; /* 0: none (the next connection gets a keyframe) */
  char epoch[SUB_EPOCH_MAX];
  /* The view (docs/protocol.md 11.2), sent after each `connected`. */
  bool has_view;
  int64_t view[3]; /* z, y, x; -1: not shown */
  double zoom;     /* 0: not sent */
  /* The current connection. */
  char conn_epoch[SUB_EPOCH_MAX]; /* from `connected` */
  bool sent_since;                /* it asked with since */
  bool had_delta;                 /* a delta arrived on it */
  bool is_broken;       /* a violation: dropped, the rest is ignored */
  uint64_t expect_base; /* base the next delta must carry */
  uint64_t conn_seq;    /* seq of its last delta */
  /* The delta whose chunks are arriving. */
  uint32_t pending; /* chunk messages still due */
  uint64_t seq;
  int64_t ts_us;
  bool is_keyframe, is_complete;
  int d_level, d_plane;    /* the delta's levels; d_plane -1: no view */
  cm_chunk_ref_t* changed; /* this delta's chunks so far */
  size_t changed_len, changed_cap;
  ZSTD_DCtx* dctx;  /* reused for every chunk */
  uint8_t* scratch; /* CORE_CHUNK_VOXELS, one decompressed chunk */
} sub_chunks_t;

/* Sets up `k` for a chunks subscription. Returns 0 or -ENOMEM. */
int sub_chunks_init(sub_chunks_t* k);

/* Releases what `k` holds (after init, or a zeroed one). */
void sub_chunks_free(sub_chunks_t* k);

/* The query of a new connection ("?encoding=chunks&scale=..&since=..&
 * epoch=.."), and the per-connection state reset for it. */
void sub_chunks_begin(cm_sub_t* sub, char* query, size_t len);

/* `connected`'s data.chunks checked and taken. Returns 0, or -1 when
 * it is missing or not what this library speaks (edge 32, 5 levels). */
int sub_chunks_on_connected(cm_sub_t* sub, const json_t* data);

/* Sends the view, if any, on the open connection (after `connected`). */
void sub_chunks_send_view(cm_sub_t* sub);

/* A `delta` message (any seq: an empty keyframe before the job's first
 * preview may carry 0) and a binary chunk message of the current
 * connection; any violation of the protocol is reported, and the
 * connection is dropped so that the next one starts from a keyframe. */
void sub_chunks_on_delta(cm_sub_t* sub, const core_server_msg_t* m);
void sub_chunks_on_binary(cm_sub_t* sub, const uint8_t* data, size_t len);

#endif
