/* idmap.h: an open-addressing hash map from fixed-length ids (job UUIDs,
 * compared case-insensitively) to pointers, so that looking a job up costs
 * O(1) whatever the number of jobs. The map stores the caller's key pointer
 * (it must live as long as the entry, e.g. the job's own id). Grows by
 * doubling; deletion uses backward shifting (no tombstones). Not
 * thread-safe. */
#ifndef CORE_IDMAP_H
#define CORE_IDMAP_H

#include <stddef.h>

typedef struct {
  const char* key;
  void* value;
} core_idmap_slot_t;

typedef struct {
  core_idmap_slot_t* slots; /* malloc'd, cap entries; key NULL = empty */
  size_t cap;               /* a power of two, or 0 */
  size_t count;
  size_t key_len;
} core_idmap_t;

/* An empty map for keys of exactly `key_len` bytes. */
void core_idmap_init(core_idmap_t* m, size_t key_len);

/* The value stored under `key` (key_len bytes), or NULL. */
void* core_idmap_get(const core_idmap_t* m, const char* key);

/* Stores `value` under `key` (borrowed; replaces an existing entry).
 * Returns 0 or -ENOMEM. */
int core_idmap_put(core_idmap_t* m, const char* key, void* value);

/* Removes `key`; returns its value or NULL when absent. */
void* core_idmap_remove(core_idmap_t* m, const char* key);

/* Frees the table (not the values). */
void core_idmap_free(core_idmap_t* m);

#endif
