/* cluster_epoch.c: the order of a job's chunk tables across attempts. A
 * worker's table epoch starts with the attempt that made it (8 hex digits
 * of the hash's `attempt`, then 8 random ones), so a gateway that sees
 * another epoch can tell a takeover's new table (adopt it: the mirror's
 * table is emptied and its chunks subscribers are told, ws_chunks.c closes
 * them 1012 so they reconnect for a keyframe) from a stale attempt's
 * (refuse it: never back to an older table). The epoch stays opaque to
 * clients (docs/protocol.md §11). Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cluster_chunks.h"

void srv_cluster_epoch_stamp(srv_chunks_t* t, const char* owner) {
  const char* hash = owner != NULL ? strrchr(owner, '#') : NULL;
  unsigned long attempt = hash != NULL ? strtoul(hash + 1, NULL, 10) : 0;
  char head[9];
  snprintf(head, sizeof(head), "%08lx", attempt & 0xfffffffful);
  memcpy(t->epoch, head, 8); /* the random tail stays */
}


int srv_cluster_epoch_cmp(const char* a, const char* b) {
  return strncmp(a, b, 8); /* fixed-width lowercase hex: text order */
}


void srv_cluster_chunks_replace(srv_chunks_t* t, const char* epoch) {
  /* Subscribers first: each one leaves the watches (and stops reading the
   * table) before its chunks go. */
  core_list_t* n = t->watches.next;
  while (n != &t->watches) {
    core_list_t* next = n->next;
    srv_chunk_watch_t* w = CORE_CONTAINER_OF(n, srv_chunk_watch_t, link);
    if (w->replaced != NULL) {
      w->replaced(w);
    }
    n = next;
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    srv_chunk_shared_clear(&t->shared[l]);
    for (uint64_t i = 0; i < t->grid[l].count; i++) {
      srv_chunk_t* ch = &t->chunks[l][i];
      if (ch->frame != NULL) {
        net_frame_mark_held(ch->frame, t->held);
        net_frame_unref(ch->frame);
      }
      memset(ch, 0, sizeof(*ch));
    }
  }
  t->frame_bytes = 0;
  t->seq = 0;
  t->gen++;
  t->is_ready = false;
  memcpy(t->epoch, epoch, 16);
  t->epoch[16] = '\0';
}
