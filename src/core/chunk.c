/* chunk.c: chunk grids, headers and voxel moves. See chunk.h. */
#include "core/chunk.h"

#include <assert.h>
#include <string.h>


core_chunk_grid_t core_chunk_grid(const core_shape_t* vol, unsigned level) {
  assert(level < CORE_CHUNK_LEVELS);
  core_chunk_grid_t g;
  g.level = level;
  g.shape = core_shape_downsample(vol, 1u << level);
  g.count = 1;
  for (int a = 0; a < 3; a++) {
    g.n[a] =
        g.shape.d[a] / CORE_CHUNK_EDGE + (g.shape.d[a] % CORE_CHUNK_EDGE != 0);
    g.count *= g.n[a];
  }
  return g;
}


uint64_t core_chunk_index(const core_chunk_grid_t* g, const uint32_t c[3]) {
  assert(c[0] < g->n[0] && c[1] < g->n[1] && c[2] < g->n[2]);
  return ((uint64_t) c[0] * g->n[1] + c[1]) * g->n[2] + c[2];
}


void core_chunk_coords(const core_chunk_grid_t* g, uint64_t i, uint32_t c[3]) {
  assert(i < g->count);
  c[2] = (uint32_t) (i % g->n[2]);
  i /= g->n[2];
  c[1] = (uint32_t) (i % g->n[1]);
  c[0] = (uint32_t) (i / g->n[1]);
}


core_box_t core_chunk_box(const core_chunk_grid_t* g, const uint32_t c[3]) {
  core_box_t b;
  for (int a = 0; a < 3; a++) {
    uint64_t lo = (uint64_t) c[a] * CORE_CHUNK_EDGE;
    uint64_t hi = lo + CORE_CHUNK_EDGE;
    b.lo[a] = (uint32_t) lo;
    b.hi[a] = hi < g->shape.d[a] ? (uint32_t) hi : g->shape.d[a];
  }
  return b;
}


uint64_t core_box_voxels(const core_box_t* b) {
  if (core_box_is_empty(b)) {
    return 0;
  }
  return (uint64_t) (b->hi[0] - b->lo[0]) * (b->hi[1] - b->lo[1]) *
         (b->hi[2] - b->lo[2]);
}


int core_chunk_level_of_scale(uint32_t scale) {
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    if (scale == 1u << l) {
      return (int) l;
    }
  }
  return -1;
}


static void put32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t) (v >> 24);
  p[1] = (uint8_t) (v >> 16);
  p[2] = (uint8_t) (v >> 8);
  p[3] = (uint8_t) v;
}


static uint32_t get32(const uint8_t* p) {
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 |
         p[3];
}


void core_chunk_head_write(const core_chunk_head_t* h, uint8_t* out) {
  put32(out, CORE_CHUNK_MAGIC);
  out[4] = h->level;
  out[5] = h->flags;
  out[6] = 0;
  out[7] = 0;
  put32(out + 8, h->c[0]);
  put32(out + 12, h->c[1]);
  put32(out + 16, h->c[2]);
  put32(out + 20, h->version);
  put32(out + 24, h->payload_len);
}


int core_chunk_head_parse(const uint8_t* msg,
                          size_t len,
                          core_chunk_head_t* h) {
  if (len < CORE_CHUNK_HEAD_LEN || get32(msg) != CORE_CHUNK_MAGIC) {
    return -1;
  }
  h->level = msg[4];
  h->flags = msg[5];
  h->c[0] = get32(msg + 8);
  h->c[1] = get32(msg + 12);
  h->c[2] = get32(msg + 16);
  h->version = get32(msg + 20);
  h->payload_len = get32(msg + 24);
  if (h->level >= CORE_CHUNK_LEVELS || (h->flags & ~CORE_CHUNK_FLAG_ZERO) ||
      msg[6] != 0 || msg[7] != 0 ||
      (uint64_t) h->payload_len != len - CORE_CHUNK_HEAD_LEN) {
    return -1;
  }
  bool is_zero = (h->flags & CORE_CHUNK_FLAG_ZERO) != 0;
  return is_zero == (h->payload_len == 0) ? 0 : -1;
}


bool core_bytes_all_zero(const uint8_t* p, size_t n) {
  /* Word at a time: masks are mostly zero, this runs over every chunk. */
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    if (w != 0) {
      return false;
    }
  }
  for (; i < n; i++) {
    if (p[i] != 0) {
      return false;
    }
  }
  return true;
}


void core_chunk_cut(const uint8_t* src,
                    const core_box_t* src_box,
                    const core_box_t* b,
                    uint8_t* out) {
  size_t sy = src_box->hi[1] - src_box->lo[1];
  size_t sx = src_box->hi[2] - src_box->lo[2];
  size_t nx = b->hi[2] - b->lo[2];
  for (uint32_t z = b->lo[0]; z < b->hi[0]; z++) {
    for (uint32_t y = b->lo[1]; y < b->hi[1]; y++) {
      const uint8_t* row =
          src +
          ((size_t) (z - src_box->lo[0]) * sy + (y - src_box->lo[1])) * sx +
          (b->lo[2] - src_box->lo[2]);
      memcpy(out, row, nx);
      out += nx;
    }
  }
}


void core_chunk_place(uint8_t* dst,
                      const core_shape_t* s,
                      const core_box_t* b,
                      const uint8_t* voxels) {
  size_t nx = b->hi[2] - b->lo[2];
  for (uint32_t z = b->lo[0]; z < b->hi[0]; z++) {
    for (uint32_t y = b->lo[1]; y < b->hi[1]; y++) {
      memcpy(dst + ((size_t) z * s->d[1] + y) * s->d[2] + b->lo[2], voxels, nx);
      voxels += nx;
    }
  }
}


void core_chunk_fold2(const uint8_t* src,
                      const core_box_t* src_box,
                      const core_shape_t* src_shape,
                      const core_box_t* dst_box,
                      uint8_t* dst) {
  size_t sy = src_box->hi[1] - src_box->lo[1];
  size_t sx = src_box->hi[2] - src_box->lo[2];
  for (uint32_t z = dst_box->lo[0]; z < dst_box->hi[0]; z++) {
    for (uint32_t y = dst_box->lo[1]; y < dst_box->hi[1]; y++) {
      for (uint32_t x = dst_box->lo[2]; x < dst_box->hi[2]; x++) {
        uint8_t m = 0;
        for (uint32_t dz = 2 * z; dz < 2 * z + 2 && dz < src_shape->d[0];
             dz++) {
          for (uint32_t dy = 2 * y; dy < 2 * y + 2 && dy < src_shape->d[1];
               dy++) {
            const uint8_t* row = src + ((size_t) (dz - src_box->lo[0]) * sy +
                                        (dy - src_box->lo[1])) *
                                           sx;
            for (uint32_t dx = 2 * x; dx < 2 * x + 2 && dx < src_shape->d[2];
                 dx++) {
              uint8_t v = row[dx - src_box->lo[2]];
              m = v > m ? v : m;
            }
          }
        }
        *dst++ = m;
      }
    }
  }
}
