/* addr_limit.c: per-address connection counts. See addr_limit.h. */
#include "server/addr_limit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>


static uint64_t hash(const char* s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s != '\0'; s++) {
    h = (h ^ (uint8_t) *s) * 1099511628211ull;
  }
  return h;
}


/* The slot holding `addr`, or NULL. */
static srv_addr_slot_t* find(srv_addr_limit_t* t, const char* addr) {
  if (t->cap == 0) {
    return NULL;
  }
  for (size_t i = hash(addr) & (t->cap - 1), n = 0; n < t->cap;
       i = (i + 1) & (t->cap - 1), n++) {
    srv_addr_slot_t* s = &t->slots[i];
    if (s->count == 0 && !s->is_tombstone) {
      return NULL;
    }
    if (s->count > 0 && strcmp(s->addr, addr) == 0) {
      return s;
    }
  }
  return NULL;
}


static int grow(srv_addr_limit_t* t) {
  size_t cap = t->cap == 0 ? 64 : t->cap * 2;
  srv_addr_slot_t* slots = calloc(cap, sizeof(*slots));
  if (slots == NULL) {
    return -1;
  }
  srv_addr_limit_t bigger = {slots, cap, 0};
  for (size_t i = 0; i < t->cap; i++) {
    srv_addr_slot_t* s = &t->slots[i];
    if (s->count > 0) {
      size_t j = hash(s->addr) & (cap - 1);
      while (slots[j].count > 0) {
        j = (j + 1) & (cap - 1);
      }
      slots[j] = *s;
      bigger.used++;
    }
  }
  free(t->slots);
  *t = bigger;
  return 0;
}


bool srv_addr_limit_acquire(srv_addr_limit_t* t,
                            const char* addr,
                            unsigned max) {
  if (max == 0) {
    return true;
  }
  srv_addr_slot_t* s = find(t, addr);
  if (s != NULL) {
    if (s->count >= max) {
      return false;
    }
    s->count++;
    return true;
  }
  /* Keep the load (tombstones included) under 1/2. */
  if ((t->used + 1) * 2 > t->cap && grow(t) != 0) {
    return true; /* out of memory: do not refuse clients over bookkeeping */
  }
  size_t i = hash(addr) & (t->cap - 1);
  while (t->slots[i].count > 0) {
    i = (i + 1) & (t->cap - 1);
  }
  if (!t->slots[i].is_tombstone) {
    t->used++;
  }
  strncpy(t->slots[i].addr, addr, sizeof(t->slots[i].addr) - 1);
  t->slots[i].addr[sizeof(t->slots[i].addr) - 1] = '\0';
  t->slots[i].count = 1;
  t->slots[i].is_tombstone = false;
  return true;
}


void srv_addr_limit_release(srv_addr_limit_t* t, const char* addr) {
  srv_addr_slot_t* s = find(t, addr);
  if (s != NULL && --s->count == 0) {
    s->is_tombstone = true;
  }
}


void srv_addr_limit_free(srv_addr_limit_t* t) {
  free(t->slots);
  memset(t, 0, sizeof(*t));
}
