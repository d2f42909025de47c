/* frame.c: shared output buffers and WebSocket frame headers. See frame.h.
 * Any thread; only the refcount is shared state. */
#include "net/frame.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>


net_frame_t* net_frame_new(size_t headroom, size_t len) {
  net_frame_t* f = malloc(sizeof(*f) + headroom + len + 1);
  if (f == NULL) {
    return NULL;
  }
  atomic_init(&f->refs, 1);
  f->pool = NULL;
  f->parent = NULL;
  f->held = NULL;
  f->cap = headroom + len + 1;
  f->headroom = headroom;
  f->data = f->bytes + headroom;
  f->len = len;
  return f;
}


net_frame_t* net_frame_from_bytes(const void* bytes, size_t len) {
  net_frame_t* f = net_frame_new(0, len);
  if (f != NULL && len > 0) {
    memcpy(f->data, bytes, len);
  }
  return f;
}


uint8_t* net_frame_prepend(net_frame_t* f, size_t n) {
  assert(n <= f->headroom);
  f->headroom -= n;
  f->data -= n;
  f->len += n;
  return f->data;
}


void net_frame_seal_ws(net_frame_t* f, uint8_t opcode) {
  uint8_t hdr[NET_WS_MAX_HEADER_LEN];
  size_t hdr_len = net_ws_header_encode(hdr, opcode, f->len, NULL);
  memcpy(net_frame_prepend(f, hdr_len), hdr, hdr_len);
}


net_frame_t* net_frame_ws_text(const char* text, size_t len) {
  net_frame_t* f = net_frame_new(NET_WS_MAX_HEADER_LEN, len);
  if (f == NULL) {
    return NULL;
  }
  memcpy(f->data, text, len);
  net_frame_seal_ws(f, NET_WS_OP_TEXT);
  return f;
}


net_frame_t* net_frame_ref(net_frame_t* f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}


static void pool_put(net_frame_pool_t* pool, net_frame_t* f);


void net_frame_unref(net_frame_t* f) {
  if (f == NULL) {
    return;
  }
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
    if (f->held != NULL) {
      atomic_fetch_sub_explicit(f->held, f->cap, memory_order_relaxed);
      f->held = NULL;
    }
    if (f->parent != NULL) {
      net_frame_unref(f->parent);
      free(f);
    } else if (f->pool != NULL) {
      pool_put(f->pool, f);
    } else {
      free(f);
    }
  }
}


net_frame_t* net_frame_slice(net_frame_t* parent, size_t offset, size_t len) {
  assert(offset + len <= parent->len);
  net_frame_t* f = malloc(sizeof(*f));
  if (f == NULL) {
    return NULL;
  }
  atomic_init(&f->refs, 1);
  f->pool = NULL;
  f->parent = net_frame_ref(parent);
  f->held = NULL;
  f->cap = 0; /* the bytes are the parent's */
  f->headroom = 0;
  f->data = parent->data + offset;
  f->len = len;
  return f;
}


void net_frame_mark_held(net_frame_t* f, atomic_uint_least64_t* counter) {
  /* Only the producer marks, before it drops its reference, so no other
   * thread frees f meanwhile. Slices count their parent. */
  while (f->parent != NULL) {
    f = f->parent;
  }
  if (f->held == NULL) {
    f->held = counter;
    atomic_fetch_add_explicit(counter, f->cap, memory_order_relaxed);
  }
}


/* ---- pools ---- */

struct net_frame_pool_s {
  pthread_mutex_t lock;
  unsigned refs; /* the owner (until release) + every frame out; locked */
  bool is_released;
  unsigned count, max;
  net_frame_t* idle[]; /* `count` idle frames */
};


int net_frame_pool_new(unsigned max_frames, net_frame_pool_t** out) {
  net_frame_pool_t* pool =
      calloc(1, sizeof(*pool) + max_frames * sizeof(net_frame_t*));
  if (pool == NULL) {
    return -ENOMEM;
  }
  pthread_mutex_init(&pool->lock, NULL);
  pool->refs = 1;
  pool->max = max_frames;
  *out = pool;
  return 0;
}


/* Drops one reference, with the lock held; frees the pool at zero (the
 * lock is released either way). */
static void pool_unref_locked(net_frame_pool_t* pool) {
  bool is_last = --pool->refs == 0;
  pthread_mutex_unlock(&pool->lock);
  if (is_last) {
    pthread_mutex_destroy(&pool->lock);
    free(pool);
  }
}


net_frame_t* net_frame_pool_get(net_frame_pool_t* pool,
                                size_t headroom,
                                size_t len) {
  size_t need = headroom + len + 1;
  net_frame_t* f = NULL;
  pthread_mutex_lock(&pool->lock);
  /* The smallest idle frame that fits, so a small request never takes the
   * buffer a larger one (the base64 text of the same preview) needs. */
  unsigned best = pool->count;
  for (unsigned i = 0; i < pool->count; i++) {
    if (pool->idle[i]->cap >= need &&
        (best == pool->count || pool->idle[i]->cap < pool->idle[best]->cap)) {
      best = i;
    }
  }
  if (best < pool->count) {
    f = pool->idle[best];
    pool->idle[best] = pool->idle[--pool->count];
  }
  if (f == NULL) {
    pool->refs++; /* a new frame's; an idle one still holds its own */
  }
  pthread_mutex_unlock(&pool->lock);
  if (f == NULL) {
    f = malloc(sizeof(*f) + need);
    if (f == NULL) {
      pthread_mutex_lock(&pool->lock);
      pool_unref_locked(pool);
      return NULL;
    }
    f->cap = need;
  }
  atomic_init(&f->refs, 1);
  f->pool = pool;
  f->parent = NULL;
  f->held = NULL;
  f->headroom = headroom;
  f->data = f->bytes + headroom;
  f->len = len;
  return f;
}


static void pool_put(net_frame_pool_t* pool, net_frame_t* f) {
  pthread_mutex_lock(&pool->lock);
  if (!pool->is_released && pool->count < pool->max) {
    pool->idle[pool->count++] = f; /* keeps its pool reference */
    pthread_mutex_unlock(&pool->lock);
    return;
  }
  free(f);
  pool_unref_locked(pool);
}


net_frame_pool_t* net_frame_pool_ref(net_frame_pool_t* pool) {
  pthread_mutex_lock(&pool->lock);
  pool->refs++;
  pthread_mutex_unlock(&pool->lock);
  return pool;
}


void net_frame_pool_unref(net_frame_pool_t* pool) {
  if (pool == NULL) {
    return;
  }
  pthread_mutex_lock(&pool->lock);
  pool_unref_locked(pool);
}


void net_frame_pool_release(net_frame_pool_t* pool) {
  if (pool == NULL) {
    return;
  }
  pthread_mutex_lock(&pool->lock);
  pool->is_released = true;
  while (pool->count > 0) {
    free(pool->idle[--pool->count]);
    pool->refs--; /* never the last: the owner's is still held */
  }
  pool_unref_locked(pool);
}


size_t net_ws_header_encode(uint8_t* out,
                            uint8_t opcode,
                            uint64_t payload_len,
                            const uint8_t* mask) {
  size_t n = 0;
  uint8_t mask_bit = mask != NULL ? 0x80 : 0;
  out[n++] = (uint8_t) (0x80 | (opcode & 0x0f));
  if (payload_len < 126) {
    out[n++] = (uint8_t) (mask_bit | payload_len);
  } else if (payload_len <= 0xffff) {
    out[n++] = (uint8_t) (mask_bit | 126);
    out[n++] = (uint8_t) (payload_len >> 8);
    out[n++] = (uint8_t) payload_len;
  } else {
    out[n++] = (uint8_t) (mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      out[n++] = (uint8_t) (payload_len >> shift);
    }
  }
  if (mask != NULL) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}


size_t net_ws_close_frame(uint8_t* out, uint16_t code, const char* reason) {
  size_t reason_len = reason != NULL ? strlen(reason) : 0;
  if (reason_len > 123) {
    reason_len = 123; /* control payloads are at most 125 bytes */
  }
  out[0] = 0x80 | NET_WS_OP_CLOSE;
  out[1] = (uint8_t) (2 + reason_len);
  out[2] = (uint8_t) (code >> 8);
  out[3] = (uint8_t) code;
  if (reason_len > 0) {
    memcpy(out + 4, reason, reason_len);
  }
  return 4 + reason_len;
}


const uint8_t* net_ws_frame_payload(const net_frame_t* f, size_t* len) {
  uint8_t len7 = f->data[1] & 0x7f;
  size_t hdr = len7 < 126 ? 2 : (len7 == 126 ? 4 : 10);
  *len = f->len - hdr;
  return f->data + hdr;
}
