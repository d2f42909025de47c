/* idmap.c: see idmap.h. FNV-1a over the lower-cased key; linear probing at
 * a load factor of at most 1/2. */
#include "core/idmap.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>


void core_idmap_init(core_idmap_t* m, size_t key_len) {
  m->slots = NULL;
  m->cap = 0;
  m->count = 0;
  m->key_len = key_len;
}


static size_t hash_of(const core_idmap_t* m, const char* key) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < m->key_len; i++) {
    h ^= (uint64_t) tolower((unsigned char) key[i]);
    h *= 1099511628211ull;
  }
  return (size_t) (h ^ (h >> 32));
}


static size_t find(const core_idmap_t* m, const char* key) {
  size_t mask = m->cap - 1;
  size_t i = hash_of(m, key) & mask;
  while (m->slots[i].key != NULL &&
         strncasecmp(m->slots[i].key, key, m->key_len) != 0) {
    i = (i + 1) & mask;
  }
  return i;
}


void* core_idmap_get(const core_idmap_t* m, const char* key) {
  if (m->count == 0) {
    return NULL;
  }
  return m->slots[find(m, key)].value;
}


static int grow(core_idmap_t* m) {
  size_t cap = m->cap == 0 ? 64 : m->cap * 2;
  core_idmap_slot_t* slots = calloc(cap, sizeof(*slots));
  if (slots == NULL) {
    return -ENOMEM;
  }
  core_idmap_t bigger = {slots, cap, 0, m->key_len};
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key != NULL) {
      bigger.slots[find(&bigger, m->slots[i].key)] = m->slots[i];
      bigger.count++;
    }
  }
  free(m->slots);
  *m = bigger;
  return 0;
}


int core_idmap_put(core_idmap_t* m, const char* key, void* value) {
  if ((m->count + 1) * 2 > m->cap && grow(m) != 0) {
    return -ENOMEM;
  }
  size_t i = find(m, key);
  if (m->slots[i].key == NULL) {
    m->count++;
  }
  m->slots[i] = (core_idmap_slot_t){key, value};
  return 0;
}


void* core_idmap_remove(core_idmap_t* m, const char* key) {
  if (m->count == 0) {
    return NULL;
  }
  size_t mask = m->cap - 1;
  size_t i = find(m, key);
  void* value = m->slots[i].value;
  if (m->slots[i].key == NULL) {
    return NULL;
  }
  m->slots[i] = (core_idmap_slot_t){NULL, NULL};
  m->count--;
  /* Backward shift: pull later entries of the run into the hole when their
   * home slot does not lie between the hole and them. */
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (m->slots[j].key == NULL) {
      break;
    }
    size_t home = hash_of(m, m->slots[j].key) & mask;
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      m->slots[i] = m->slots[j];
      m->slots[j] = (core_idmap_slot_t){NULL, NULL};
      i = j;
    }
  }
  assert(m->count < m->cap);
  return value;
}


void core_idmap_free(core_idmap_t* m) {
  free(m->slots);
  core_idmap_init(m, m->key_len);
}
