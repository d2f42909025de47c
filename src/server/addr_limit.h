/* addr_limit.h: open connections per client address, for
 * --max-connections-per-ip. A small open-addressing table keyed by the
 * address text; entries disappear when their count drops to zero. Loop
 * thread only. */
#ifndef SRV_ADDR_LIMIT_H
#define SRV_ADDR_LIMIT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char addr[48];
  unsigned count; /* 0: free slot */
  bool is_tombstone;
} srv_addr_slot_t;

typedef struct {
  srv_addr_slot_t* slots; /* malloc'd, `cap` a power of two */
  size_t cap;
  size_t used; /* live entries + tombstones */
} srv_addr_limit_t;

/* Counts one more connection from `addr` unless that would exceed `max`
 * (0: no limit, nothing is tracked). Returns true when admitted. */
bool srv_addr_limit_acquire(srv_addr_limit_t* t,
                            const char* addr,
                            unsigned max);

/* Counts one connection from `addr` less (admitted by acquire). */
void srv_addr_limit_release(srv_addr_limit_t* t, const char* addr);

/* Frees the table. */
void srv_addr_limit_free(srv_addr_limit_t* t);

#endif
