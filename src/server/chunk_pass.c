/* chunk_pass.c: a pass's work on the worker pool. See chunks.h. The pass
 * reads the table (frames, lengths) and never writes it; everything it makes
 * goes into its update list, which only the loop applies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "server/chunks.h"
#include "server/render.h"

/* zstd level 1: masks are mostly runs; higher levels cost more CPU than the
 * bytes they save on 32^3 chunks (bench/bench_chunks.py). */
#define CHUNK_ZSTD_LEVEL 1

typedef struct {
  srv_chunk_pass_t* p;
  ZSTD_CCtx* cctx;
  ZSTD_DCtx* dctx;
  uint8_t* zbuf; /* ZSTD_compressBound(CORE_CHUNK_VOXELS) */
  size_t zcap;
  int32_t* upd_of[CORE_CHUNK_LEVELS]; /* index -> update, -1: unchanged */
} pass_ctx_t;


static int push_update(pass_ctx_t* c,
                       unsigned level,
                       uint64_t index,
                       net_frame_t* zstd) {
  srv_chunk_pass_t* p = c->p;
  if (p->up_count == p->up_cap) {
    size_t cap = p->up_cap != 0 ? p->up_cap * 2 : 64;
    srv_chunk_update_t* u = realloc(p->ups, cap * sizeof(*u));
    if (u == NULL) {
      return -ENOMEM;
    }
    p->ups = u;
    p->up_cap = cap;
  }
  c->upd_of[level][index] = (int32_t) p->up_count;
  p->ups[p->up_count++] = (srv_chunk_update_t){
      .level = (uint8_t) level, .index = index, .zstd = zstd};
  return 0;
}


/* The zstd bytes of a chunk as the pass sees it: its update's, else the
 * table's. NULL with *len 0: a zero chunk. */
static const uint8_t* chunk_zstd(const pass_ctx_t* c,
                                 unsigned level,
                                 uint64_t index,
                                 size_t* len) {
  int32_t u = c->upd_of[level][index];
  if (u >= 0) {
    net_frame_t* f = c->p->ups[u].zstd;
    *len = f != NULL ? f->len : 0;
    return f != NULL ? f->data : NULL;
  }
  const srv_chunk_t* ch = &c->p->t->chunks[level][index];
  *len = ch->zstd_len;
  if (ch->zstd_len == 0) {
    return NULL;
  }
  size_t plen = 0;
  const uint8_t* payload = net_ws_frame_payload(ch->frame, &plen);
  return payload + CORE_CHUNK_HEAD_LEN;
}


/* Compares the chunk's new voxels with what the table holds; records an
 * update when they differ. */
static int consider(pass_ctx_t* c,
                    unsigned level,
                    uint64_t index,
                    const uint8_t* vox,
                    size_t n) {
  const srv_chunk_t* cur = &c->p->t->chunks[level][index];
  if (core_bytes_all_zero(vox, n)) {
    return cur->zstd_len == 0 ? 0 : push_update(c, level, index, NULL);
  }
  size_t z =
      ZSTD_compressCCtx(c->cctx, c->zbuf, c->zcap, vox, n, CHUNK_ZSTD_LEVEL);
  if (ZSTD_isError(z)) {
    return -EIO;
  }
  if (cur->zstd_len == z) {
    size_t len = 0;
    const uint8_t* old = chunk_zstd(c, level, index, &len);
    if (memcmp(old, c->zbuf, z) == 0) {
      return 0; /* same bytes: zstd is deterministic for one level */
    }
  }
  net_frame_t* f = net_frame_new(SRV_FRAME_HEADROOM, z);
  if (f == NULL) {
    return -ENOMEM;
  }
  memcpy(f->data, c->zbuf, z);
  int rc = push_update(c, level, index, f);
  if (rc != 0) {
    net_frame_unref(f);
  }
  return rc;
}


static bool box_meets(const core_box_t* a, const core_box_t* b) {
  for (int i = 0; i < 3; i++) {
    if (a->hi[i] <= b->lo[i] || b->hi[i] <= a->lo[i]) {
      return false;
    }
  }
  return true;
}


/* Level 0: the dirty chunks, a strip (cz, cy) at a time, each strip read
 * once through `read` over the x range its dirty chunks span. */
static int level0(pass_ctx_t* c, srv_chunk_read_fn read, void* ctx) {
  const core_chunk_grid_t* g = &c->p->t->grid[0];
  size_t strip_cap = (size_t) CORE_CHUNK_EDGE * CORE_CHUNK_EDGE * g->shape.d[2];
  uint8_t* strip = malloc(strip_cap);
  uint8_t* vox = malloc(CORE_CHUNK_VOXELS);
  uint8_t* dirty = calloc(g->n[2], 1);
  int rc = strip == NULL || vox == NULL || dirty == NULL ? -ENOMEM : 0;
  for (uint32_t cz = 0; rc == 0 && cz < g->n[0]; cz++) {
    for (uint32_t cy = 0; rc == 0 && cy < g->n[1]; cy++) {
      uint32_t x0 = UINT32_MAX;
      uint32_t x1 = 0;
      for (uint32_t cx = 0; cx < g->n[2]; cx++) {
        uint32_t cc[3] = {cz, cy, cx};
        core_box_t b = core_chunk_box(g, cc);
        bool d = c->p->all;
        for (unsigned i = 0; !d && i < c->p->box_count; i++) {
          d = box_meets(&b, &c->p->boxes[i]);
        }
        dirty[cx] = d;
        if (d) {
          x0 = cx < x0 ? cx : x0;
          x1 = cx + 1;
        }
      }
      if (x1 == 0) {
        continue;
      }
      uint32_t lo[3] = {cz, cy, x0};
      uint32_t hi[3] = {cz, cy, x1 - 1};
      core_box_t sb = core_chunk_box(g, lo);
      sb.hi[2] = core_chunk_box(g, hi).hi[2];
      rc = read(ctx, &sb, strip);
      for (uint32_t cx = x0; rc == 0 && cx < x1; cx++) {
        if (!dirty[cx]) {
          continue;
        }
        uint32_t cc[3] = {cz, cy, cx};
        core_box_t b = core_chunk_box(g, cc);
        core_chunk_cut(strip, &sb, &b, vox);
        rc = consider(c, 0, core_chunk_index(g, cc), vox, core_box_voxels(&b));
      }
    }
  }
  free(strip);
  free(vox);
  free(dirty);
  return rc;
}


/* Decompresses a chunk of `level` into `out` (zeros for a zero chunk). */
static int load(pass_ctx_t* c,
                unsigned level,
                uint64_t index,
                uint8_t* out,
                size_t n) {
  size_t len = 0;
  const uint8_t* z = chunk_zstd(c, level, index, &len);
  if (z == NULL) {
    memset(out, 0, n);
    return 0;
  }
  size_t got = ZSTD_decompressDCtx(c->dctx, out, n, z, len);
  return ZSTD_isError(got) || got != n ? -EIO : 0;
}


/* Level l + 1 from level l: the parents of the chunks this pass changed,
 * each folded from its (up to) 2x2x2 children. */
static int level_up(pass_ctx_t* c,
                    unsigned l,
                    uint8_t* region,
                    uint8_t* tmp,
                    uint8_t* vox) {
  const core_chunk_grid_t* cg = &c->p->t->grid[l];
  const core_chunk_grid_t* pg = &c->p->t->grid[l + 1];
  uint8_t* seen = calloc(pg->count, 1);
  if (seen == NULL) {
    return -ENOMEM;
  }
  int rc = 0;
  size_t n_changed = c->p->up_count;
  for (size_t u = 0; rc == 0 && u < n_changed; u++) {
    if (c->p->ups[u].level != l) {
      continue;
    }
    uint32_t cc[3];
    core_chunk_coords(cg, c->p->ups[u].index, cc);
    uint32_t pc[3] = {cc[0] / 2, cc[1] / 2, cc[2] / 2};
    uint64_t pi = core_chunk_index(pg, pc);
    if (seen[pi]) {
      continue;
    }
    seen[pi] = 1;
    core_box_t pb = core_chunk_box(pg, pc);
    core_box_t rb; /* the level-l voxels under pb */
    for (int a = 0; a < 3; a++) {
      rb.lo[a] = 2 * pb.lo[a];
      uint64_t hi = 2 * (uint64_t) pb.hi[a];
      rb.hi[a] = hi < cg->shape.d[a] ? (uint32_t) hi : cg->shape.d[a];
    }
    core_shape_t rs = {
        {rb.hi[0] - rb.lo[0], rb.hi[1] - rb.lo[1], rb.hi[2] - rb.lo[2]}};
    for (uint32_t z = 2 * pc[0]; rc == 0 && z < 2 * pc[0] + 2 && z < cg->n[0];
         z++) {
      for (uint32_t y = 2 * pc[1]; rc == 0 && y < 2 * pc[1] + 2 && y < cg->n[1];
           y++) {
        for (uint32_t x = 2 * pc[2];
             rc == 0 && x < 2 * pc[2] + 2 && x < cg->n[2]; x++) {
          uint32_t ch[3] = {z, y, x};
          core_box_t b = core_chunk_box(cg, ch);
          rc = load(c, l, core_chunk_index(cg, ch), tmp, core_box_voxels(&b));
          core_box_t rel;
          for (int a = 0; a < 3; a++) {
            rel.lo[a] = b.lo[a] - rb.lo[a];
            rel.hi[a] = b.hi[a] - rb.lo[a];
          }
          if (rc == 0) {
            core_chunk_place(region, &rs, &rel, tmp);
          }
        }
      }
    }
    if (rc == 0) {
      core_chunk_fold2(region, &rb, &cg->shape, &pb, vox);
      rc = consider(c, l + 1, pi, vox, core_box_voxels(&pb));
    }
  }
  free(seen);
  return rc;
}


void srv_chunk_pass_run(srv_chunk_pass_t* p,
                        srv_chunk_read_fn read,
                        void* ctx) {
  pass_ctx_t c;
  memset(&c, 0, sizeof(c));
  c.p = p;
  p->has_run = true;
  c.cctx = ZSTD_createCCtx();
  c.dctx = ZSTD_createDCtx();
  c.zcap = ZSTD_compressBound(CORE_CHUNK_VOXELS);
  c.zbuf = malloc(c.zcap);
  uint8_t* region = malloc(8 * (size_t) CORE_CHUNK_VOXELS);
  uint8_t* tmp = malloc(CORE_CHUNK_VOXELS);
  uint8_t* vox = malloc(CORE_CHUNK_VOXELS);
  int rc = c.cctx == NULL || c.dctx == NULL || c.zbuf == NULL ||
                   region == NULL || tmp == NULL || vox == NULL
               ? -ENOMEM
               : 0;
  for (unsigned l = 0; rc == 0 && l < CORE_CHUNK_LEVELS; l++) {
    c.upd_of[l] = malloc(p->t->grid[l].count * sizeof(int32_t));
    if (c.upd_of[l] == NULL) {
      rc = -ENOMEM;
      break;
    }
    memset(c.upd_of[l], 0xff, p->t->grid[l].count * sizeof(int32_t));
  }
  if (rc == 0) {
    rc = level0(&c, read, ctx);
  }
  for (unsigned l = 0; rc == 0 && l + 1 < CORE_CHUNK_LEVELS; l++) {
    rc = level_up(&c, l, region, tmp, vox);
  }
  p->err = rc;
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    free(c.upd_of[l]);
  }
  ZSTD_freeCCtx(c.cctx);
  ZSTD_freeDCtx(c.dctx);
  free(c.zbuf);
  free(region);
  free(tmp);
  free(vox);
}
