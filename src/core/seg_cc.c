/* seg_cc.c: 26-connected components of a whole mask for the classic
 * segmenter's final pass (seg_label.c), found on runs (a row's maximal
 * x-intervals of non-zero voxels) with union-find, so memory grows with
 * the structures' surface, not the volume. Component ids follow the raster
 * order of each component's first run, whatever the order of joins. Pure;
 * any thread. */
#include "core/seg_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


static int push_run(core_seg_cc_t* r, uint32_t row, uint32_t x0, uint32_t x1) {
  if (r->count == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 1 << 16;
    core_seg_run_t* grown = realloc(r->runs, cap * sizeof(*grown));
    if (grown == NULL) {
      return -ENOMEM;
    }
    r->runs = grown;
    r->cap = cap;
  }
  r->runs[r->count++] = (core_seg_run_t){row, x0, x1};
  return 0;
}


/* Appends the runs of one row; skips zero bytes eight at a time. */
static int scan_row(core_seg_cc_t* r,
                    const uint8_t* row,
                    uint32_t nx,
                    uint32_t id) {
  uint32_t x = 0;
  while (x < nx) {
    while (x + 8 <= nx) {
      uint64_t w;
      memcpy(&w, row + x, 8);
      if (w != 0) {
        break;
      }
      x += 8;
    }
    while (x < nx && row[x] == 0) {
      x++;
    }
    if (x == nx) {
      break;
    }
    uint32_t x0 = x;
    while (x < nx && row[x] != 0) {
      x++;
    }
    if (push_run(r, id, x0, x) != 0) {
      return -ENOMEM;
    }
  }
  return 0;
}


static size_t find(size_t* parent, size_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]]; /* path halving */
    i = parent[i];
  }
  return i;
}


/* Links runs of row `a` with the 26-adjacent runs of row `b`. */
static void join_rows(core_seg_cc_t* r, size_t a, size_t b) {
  size_t i = r->row_start[a], ie = r->row_start[a + 1];
  size_t j = r->row_start[b], je = r->row_start[b + 1];
  while (i < ie && j < je) {
    const core_seg_run_t* p = &r->runs[i];
    const core_seg_run_t* q = &r->runs[j];
    if (q->x0 <= p->x1 && p->x0 <= q->x1) {
      size_t ra = find(r->comp, i), rb = find(r->comp, j);
      /* The smaller index becomes the root. */
      if (ra < rb) {
        r->comp[rb] = ra;
      } else {
        r->comp[ra] = rb;
      }
    }
    if (p->x1 < q->x1) {
      i++;
    } else {
      j++;
    }
  }
}


int core_seg_cc_build(core_seg_cc_t* r,
                      const uint8_t* mask,
                      const core_shape_t* s) {
  memset(r, 0, sizeof(*r));
  const uint32_t nz = s->d[0], ny = s->d[1], nx = s->d[2];
  const size_t rows = (size_t) nz * ny;
  r->row_start = malloc((rows + 1) * sizeof(size_t));
  if (r->row_start == NULL) {
    return -ENOMEM;
  }
  for (size_t row = 0; row < rows; row++) {
    r->row_start[row] = r->count;
    if (scan_row(r, mask + row * nx, nx, (uint32_t) row) != 0) {
      return -ENOMEM;
    }
  }
  r->row_start[rows] = r->count;
  r->comp = malloc((r->count ? r->count : 1) * sizeof(size_t));
  if (r->comp == NULL) {
    return -ENOMEM;
  }
  for (size_t i = 0; i < r->count; i++) {
    r->comp[i] = i;
  }
  for (uint32_t z = 0; z < nz; z++) {
    for (uint32_t y = 0; y < ny; y++) {
      size_t row = (size_t) z * ny + y;
      if (y > 0) {
        join_rows(r, row, row - 1);
      }
      if (z > 0) {
        size_t up = row - ny;
        join_rows(r, row, up);
        if (y > 0) {
          join_rows(r, row, up - 1);
        }
        if (y + 1 < ny) {
          join_rows(r, row, up + 1);
        }
      }
    }
  }
  for (size_t i = 0; i < r->count; i++) {
    r->comp[i] = find(r->comp, i);
  }
  /* Every run now points at its root, which precedes it: one ascending
   * sweep turns roots into dense ids and runs into their root's id (which
   * it has already rewritten). */
  for (size_t i = 0; i < r->count; i++) {
    r->comp[i] = r->comp[i] == i ? r->comps++ : r->comp[r->comp[i]];
  }
  return 0;
}


int core_seg_cc_measure(const core_seg_cc_t* r,
                        const uint8_t* mask,
                        const core_shape_t* s,
                        core_seg_comp_t** out) {
  core_seg_comp_t* comps = malloc((r->comps ? r->comps : 1) * sizeof(*comps));
  *out = comps;
  if (comps == NULL) {
    return -ENOMEM;
  }
  for (size_t c = 0; c < r->comps; c++) {
    memset(&comps[c], 0, sizeof(comps[c]));
    for (int a = 0; a < 3; a++) {
      comps[c].lo[a] = UINT32_MAX;
    }
  }
  for (size_t i = 0; i < r->count; i++) {
    const core_seg_run_t* run = &r->runs[i];
    core_seg_comp_t* c = &comps[r->comp[i]];
    uint32_t at[3] = {run->row / s->d[1], run->row % s->d[1], run->x0};
    uint32_t end[3] = {at[0], at[1], run->x1 - 1};
    for (int a = 0; a < 3; a++) {
      c->lo[a] = at[a] < c->lo[a] ? at[a] : c->lo[a];
      c->hi[a] = end[a] > c->hi[a] ? end[a] : c->hi[a];
    }
    const uint8_t* row = mask + (size_t) run->row * s->d[2];
    c->voxels += run->x1 - run->x0;
    for (uint32_t x = run->x0; x < run->x1; x++) {
      c->particle += row[x] == CORE_SEG_LABEL_PARTICLE;
    }
  }
  return 0;
}


uint32_t core_seg_comp_extent(const core_seg_comp_t* c) {
  uint32_t extent = 0;
  for (int a = 0; a < 3; a++) {
    uint32_t e = c->hi[a] - c->lo[a] + 1;
    extent = e > extent ? e : extent;
  }
  return extent;
}


int core_seg_cc_group(core_seg_cc_t* r) {
  r->first = calloc(r->comps + 1, sizeof(size_t));
  r->order = malloc((r->count ? r->count : 1) * sizeof(size_t));
  if (r->first == NULL || r->order == NULL) {
    return -ENOMEM;
  }
  /* A counting sort: sizes, then starts, then placement (which leaves
   * first[c] at the end of c's runs, i.e. the start of c + 1's). */
  for (size_t i = 0; i < r->count; i++) {
    r->first[r->comp[i] + 1]++;
  }
  for (size_t c = 0; c < r->comps; c++) {
    r->first[c + 1] += r->first[c];
  }
  for (size_t i = 0; i < r->count; i++) {
    r->order[r->first[r->comp[i]]++] = i;
  }
  for (size_t c = r->comps; c > 0; c--) {
    r->first[c] = r->first[c - 1];
  }
  r->first[0] = 0;
  return 0;
}


void core_seg_cc_free(core_seg_cc_t* r) {
  free(r->runs);
  free(r->row_start);
  free(r->comp);
  free(r->first);
  free(r->order);
  memset(r, 0, sizeof(*r));
}
