/* viewer_chunks.c: the viewer's chunk masks, their overlay and the view
 * throttle. See viewer_chunks.h. */
#include "viewer/viewer_chunks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


uint32_t viewer_chunks_pick_scale(const core_shape_t* vol,
                                  uint32_t preview_scale) {
  uint32_t s = 1;
  while (s < CORE_SCALE_MAX) {
    core_shape_t d = core_shape_downsample(vol, s);
    if (core_shape_voxels(&d) <= VIEWER_CHUNKS_COARSE_BYTES) {
      break;
    }
    s *= 2;
  }
  while (s * 2 <= preview_scale && s < CORE_SCALE_MAX) {
    s *= 2;
  }
  return s;
}


static uint64_t count_nonzero(const uint8_t* p, size_t n) {
  uint64_t k = 0;
  for (size_t i = 0; i < n; i++) {
    k += p[i] != 0;
  }
  return k;
}


/* Level l's mask, allocated (zero) the first time. */
static int ensure_level(viewer_chunks_t* c, unsigned l) {
  if (c->mask[l] == NULL) {
    c->mask[l] = calloc(1, (size_t) core_shape_voxels(&c->grid[l].shape));
    if (c->mask[l] == NULL) {
      return -ENOMEM;
    }
  }
  if (l < c->level && c->known[l] == NULL) {
    c->known[l] = calloc(1, (size_t) c->grid[l].count);
    if (c->known[l] == NULL) {
      return -ENOMEM;
    }
  }
  return 0;
}


int viewer_chunks_init(viewer_chunks_t* c,
                       const core_shape_t* vol,
                       uint32_t scale) {
  memset(c, 0, sizeof(*c));
  int l = core_chunk_level_of_scale(scale);
  if (l < 0 || !core_shape_is_valid(vol)) {
    return -EINVAL;
  }
  c->vol = *vol;
  c->level = (unsigned) l;
  c->plane_level = -1;
  for (unsigned i = 0; i < CORE_CHUNK_LEVELS; i++) {
    c->grid[i] = core_chunk_grid(vol, i);
  }
  int rc = ensure_level(c, c->level);
  if (rc != 0) {
    viewer_chunks_free(c);
  }
  return rc;
}


void viewer_chunks_free(viewer_chunks_t* c) {
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    free(c->mask[l]);
    free(c->known[l]);
    c->mask[l] = NULL;
    c->known[l] = NULL;
  }
}


void viewer_chunks_clear(viewer_chunks_t* c) {
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    if (c->mask[l] != NULL) {
      memset(c->mask[l], 0, (size_t) core_shape_voxels(&c->grid[l].shape));
    }
    if (c->known[l] != NULL) {
      memset(c->known[l], 0, (size_t) c->grid[l].count);
    }
  }
  c->labelled = 0;
}


int viewer_chunks_copy(viewer_chunks_t* c,
                       uint32_t scale,
                       const uint32_t lo[3],
                       const uint32_t hi[3],
                       const uint8_t* src,
                       const uint32_t src_shape[3]) {
  int sl = core_chunk_level_of_scale(scale);
  if (sl < 0 || (unsigned) sl > c->level || src == NULL) {
    return -EINVAL;
  }
  unsigned l = (unsigned) sl;
  const core_shape_t* s = &c->grid[l].shape;
  for (int a = 0; a < 3; a++) {
    if (src_shape[a] != s->d[a] || lo[a] >= hi[a] || hi[a] > s->d[a]) {
      return -EINVAL;
    }
  }
  int rc = ensure_level(c, l);
  if (rc != 0) {
    return rc;
  }
  size_t run = hi[2] - lo[2];
  for (uint32_t z = lo[0]; z < hi[0]; z++) {
    for (uint32_t y = lo[1]; y < hi[1]; y++) {
      size_t off = ((size_t) z * s->d[1] + y) * s->d[2] + lo[2];
      if (l == c->level) {
        c->labelled -= count_nonzero(c->mask[l] + off, run);
        c->labelled += count_nonzero(src + off, run);
      }
      memcpy(c->mask[l] + off, src + off, run);
    }
  }
  if (l < c->level) {
    const core_chunk_grid_t* g = &c->grid[l];
    uint32_t k[3];
    for (k[0] = lo[0] / CORE_CHUNK_EDGE; k[0] <= (hi[0] - 1) / CORE_CHUNK_EDGE;
         k[0]++) {
      for (k[1] = lo[1] / CORE_CHUNK_EDGE;
           k[1] <= (hi[1] - 1) / CORE_CHUNK_EDGE; k[1]++) {
        for (k[2] = lo[2] / CORE_CHUNK_EDGE;
             k[2] <= (hi[2] - 1) / CORE_CHUNK_EDGE; k[2]++) {
          c->known[l][core_chunk_index(g, k)] = 1;
        }
      }
    }
  }
  return 0;
}


static uint8_t level_at(const viewer_chunks_t* c,
                        unsigned l,
                        uint32_t z,
                        uint32_t y,
                        uint32_t x) {
  const core_shape_t* s = &c->grid[l].shape;
  z >>= l;
  y >>= l;
  x >>= l;
  return c->mask[l][((size_t) z * s->d[1] + y) * s->d[2] + x];
}


uint8_t viewer_chunks_label(const viewer_chunks_t* c,
                            uint32_t z,
                            uint32_t y,
                            uint32_t x) {
  int pl = c->plane_level;
  if (pl >= 0 && (unsigned) pl < c->level && c->known[pl] != NULL) {
    const core_chunk_grid_t* g = &c->grid[pl];
    uint32_t k[3] = {(z >> pl) / CORE_CHUNK_EDGE, (y >> pl) / CORE_CHUNK_EDGE,
                     (x >> pl) / CORE_CHUNK_EDGE};
    if (c->known[pl][core_chunk_index(g, k)] != 0) {
      return level_at(c, (unsigned) pl, z, y, x);
    }
  }
  return level_at(c, c->level, z, y, x);
}


void viewer_chunks_slice(const viewer_chunks_t* c,
                         viewer_axis_t axis,
                         uint32_t index,
                         const uint32_t rect[4],
                         uint8_t* out,
                         uint32_t stride) {
  for (uint32_t row = rect[1]; row < rect[1] + rect[3]; row++) {
    uint8_t* o = out + (size_t) row * stride;
    for (uint32_t col = rect[0]; col < rect[0] + rect[2]; col++) {
      uint32_t v[3];
      viewer_slice_voxel(axis, index, col, row, v);
      o[col] = viewer_chunks_label(c, v[0], v[1], v[2]);
    }
  }
}


bool viewer_chunks_rect(const core_shape_t* vol,
                        uint32_t scale,
                        const uint32_t lo[3],
                        const uint32_t hi[3],
                        viewer_axis_t axis,
                        uint32_t index,
                        uint32_t rect[4]) {
  uint32_t a[3], b[3]; /* the box at full resolution, clipped */
  for (int i = 0; i < 3; i++) {
    uint64_t l = (uint64_t) lo[i] * scale, h = (uint64_t) hi[i] * scale;
    a[i] = (uint32_t) (l < vol->d[i] ? l : vol->d[i]);
    b[i] = (uint32_t) (h < vol->d[i] ? h : vol->d[i]);
  }
  /* The fixed axis, then the image's column and row axes. */
  int fixed = 0, col = 2, row = 1;
  switch (axis) {
  case VIEWER_AXIS_XY:
    break;
  case VIEWER_AXIS_XZ:
    fixed = 1;
    row = 0;
    break;
  case VIEWER_AXIS_YZ:
    fixed = 2;
    col = 0;
    break;
  }
  if (index < a[fixed] || index >= b[fixed] || a[col] >= b[col] ||
      a[row] >= b[row]) {
    return false;
  }
  rect[0] = a[col];
  rect[1] = a[row];
  rect[2] = b[col] - a[col];
  rect[3] = b[row] - a[row];
  return true;
}


void viewer_chunks_compose(const viewer_chunks_t* c, uint8_t* out) {
  const core_shape_t* s = &c->vol;
  uint32_t rect[4] = {0, 0, s->d[2], s->d[1]};
  for (uint32_t z = 0; z < s->d[0]; z++) {
    viewer_chunks_slice(c, VIEWER_AXIS_XY, z, rect,
                        out + (size_t) z * s->d[1] * s->d[2], s->d[2]);
  }
}


/* ---- the view throttle ------------------------------------------------- */

void viewer_throttle_init(viewer_throttle_t* t, int64_t interval_us) {
  memset(t, 0, sizeof(*t));
  t->interval_us = interval_us;
}


static bool same(const int64_t a[3], double za, const int64_t b[3], double zb) {
  return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && za == zb;
}


static void mark_sent(viewer_throttle_t* t,
                      const int64_t view[3],
                      double zoom,
                      int64_t now_us) {
  t->has_sent = true;
  t->sent_at_us = now_us;
  memcpy(t->sent, view, sizeof(t->sent));
  t->sent_zoom = zoom;
  t->is_pending = false;
}


bool viewer_throttle_want(viewer_throttle_t* t,
                          const int64_t view[3],
                          double zoom,
                          int64_t now_us,
                          int64_t* wait_us) {
  *wait_us = 0;
  if (t->has_sent && same(view, zoom, t->sent, t->sent_zoom)) {
    t->is_pending = false; /* back where the server is: nothing to say */
    return false;
  }
  if (!t->has_sent || now_us - t->sent_at_us >= t->interval_us) {
    mark_sent(t, view, zoom, now_us);
    return true;
  }
  t->is_pending = true;
  memcpy(t->want, view, sizeof(t->want));
  t->want_zoom = zoom;
  *wait_us = t->sent_at_us + t->interval_us - now_us;
  return false;
}


bool viewer_throttle_due(viewer_throttle_t* t,
                         int64_t now_us,
                         int64_t view[3],
                         double* zoom,
                         int64_t* wait_us) {
  *wait_us = 0;
  if (!t->is_pending) {
    return false;
  }
  if (now_us - t->sent_at_us < t->interval_us) {
    *wait_us = t->sent_at_us + t->interval_us - now_us;
    return false;
  }
  memcpy(view, t->want, sizeof(t->want));
  *zoom = t->want_zoom;
  mark_sent(t, t->want, t->want_zoom, now_us);
  return true;
}
