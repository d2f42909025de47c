/* seg_morph.c: the classic segmenter's morphology on byte boxes: a 3-4-5
 * chamfer distance transform (how deep a voxel lies inside a structure, how
 * far it is from a blob core) and breadth-first growth. Structures fill a
 * few percent of a tomogram, so both skip background voxels quickly and
 * spend their time on the few that matter. Pure; any thread. */
#include "core/seg_internal.h"

#include <assert.h>


/* The 13 neighbours that precede a voxel in raster order, with their 3-4-5
 * weights (3 per face step, 4 per edge, 5 per corner). */
typedef struct {
  int8_t dz, dy, dx;
  uint8_t w;
} step_t;

static const step_t causal[13] = {
    {-1, -1, -1, 5}, {-1, -1, 0, 4}, {-1, -1, 1, 5}, {-1, 0, -1, 4},
    {-1, 0, 0, 3},   {-1, 0, 1, 4},  {-1, 1, -1, 5}, {-1, 1, 0, 4},
    {-1, 1, 1, 5},   {0, -1, -1, 4}, {0, -1, 0, 3},  {0, -1, 1, 4},
    {0, 0, -1, 3},
};


/* One pass: sign -1 visits voxels forward and looks at the causal
 * neighbours, sign +1 visits backward and looks at their mirror images. */
static void chamfer_pass(uint8_t* v,
                         const uint32_t n[3],
                         uint8_t cap,
                         unsigned edges,
                         int sign) {
  const int64_t nz = n[0], ny = n[1], nx = n[2];
  const int64_t plane = ny * nx, total = nz * plane;
  int64_t off[13];
  for (int k = 0; k < 13; k++) {
    off[k] = -sign * (causal[k].dz * plane + causal[k].dy * nx + causal[k].dx);
  }
  for (int64_t step = 0; step < total; step++) {
    int64_t i = sign < 0 ? step : total - 1 - step;
    uint8_t cur = v[i];
    if (cur == 0 || cur == CORE_SEG_BARRIER) {
      continue;
    }
    int64_t z = i / plane, y = i / nx % ny, x = i % nx;
    unsigned best = cur;
    for (int k = 0; k < 13; k++) {
      /* The neighbour's coordinates: mirrored for the backward pass. */
      int64_t qz = z - sign * causal[k].dz, qy = y - sign * causal[k].dy;
      int64_t qx = x - sign * causal[k].dx;
      unsigned out =
          (qz < 0 ? CORE_SEG_EDGE_Z0 : 0) | (qz >= nz ? CORE_SEG_EDGE_Z1 : 0) |
          (qy < 0 ? CORE_SEG_EDGE_Y0 : 0) | (qy >= ny ? CORE_SEG_EDGE_Y1 : 0) |
          (qx < 0 ? CORE_SEG_EDGE_X0 : 0) | (qx >= nx ? CORE_SEG_EDGE_X1 : 0);
      if (out != 0) {
        /* Beyond the box: a source if every face crossed is a source. */
        if ((out & edges) == out) {
          best = causal[k].w < best ? causal[k].w : best;
        }
        continue;
      }
      uint8_t q = v[i + off[k]];
      if (q == CORE_SEG_BARRIER) {
        continue;
      }
      unsigned c = (unsigned) q + causal[k].w;
      best = c < best ? c : best;
    }
    v[i] = (uint8_t) (best < cap ? best : cap);
  }
}


void core_seg_chamfer(uint8_t* v,
                      const uint32_t n[3],
                      uint8_t cap,
                      unsigned edges) {
  assert(cap >= 1 && cap <= 250);
  chamfer_pass(v, n, cap, edges, -1);
  chamfer_pass(v, n, cap, edges, +1);
}


uint64_t core_seg_grow(uint8_t* lab,
                       const uint32_t n[3],
                       const uint8_t* allowed,
                       const float* d,
                       uint8_t label,
                       uint32_t steps,
                       uint32_t* queue) {
  const uint64_t nz = n[0], ny = n[1], nx = n[2];
  const uint64_t plane = ny * nx, total = nz * plane;
  assert(total <= UINT32_MAX);
  if (steps == 0) {
    return 0;
  }
  /* Each voxel enters the queue at most once (as a seed or when it takes
   * the label), so `total` entries always suffice. */
  uint64_t head = 0, tail = 0;
  for (uint64_t i = 0; i < total; i++) {
    if (lab[i] == label) {
      queue[tail++] = (uint32_t) i;
    }
  }
  uint64_t seeds = tail;
  for (uint32_t layer = 0; layer < steps && head < tail; layer++) {
    uint64_t end = tail;
    for (; head < end; head++) {
      uint64_t i = queue[head];
      uint64_t z = i / plane, y = i / nx % ny, x = i % nx;
      uint64_t nb[6];
      int count = 0;
      if (x > 0) {
        nb[count++] = i - 1;
      }
      if (x + 1 < nx) {
        nb[count++] = i + 1;
      }
      if (y > 0) {
        nb[count++] = i - nx;
      }
      if (y + 1 < ny) {
        nb[count++] = i + nx;
      }
      if (z > 0) {
        nb[count++] = i - plane;
      }
      if (z + 1 < nz) {
        nb[count++] = i + plane;
      }
      for (int k = 0; k < count; k++) {
        uint64_t j = nb[k];
        if (lab[j] == 0 && allowed[j] && d[j] <= d[i]) {
          lab[j] = label;
          queue[tail++] = (uint32_t) j;
        }
      }
    }
  }
  return tail - seeds;
}
