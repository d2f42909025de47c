/* phantom.c: the synthetic tomogram of phantom.h. Randomness comes from a
 * counter-based hash (splitmix64) of (seed, voxel index), so each slice is
 * computed on its own and the result does not depend on the order. Pure. */
#include "core/phantom.h"

#include <math.h>
#include <string.h>


static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}


/* Uniform in (0, 1). */
static double unit(uint64_t h) {
  return ((double) (h >> 11) + 0.5) / 9007199254740992.0;
}


static float uniform_in(uint64_t* state, float lo, float hi) {
  *state = mix(*state);
  return lo + (hi - lo) * (float) unit(*state);
}


void core_phantom_init(core_phantom_t* p,
                       const core_shape_t* shape,
                       uint64_t seed,
                       float noise_sigma) {
  memset(p, 0, sizeof(*p));
  p->shape = *shape;
  p->seed = seed;
  p->noise_sigma = noise_sigma;
  uint64_t st = mix(seed ^ 0x5eedull);
  float dmin = (float) shape->d[0];
  for (int i = 1; i < 3; i++) {
    if ((float) shape->d[i] < dmin) {
      dmin = (float) shape->d[i];
    }
  }
  uint64_t voxels = core_shape_voxels(shape);
  p->vesicle_count = 2 + (unsigned) (mix(st) % 5);
  for (unsigned i = 0; i < p->vesicle_count; i++) {
    core_phantom_ball_t* b = &p->vesicles[i];
    b->r = uniform_in(&st, 0.12f, 0.3f) * dmin;
    for (int a = 0; a < 3; a++) {
      b->c[a] = uniform_in(&st, 0.15f, 0.85f) * (float) shape->d[a];
    }
  }
  uint64_t want = voxels / 20000 + 4;
  p->particle_count = want > CORE_PHANTOM_MAX_PARTICLES
                          ? CORE_PHANTOM_MAX_PARTICLES
                          : (unsigned) want;
  for (unsigned i = 0; i < p->particle_count; i++) {
    core_phantom_ball_t* b = &p->particles[i];
    b->r = uniform_in(&st, 0.015f, 0.035f) * dmin + 1.0f;
    for (int a = 0; a < 3; a++) {
      b->c[a] = uniform_in(&st, 0.0f, 1.0f) * (float) shape->d[a];
    }
  }
}


/* Density of the membranes at (z, y, x): dense, which cryo-ET shows dark,
 * so values go negative. */
static float membranes(const core_phantom_t* p, float z, float y, float x) {
  float v = 0.0f;
  for (unsigned i = 0; i < p->vesicle_count; i++) {
    const core_phantom_ball_t* b = &p->vesicles[i];
    float dz = z - b->c[0], dy = y - b->c[1], dx = x - b->c[2];
    float d = sqrtf(dz * dz + dy * dy + dx * dx) - b->r;
    /* Two leaflets 1.5 voxels either side of the mid-plane. */
    float l1 = (d - 1.5f) / 1.2f, l2 = (d + 1.5f) / 1.2f;
    v -= expf(-l1 * l1) + expf(-l2 * l2);
  }
  return v;
}


void core_phantom_slice(const core_phantom_t* p, uint32_t z, float* out) {
  uint32_t ny = p->shape.d[1], nx = p->shape.d[2];
  uint64_t base = (uint64_t) z * ny * nx;
  float fz = (float) z;
  for (uint32_t y = 0; y < ny; y++) {
    for (uint32_t x = 0; x < nx; x++) {
      uint64_t i = base + (uint64_t) y * nx + x;
      /* Box-Muller from two hashes of the voxel index. */
      uint64_t h1 = mix(p->seed * 0x100000001b3ull ^ (i * 2));
      uint64_t h2 = mix(h1 ^ (i * 2 + 1));
      double g = sqrt(-2.0 * log(unit(h1))) * cos(6.283185307179586 * unit(h2));
      out[(size_t) y * nx + x] =
          membranes(p, fz, (float) y, (float) x) + p->noise_sigma * (float) g;
    }
  }
  /* Particles: only those crossing this slice, only over their own box. */
  for (unsigned i = 0; i < p->particle_count; i++) {
    const core_phantom_ball_t* b = &p->particles[i];
    float dz = fz - b->c[0];
    if (dz >= b->r || dz <= -b->r) {
      continue;
    }
    float rr = b->r * b->r;
    int y0 = (int) floorf(b->c[1] - b->r), y1 = (int) ceilf(b->c[1] + b->r);
    int x0 = (int) floorf(b->c[2] - b->r), x1 = (int) ceilf(b->c[2] + b->r);
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < (int) ny; y++) {
      for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < (int) nx; x++) {
        float dy = (float) y - b->c[1], dx = (float) x - b->c[2];
        float q = (dz * dz + dy * dy + dx * dx) / rr;
        if (q < 1.0f) {
          out[(size_t) y * nx + (size_t) x] -= 1.5f * (1.0f - q);
        }
      }
    }
  }
}
