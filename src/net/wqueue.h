/* wqueue.h: one connection's output queue. Holds references to shared frames
 * (never copies them) and writes them in order: straight away with
 * uv_try_write when the queue is idle (the usual case: no item, no callback),
 * else with uv_write, one batch in flight at a time. Latest-only classes keep
 * at most one queued (not yet started) frame each: a newer preview replaces a
 * stale one, so a slow reader finishes the frame in flight and then skips to
 * the newest. Control bytes (pong, ping, close) are copied into a small private
 * buffer and written only between frames. Loop thread only. */
#ifndef NET_WQUEUE_H
#define NET_WQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "core/list.h"
#include "net/frame.h"

typedef enum {
  NET_WQ_ESSENTIAL,       /* never dropped: responses, terminal events */
  NET_WQ_LATEST_PREVIEW,  /* a newer preview replaces a queued one */
  NET_WQ_LATEST_PROGRESS, /* a newer progress replaces a queued one */
} net_wq_class_t;

#define NET_WQ_BATCH 8       /* frames per uv_write */
#define NET_WQ_CTRL_MAX 4096 /* bytes of control frames buffered */
#define NET_WQ_MAX_ITEMS 64  /* queued frames before the owner pauses input */
#define NET_WQ_MAX_BUF (1u << 30) /* bytes per uv_buf_t (32-bit lengths) */

typedef struct net_wqueue_s net_wqueue_t;

/* Called when a write fails (status < 0, e.g. EPIPE) or, with status 0, when
 * everything queued has been written and a drain was requested. */
typedef void (*net_wq_cb)(net_wqueue_t* wq, int status);

struct net_wqueue_s {
  uv_stream_t* stream; /* borrowed; owned by the connection */
  core_list_t items;   /* net_wq_item (queued, not started) */
  size_t item_count;
  uv_write_t req; /* the one write in flight */
  net_frame_t* in_flight[NET_WQ_BATCH];
  unsigned in_flight_count;
  uint8_t* ctrl; /* control bytes waiting; malloc'd lazily */
  size_t ctrl_len;
  size_t ctrl_sealed;      /* leading ctrl bytes that form whole frames: only
                              these are written, so a frame whose payload has
                              not arrived yet never reaches the wire */
  uint8_t* ctrl_in_flight; /* swapped in while written */
  bool is_writing;
  bool want_drain_cb;
  bool is_closed; /* no more writes: the stream is closing */
  uint64_t bytes_written;
  uint64_t progress_ms;    /* uv_now() when the queue last went idle or had a
                              write complete: how long a peer has stalled */
  uint64_t frames_dropped; /* stale latest-only frames skipped */
  net_wq_cb cb;
  void* data; /* the owner */
};

/* Prepares an empty queue writing to `stream`. */
void net_wq_init(net_wqueue_t* wq,
                 uv_stream_t* stream,
                 net_wq_cb cb,
                 void* data);

/* Writes `frame` at once if the queue is idle and the socket takes it all;
 * otherwise queues it (a reference is taken; the caller keeps its own) and
 * starts writing. Returns 0, UV_ENOMEM, UV_EPIPE (queue closed) or the
 * socket's error (the peer is gone). */
int net_wq_push(net_wqueue_t* wq, net_frame_t* frame, net_wq_class_t cls);

/* Pushes `n` (<= NET_WQ_PUSH_ALL_MAX) frames as essential, in order, with
 * one write of them all when the queue is idle (a chunks delta: its text
 * and its chunk messages), queuing what the socket did not take. Returns
 * as net_wq_push. */
#define NET_WQ_PUSH_ALL_MAX 64
int net_wq_push_all(net_wqueue_t* wq, net_frame_t* const* frames, size_t n);

/* Copies `len` control bytes to be written at the next frame boundary.
 * `more` says the control frame is not complete yet (its payload follows in
 * the next call): its bytes are held back until a call with more == false
 * seals it. Returns 0, UV_ENOBUFS when NET_WQ_CTRL_MAX would be exceeded,
 * UV_ENOMEM or UV_EPIPE. */
int net_wq_push_ctrl(net_wqueue_t* wq,
                     const uint8_t* bytes,
                     size_t len,
                     bool more);

/* Drops control bytes pushed with `more` that no later push sealed. */
void net_wq_drop_open_ctrl(net_wqueue_t* wq);

/* Bytes of control frames the queue can still take. */
size_t net_wq_ctrl_room(const net_wqueue_t* wq);

/* Drops every queued frame not yet started (the batch in flight finishes);
 * control bytes stay, so a close frame queued after this still goes out. */
void net_wq_discard_pending(net_wqueue_t* wq);

/* Returns true when nothing is queued or in flight; otherwise arranges for
 * cb(wq, 0) once the queue empties and returns false. */
bool net_wq_drain(net_wqueue_t* wq);

/* True when the owner should stop reading (too much queued for this peer). */
bool net_wq_is_full(const net_wqueue_t* wq);

/* Bytes of the frames queued or in flight that only this queue still
 * references: what closing it would free. */
uint64_t net_wq_unique_bytes(const net_wqueue_t* wq);

/* Releases everything queued and refuses further pushes; call when the
 * stream starts closing. Frames in flight are released by their write
 * callback, which libuv runs (cancelled) before the stream's close cb. */
void net_wq_close(net_wqueue_t* wq);

/* Frees the control buffers; call from the stream's close callback. */
void net_wq_free_buffers(net_wqueue_t* wq);

#endif
