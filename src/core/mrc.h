/* mrc.h: MRC2014 headers (1024 bytes, little-endian) for tomograms and masks.
 * Axes are stored X fastest; we expose shapes as Z, Y, X. Pure: callers read
 * and write the bytes. */
#ifndef CORE_MRC_H
#define CORE_MRC_H

#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

#define CORE_MRC_HEADER_LEN 1024

typedef enum {
  CORE_MRC_MODE_INT8 = 0,
  CORE_MRC_MODE_INT16 = 1,
  CORE_MRC_MODE_FLOAT32 = 2,
  CORE_MRC_MODE_UINT16 = 6,
  CORE_MRC_MODE_FLOAT16 = 12
} core_mrc_mode_t;

typedef struct {
  core_shape_t shape;     /* nz, ny, nx */
  int32_t mode;           /* one of core_mrc_mode_t */
  double voxel_size[3];   /* Z, Y, X in Angstrom (cella / mx per axis) */
  uint32_t ext_header_len; /* nsymbt: bytes between header and data */
  float dmin, dmax, dmean, rms;
} core_mrc_header_t;

/* Bytes per voxel of `mode`, 0 when the mode is not supported. */
size_t core_mrc_mode_itemsize(int32_t mode);

/* Offset of the first voxel: CORE_MRC_HEADER_LEN + ext_header_len. */
uint64_t core_mrc_data_offset(const core_mrc_header_t* h);

/* Total file size the header implies (offset + voxels * itemsize). */
uint64_t core_mrc_file_len(const core_mrc_header_t* h);

/* Parses a header from `buf` (`len` bytes, >= 1024 needed). `file_len` is
 * the whole file's size, checked against the data the header announces
 * (pass 0 to skip). Returns 0 or -EINVAL with a sentence in `err` (bad
 * magic "MAP ", big-endian stamp, unsupported mode, dims out of range,
 * truncated data...). */
int core_mrc_header_parse(const uint8_t* buf,
                          size_t len,
                          uint64_t file_len,
                          core_mrc_header_t* out,
                          char* err,
                          size_t err_len);

/* Writes a valid MRC2014 header for `h` into `out` (mx=nx etc., cella =
 * voxel_size * n, mapc/r/s = 1,2,3, "MAP ", little-endian stamp,
 * nversion 20140, one label). */
void core_mrc_header_write(const core_mrc_header_t* h,
                           uint8_t out[CORE_MRC_HEADER_LEN]);

#endif
