/* chunk_view.h: a chunks client's `view` message (docs/protocol.md
 * §11.2): the full-resolution planes it displays and its zoom. Pure. */
#ifndef CORE_CHUNK_VIEW_H
#define CORE_CHUNK_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

typedef struct {
  bool has[3];    /* plane shown: z, y, x */
  uint32_t at[3]; /* its full-resolution index */
  double zoom;    /* screen pixels per voxel, > 0 */
} core_view_t;

/* Parses a view message for a volume of shape `vol`. Returns 0, or -1 with
 * a sentence in err naming the bad field. */
int core_view_parse(const char* text,
                    size_t len,
                    const core_shape_t* vol,
                    core_view_t* v,
                    char* err,
                    size_t err_len);

/* The plane level for `zoom`: 0 when zoom >= 1, else that of the largest
 * power-of-two scale <= 1 / zoom, at most `max_level`. */
unsigned core_view_plane_level(double zoom, unsigned max_level);

#endif
