/* shape.h: volume shapes (Z, Y, X) and the arithmetic of downsampled
 * previews: preview shape = ceil(shape / scale) per axis, so that upsampling
 * a preview by `scale` covers the volume exactly (preview voxel (i,j,k)
 * stands for volume voxels [i*s,(i+1)*s) x ... clipped at the border). */
#ifndef CORE_SHAPE_H
#define CORE_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#define CORE_SHAPE_MAX_DIM 4096u
#define CORE_SCALE_MAX 16u

/* d[0] = Z (slowest), d[1] = Y, d[2] = X (fastest), C order. */
typedef struct {
  uint32_t d[3];
} core_shape_t;

/* True when every axis is in 1..CORE_SHAPE_MAX_DIM. */
bool core_shape_is_valid(const core_shape_t* s);

/* Number of voxels z*y*x (fits in uint64 for valid shapes). */
uint64_t core_shape_voxels(const core_shape_t* s);

/* Preview shape for integer `scale` >= 1: ceil(d / scale) per axis. */
core_shape_t core_shape_downsample(const core_shape_t* s, uint32_t scale);

/* Nearest-origin downsampling of a full-resolution uint8 volume `src` of
 * shape `s` into `dst` (core_shape_voxels(downsampled) bytes): each preview
 * voxel takes the value of the first volume voxel of its block. */
void core_shape_downsample_u8(const uint8_t* src,
                              const core_shape_t* s,
                              uint32_t scale,
                              uint8_t* dst);

/* Nearest upsampling of a preview `src` (shape ceil(s/scale)) into a full
 * volume `dst` of shape `s`; the inverse alignment of the function above. */
void core_shape_upsample_u8(const uint8_t* src,
                            const core_shape_t* s,
                            uint32_t scale,
                            uint8_t* dst);

#endif
