/* chunks.c: a job's chunk table on the loop: dirty marks, passes begun and
 * applied, watches told. See chunks.h; the worker side is chunk_pass.c. */
#include "server/chunks.h"

#include <assert.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


srv_chunks_t* srv_chunks_new(const core_shape_t* vol,
                             atomic_uint_least64_t* held) {
  srv_chunks_t* t = calloc(1, sizeof(*t));
  if (t == NULL) {
    return NULL;
  }
  t->vol = *vol;
  t->held = held;
  core_list_init(&t->watches);
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    t->grid[l] = core_chunk_grid(vol, l);
    t->chunks[l] = calloc(t->grid[l].count, sizeof(srv_chunk_t));
    if (t->chunks[l] == NULL) {
      srv_chunks_free(t);
      return NULL;
    }
  }
  uint8_t r[8];
  if (RAND_bytes(r, sizeof(r)) != 1) {
    srv_chunks_free(t);
    return NULL;
  }
  for (int i = 0; i < 8; i++) {
    snprintf(t->epoch + 2 * i, 3, "%02x", r[i]);
  }
  return t;
}


void srv_chunk_shared_clear(srv_chunk_shared_t* d) {
  net_frame_unref(d->header);
  for (unsigned i = 0; i < d->count; i++) {
    net_frame_unref(d->frames[i]);
  }
  memset(d, 0, sizeof(*d));
}


void srv_chunks_free(srv_chunks_t* t) {
  if (t == NULL) {
    return;
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    srv_chunk_shared_clear(&t->shared[l]);
  }
  assert(!t->pass_in_flight);
  while (!core_list_is_empty(&t->watches)) {
    core_list_remove(t->watches.next);
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    if (t->chunks[l] == NULL) {
      continue;
    }
    for (uint64_t i = 0; i < t->grid[l].count; i++) {
      net_frame_t* f = t->chunks[l][i].frame;
      if (f != NULL) {
        net_frame_mark_held(f, t->held);
        net_frame_unref(f);
      }
    }
    free(t->chunks[l]);
  }
  free(t);
}


uint64_t srv_chunks_bytes(const srv_chunks_t* t) {
  uint64_t n = t->frame_bytes + sizeof(*t);
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    n += t->grid[l].count * sizeof(srv_chunk_t);
  }
  return n;
}


void srv_chunks_mark(srv_chunks_t* t, const core_box_t* b) {
  if (t->all_dirty || core_box_is_empty(b)) {
    return;
  }
  if (t->box_count == SRV_CHUNK_MAX_BOXES) {
    /* Many scattered regions: one box holding them all. */
    core_box_t u = t->boxes[0];
    for (unsigned i = 1; i < t->box_count; i++) {
      core_box_union(&u, &t->boxes[i]);
    }
    t->boxes[0] = u;
    t->box_count = 1;
  }
  t->boxes[t->box_count++] = *b;
}


void srv_chunks_mark_all(srv_chunks_t* t) {
  t->all_dirty = true;
  t->box_count = 0;
}


bool srv_chunks_wants_pass(const srv_chunks_t* t) {
  return !t->pass_in_flight && (t->all_dirty || t->box_count > 0);
}


bool srv_chunks_is_settled(const srv_chunks_t* t) {
  return !t->pass_in_flight && !t->all_dirty && t->box_count == 0;
}


static void tell_watches(srv_chunks_t* t) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &t->watches) {
    srv_chunk_watch_t* w = CORE_CONTAINER_OF(it, srv_chunk_watch_t, link);
    w->changed(w);
  }
}


void srv_chunks_set_ready(srv_chunks_t* t, uint32_t seq) {
  t->is_ready = true;
  t->seq = seq > t->seq ? seq : t->seq;
  tell_watches(t);
}


srv_chunk_pass_t* srv_chunks_pass_begin(srv_chunks_t* t) {
  if (!srv_chunks_wants_pass(t)) {
    return NULL;
  }
  srv_chunk_pass_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->t = t;
  p->all = t->all_dirty;
  p->box_count = t->box_count;
  memcpy(p->boxes, t->boxes, sizeof(p->boxes));
  t->all_dirty = false;
  t->box_count = 0;
  t->pass_in_flight = true;
  return p;
}


/* Seals a chunk message: header (with its version) in front of the zstd
 * bytes, or a header alone for a zero chunk. */
static net_frame_t* seal(const srv_chunk_update_t* u,
                         const core_chunk_grid_t* g,
                         uint32_t seq) {
  net_frame_t* f = u->zstd;
  if (f == NULL) {
    f = net_frame_new(NET_WS_MAX_HEADER_LEN + CORE_CHUNK_HEAD_LEN, 0);
    if (f == NULL) {
      return NULL;
    }
  }
  core_chunk_head_t h;
  memset(&h, 0, sizeof(h));
  h.level = u->level;
  h.flags = u->zstd == NULL ? CORE_CHUNK_FLAG_ZERO : 0;
  core_chunk_coords(g, u->index, h.c);
  h.version = seq;
  h.payload_len = (uint32_t) f->len;
  core_chunk_head_write(&h, net_frame_prepend(f, CORE_CHUNK_HEAD_LEN));
  net_frame_seal_ws(f, NET_WS_OP_BINARY);
  return f;
}


void srv_chunks_pass_end(srv_chunks_t* t, srv_chunk_pass_t* p, uint32_t seq) {
  assert(t->pass_in_flight && p->t == t);
  t->pass_in_flight = false;
  bool ran_ok = p->has_run && p->err == 0 && seq != 0;
  for (size_t i = 0; ran_ok && i < p->up_count; i++) {
    const srv_chunk_update_t* u = &p->ups[i];
    uint32_t zlen = u->zstd != NULL ? (uint32_t) u->zstd->len : 0;
    net_frame_t* f = seal(u, &t->grid[u->level], seq);
    if (f == NULL) {
      /* Out of memory sealing a zero chunk: what is applied stays, the
       * rest is looked at again by the next pass. */
      for (size_t j = i; j < p->up_count; j++) {
        net_frame_unref(p->ups[j].zstd);
      }
      srv_chunks_mark_all(t);
      break;
    }
    srv_chunk_t* ch = &t->chunks[u->level][u->index];
    if (ch->frame != NULL) {
      t->frame_bytes -= ch->frame->cap;
      net_frame_mark_held(ch->frame, t->held);
      net_frame_unref(ch->frame);
    }
    ch->frame = f;
    ch->version = seq;
    ch->zstd_len = zlen;
    t->frame_bytes += f->cap;
  }
  if (!ran_ok) {
    for (size_t i = 0; i < p->up_count; i++) {
      net_frame_unref(p->ups[i].zstd);
    }
    if (p->all) {
      srv_chunks_mark_all(t);
    } else {
      for (unsigned i = 0; i < p->box_count; i++) {
        srv_chunks_mark(t, &p->boxes[i]);
      }
    }
  }
  if (ran_ok) {
    t->seq = seq > t->seq ? seq : t->seq;
    t->is_ready = true;
    t->gen++;
  }
  free(p->ups);
  free(p);
  if (ran_ok) {
    tell_watches(t);
  }
}


uint64_t srv_chunk_pass_changed(const srv_chunk_pass_t* p) {
  return p->up_count;
}


int srv_chunk_pass_error(const srv_chunk_pass_t* p) {
  return p->err;
}
