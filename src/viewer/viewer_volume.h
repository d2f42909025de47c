/* viewer_volume.h: a tomogram opened for viewing: an MRC2014 file mapped
 * read-only into memory (never read whole), its header, voxel access in any
 * supported mode (int8, int16, float32, uint16, float16), statistics and
 * samples for automatic window/level. No GTK; any thread (a volume is
 * immutable once opened; stats take a cancel flag). Neighbours: rendering
 * of slices (viewer_render.h), label volumes (viewer_labels.h). */
#ifndef VIEWER_VOLUME_H
#define VIEWER_VOLUME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mrc.h"

typedef struct {
  core_mrc_header_t header;
  core_shape_t shape; /* Z, Y, X (copy of header.shape) */
  int32_t mode;       /* core_mrc_mode_t */
  size_t itemsize;    /* bytes per voxel */
  const uint8_t* map; /* the whole file, mmap'ed */
  size_t map_len;
  const uint8_t* data; /* first voxel */
  uint64_t file_len;
} viewer_volume_t;

typedef struct {
  double min, max, mean, stddev;
  uint64_t count; /* finite voxels */
} viewer_stats_t;

/* Opens and maps `path`. Returns 0, or a negative errno / -EINVAL with a
 * sentence in `err` (cannot open, not an MRC file, unsupported mode,
 * truncated...). *out is filled on 0; release with viewer_volume_close. */
int viewer_volume_open(const char* path,
                       viewer_volume_t* out,
                       char* err,
                       size_t err_len);

/* Unmaps. Zeroes `vol`; safe on a zeroed or closed volume. */
void viewer_volume_close(viewer_volume_t* vol);

/* IEEE 754 half (binary16) bits to float. */
float viewer_half_to_float(uint16_t h);

/* Voxel (z, y, x) as a double (no bounds check beyond assert). */
double viewer_volume_value(const viewer_volume_t* vol,
                           uint32_t z,
                           uint32_t y,
                           uint32_t x);

/* Converts `count` voxels of `mode` starting at `src` to floats. */
void viewer_convert_to_float(const uint8_t* src,
                             int32_t mode,
                             size_t count,
                             float* out);

/* Min, max, mean and standard deviation of every finite voxel, one pass
 * over the mapping. Polls `cancel` (may be NULL) between Z slices and
 * returns -ECANCELED when it is set; `progress` (may be NULL) receives
 * slices done / total. Returns 0. */
int viewer_volume_stats(const viewer_volume_t* vol,
                        const atomic_bool* cancel,
                        void (*progress)(double fraction, void* user),
                        void* user,
                        viewer_stats_t* out);

/* Up to `max_count` finite voxels spread evenly over the volume (a fixed
 * stride through it), as floats into `out`. Returns how many were taken. */
size_t viewer_volume_sample(const viewer_volume_t* vol,
                            size_t max_count,
                            float* out);

/* The `p_lo` and `p_hi` percentiles (0..100) of `vals` (`count` finite
 * values; reordered in place). Returns 0, or -EINVAL when count is 0. */
int viewer_percentiles(float* vals,
                       size_t count,
                       double p_lo,
                       double p_hi,
                       double* lo,
                       double* hi);

/* Name of an MRC mode: "int8", "int16", "float32", "uint16", "float16". */
const char* viewer_mode_name(int32_t mode);

#endif
