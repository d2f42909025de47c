/* phantom.h: a synthetic cryo-ET tomogram for demos and tests: a few
 * vesicles (spherical membranes, two dark leaflets), scattered particles
 * (dense blobs) and Gaussian noise, float32, deterministic from a seed.
 * Generated one Z slice at a time, so any size streams to disk in little
 * memory. Pure; any thread. */
#ifndef CORE_PHANTOM_H
#define CORE_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

#define CORE_PHANTOM_MAX_VESICLES 12
#define CORE_PHANTOM_MAX_PARTICLES 400

typedef struct {
  float c[3]; /* centre z, y, x in voxels */
  float r;    /* radius in voxels */
} core_phantom_ball_t;

typedef struct {
  core_shape_t shape;
  uint64_t seed;
  float noise_sigma;
  unsigned vesicle_count, particle_count;
  core_phantom_ball_t vesicles[CORE_PHANTOM_MAX_VESICLES];
  core_phantom_ball_t particles[CORE_PHANTOM_MAX_PARTICLES];
} core_phantom_t;

/* Places the structures of a phantom of `shape` from `seed`; the noise has
 * standard deviation `noise_sigma` (0.5 looks like a real tomogram). */
void core_phantom_init(core_phantom_t* p,
                       const core_shape_t* shape,
                       uint64_t seed,
                       float noise_sigma);

/* Fills `out` (shape.d[1] * shape.d[2] floats, X fastest) with slice `z`. */
void core_phantom_slice(const core_phantom_t* p, uint32_t z, float* out);

#endif
