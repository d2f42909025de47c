/* frame.h: reference-counted, immutable output buffers. A preview is framed
 * once (WebSocket header + message) into one net_frame_t and every
 * subscriber writes from it without copying; the last unref frees it.
 * Refcounts are atomic: frames are built on worker threads and released on
 * the loop thread. */
#ifndef NET_FRAME_H
#define NET_FRAME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_WS_MAX_HEADER_LEN 14 /* 2 + 8 length + 4 mask */

enum {
  NET_WS_OP_CONT = 0x0,
  NET_WS_OP_TEXT = 0x1,
  NET_WS_OP_BINARY = 0x2,
  NET_WS_OP_CLOSE = 0x8,
  NET_WS_OP_PING = 0x9,
  NET_WS_OP_PONG = 0xa
};

typedef struct net_frame_pool_s net_frame_pool_t;

typedef struct net_frame_s {
  atomic_uint refs;
  net_frame_pool_t* pool;      /* returns here at refs 0, or NULL: free() */
  struct net_frame_s* parent;  /* a slice: data points into parent, on which
                                  this frame holds one reference */
  atomic_uint_least64_t* held; /* set by net_frame_mark_held: the counter
                                  this frame's cap is added to until freed */
  size_t cap;                  /* bytes after the header: headroom + len + 1 */
  size_t len;                  /* bytes to write, starting at data */
  uint8_t* data;   /* inside this allocation; moves back on prepend */
  size_t headroom; /* bytes free before data */
  uint8_t bytes[]; /* headroom + len + 1 spare byte */
} net_frame_t;

/* Allocates a frame of `len` bytes at data with `headroom` free bytes before
 * it (for headers written later) and one spare byte after (encoders that
 * write a trailing NUL); refs = 1. NULL on ENOMEM. */
net_frame_t* net_frame_new(size_t headroom, size_t len);

/* Copies `len` bytes into a new frame without headroom. NULL on ENOMEM. */
net_frame_t* net_frame_from_bytes(const void* bytes, size_t len);

/* Moves data back by `n` bytes (n <= headroom) and returns the new data
 * pointer, where the caller writes the n prepended bytes. */
uint8_t* net_frame_prepend(net_frame_t* f, size_t n);

/* Prepends an unmasked, final server frame header of `opcode` covering the
 * current data (needs NET_WS_MAX_HEADER_LEN headroom at most). */
void net_frame_seal_ws(net_frame_t* f, uint8_t opcode);

/* A sealed text frame holding a copy of `text`. NULL on ENOMEM. */
net_frame_t* net_frame_ws_text(const char* text, size_t len);

/* A small cache of large frames for one producer (a job's previews): a
 * frame from net_frame_pool_get() goes back to its pool when its last
 * reference drops, and is reused for the next preview instead of freshly
 * allocated (an 11 MB frame costs ~2,700 first-touch page faults, and the
 * allocator keeps what worker threads free). Thread-safe: frames are taken
 * on workers and released on the loop. */

/* Creates a pool keeping at most `max_frames` idle frames. Returns 0 or
 * -ENOMEM. */
int net_frame_pool_new(unsigned max_frames, net_frame_pool_t** out);

/* A frame of `len` bytes with `headroom` before it (as net_frame_new), from
 * the cache when one is large enough, else allocated. NULL on ENOMEM. */
net_frame_t* net_frame_pool_get(net_frame_pool_t* pool,
                                size_t headroom,
                                size_t len);

/* Another user of the pool (a render on a worker thread) takes a
 * reference; net_frame_pool_unref() drops it. Returns pool. */
net_frame_pool_t* net_frame_pool_ref(net_frame_pool_t* pool);
void net_frame_pool_unref(net_frame_pool_t* pool);

/* The owner is done: idle frames are freed now, frames still referenced
 * when they are released, and the owner's reference is dropped. NULL-safe. */
void net_frame_pool_release(net_frame_pool_t* pool);

/* A frame of `len` bytes at `offset` into `parent`'s data, sharing its
 * bytes (a reference on parent is held until the slice is freed): an HTTP
 * body served from a WebSocket frame without a copy. NULL on ENOMEM. */
net_frame_t* net_frame_slice(net_frame_t* parent, size_t offset, size_t len);

/* Counts f's bytes in `*counter` (atomically) until f is freed, once: the
 * producer calls it when it lets go of a frame that readers may still hold,
 * so *counter is the memory held only for slow readers. */
void net_frame_mark_held(net_frame_t* f, atomic_uint_least64_t* counter);

/* Takes a reference; returns f. */
net_frame_t* net_frame_ref(net_frame_t* f);

/* Drops a reference; frees at zero. NULL-safe. */
void net_frame_unref(net_frame_t* f);

/* Encodes a WebSocket frame header (FIN set) into `out`; masked when `mask`
 * is not NULL (client frames; the 4 key bytes are appended). Returns the
 * header length (2..14). */
size_t net_ws_header_encode(uint8_t* out,
                            uint8_t opcode,
                            uint64_t payload_len,
                            const uint8_t* mask);

/* The payload of a sealed (unmasked, unfragmented) WebSocket frame: a
 * pointer into the frame and its length. */
const uint8_t* net_ws_frame_payload(const net_frame_t* f, size_t* len);

/* Builds a whole unmasked close frame with `code` and an optional reason
 * (truncated to fit 125 bytes) into `out` (>= 127 bytes). Returns its
 * length. */
size_t net_ws_close_frame(uint8_t* out, uint16_t code, const char* reason);

#endif
