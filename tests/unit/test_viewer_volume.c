/* test_viewer_volume.c: MRC volumes mapped for the viewer: every supported
 * mode maps and converts to the values written, extended headers are
 * skipped, corrupt and truncated files are refused with a sentence, float16
 * conversion, statistics, samples and percentiles. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "viewer/viewer_volume.h"


/* Writes an MRC of `shape` and `mode` holding `data` (already encoded) to
 * a temporary file; returns its path (free it). */
static char* write_mrc(core_shape_t shape,
                       int32_t mode,
                       uint32_t ext_len,
                       const void* data,
                       size_t len) {
  char* path = strdup("/tmp/test_viewer_volume-XXXXXX");
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = shape;
  h.mode = mode;
  h.voxel_size[0] = h.voxel_size[1] = h.voxel_size[2] = 2.0;
  h.ext_header_len = ext_len;
  uint8_t head[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, head);
  cr_assert_eq(write(fd, head, sizeof(head)), (ssize_t) sizeof(head));
  if (ext_len > 0) {
    uint8_t* ext = calloc(1, ext_len);
    cr_assert_eq(write(fd, ext, ext_len), (ssize_t) ext_len);
    free(ext);
  }
  cr_assert_eq(write(fd, data, len), (ssize_t) len);
  close(fd);
  return path;
}


/* A float ramp with negatives, exactly representable in every mode. */
static float ramp(size_t i) {
  return (float) ((int) (i % 97) - 40);
}


static uint16_t float_to_half(float f) {
  /* Exact for the small integers of ramp(). */
  if (f == 0) {
    return 0;
  }
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  uint32_t sign = (bits >> 16) & 0x8000;
  int32_t exp = (int32_t) ((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = (bits >> 13) & 0x3ff;
  return (uint16_t) (sign | (uint32_t) exp << 10 | mant);
}


static void check_mode(int32_t mode, size_t itemsize, uint32_t ext_len) {
  core_shape_t shape = {{5, 6, 7}};
  size_t n = 5 * 6 * 7;
  uint8_t* data = malloc(n * itemsize);
  for (size_t i = 0; i < n; i++) {
    float v = ramp(i);
    switch (mode) {
    case CORE_MRC_MODE_INT8:
      data[i] = (uint8_t) (int8_t) v;
      break;
    case CORE_MRC_MODE_INT16: {
      int16_t s = (int16_t) v;
      memcpy(data + 2 * i, &s, 2);
      break;
    }
    case CORE_MRC_MODE_UINT16: {
      uint16_t u = (uint16_t) (v + 40);
      memcpy(data + 2 * i, &u, 2);
      break;
    }
    case CORE_MRC_MODE_FLOAT16: {
      uint16_t h = float_to_half(v);
      memcpy(data + 2 * i, &h, 2);
      break;
    }
    default:
      memcpy(data + 4 * i, &v, 4);
      break;
    }
  }
  char* path = write_mrc(shape, mode, ext_len, data, n * itemsize);
  viewer_volume_t vol;
  char err[256] = "";
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), 0,
               "mode %d: %s", mode, err);
  cr_assert_eq(vol.mode, mode);
  cr_assert_eq(vol.itemsize, itemsize);
  cr_assert_eq(vol.shape.d[0], 5);
  cr_assert_eq(vol.shape.d[2], 7);
  cr_assert_eq(vol.data - vol.map, CORE_MRC_HEADER_LEN + ext_len);
  float off = mode == CORE_MRC_MODE_UINT16 ? 40.0f : 0.0f;
  for (uint32_t z = 0; z < 5; z++) {
    for (uint32_t y = 0; y < 6; y++) {
      for (uint32_t x = 0; x < 7; x++) {
        size_t i = ((size_t) z * 6 + y) * 7 + x;
        cr_assert_float_eq(viewer_volume_value(&vol, z, y, x), ramp(i) + off,
                           1e-6, "mode %d voxel %zu", mode, i);
      }
    }
  }
  float* all = malloc(n * sizeof(float));
  viewer_convert_to_float(vol.data, vol.mode, n, all);
  for (size_t i = 0; i < n; i++) {
    cr_assert_float_eq(all[i], ramp(i) + off, 1e-6);
  }
  free(all);
  viewer_volume_close(&vol);
  cr_assert_null(vol.map);
  viewer_volume_close(&vol); /* twice is fine */
  unlink(path);
  free(path);
  free(data);
}


Test(viewer_volume, int8_maps_and_converts, .timeout = 10) {
  check_mode(CORE_MRC_MODE_INT8, 1, 0);
}


Test(viewer_volume, int16_maps_and_converts, .timeout = 10) {
  check_mode(CORE_MRC_MODE_INT16, 2, 0);
}


Test(viewer_volume, float32_maps_and_converts, .timeout = 10) {
  check_mode(CORE_MRC_MODE_FLOAT32, 4, 0);
}


Test(viewer_volume, uint16_maps_and_converts, .timeout = 10) {
  check_mode(CORE_MRC_MODE_UINT16, 2, 0);
}


Test(viewer_volume, float16_maps_and_converts, .timeout = 10) {
  check_mode(CORE_MRC_MODE_FLOAT16, 2, 0);
}


Test(viewer_volume, extended_header_is_skipped, .timeout = 10) {
  check_mode(CORE_MRC_MODE_FLOAT32, 4, 1024);
}


Test(viewer_volume, truncated_file_is_refused, .timeout = 10) {
  core_shape_t shape = {{4, 4, 4}};
  float data[32] = {0};
  /* Half the voxels the header announces. */
  char* path = write_mrc(shape, CORE_MRC_MODE_FLOAT32, 0, data, sizeof(data));
  viewer_volume_t vol;
  char err[256] = "";
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, path) != NULL, "%s", err);
  cr_assert_null(vol.map);
  unlink(path);
  free(path);
}


Test(viewer_volume, short_and_foreign_files_are_refused, .timeout = 10) {
  char path[] = "/tmp/test_viewer_volume-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(write(fd, "hello", 5) == 5);
  viewer_volume_t vol;
  char err[256] = "";
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, "not an MRC file") != NULL, "%s", err);
  uint8_t zeros[2048] = {0};
  cr_assert(write(fd, zeros, sizeof(zeros)) == sizeof(zeros));
  close(fd);
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), -EINVAL);
  cr_assert(err[0] != '\0');
  unlink(path);
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), -ENOENT);
  cr_assert(strstr(err, "cannot open") != NULL, "%s", err);
  cr_assert_eq(viewer_volume_open("/tmp", &vol, err, sizeof(err)), -EINVAL);
}


Test(viewer_volume, half_floats_convert, .timeout = 10) {
  cr_assert_eq(viewer_half_to_float(0x0000), 0.0f);
  cr_assert_eq(viewer_half_to_float(0x3c00), 1.0f);
  cr_assert_eq(viewer_half_to_float(0xc000), -2.0f);
  cr_assert_eq(viewer_half_to_float(0x7bff), 65504.0f);
  cr_assert_float_eq(viewer_half_to_float(0x0001), 5.960464477539063e-8f,
                     1e-12);
  cr_assert(isinf(viewer_half_to_float(0x7c00)));
  cr_assert(isnan(viewer_half_to_float(0x7e00)));
  cr_assert(signbit(viewer_half_to_float(0x8000)));
}


Test(viewer_volume, stats_skip_non_finite_and_honour_cancel, .timeout = 10) {
  core_shape_t shape = {{2, 3, 4}};
  float data[24];
  for (int i = 0; i < 24; i++) {
    data[i] = (float) i;
  }
  data[5] = NAN;
  data[7] = INFINITY;
  char* path = write_mrc(shape, CORE_MRC_MODE_FLOAT32, 0, data, sizeof(data));
  viewer_volume_t vol;
  char err[256];
  cr_assert_eq(viewer_volume_open(path, &vol, err, sizeof(err)), 0, "%s", err);
  viewer_stats_t st;
  cr_assert_eq(viewer_volume_stats(&vol, NULL, NULL, NULL, &st), 0);
  cr_assert_eq(st.count, 22);
  cr_assert_float_eq(st.min, 0, 1e-9);
  cr_assert_float_eq(st.max, 23, 1e-9);
  double sum = 0;
  for (int i = 0; i < 24; i++) {
    sum += (i == 5 || i == 7) ? 0 : i;
  }
  cr_assert_float_eq(st.mean, sum / 22, 1e-9);
  atomic_bool cancel = true;
  cr_assert_eq(viewer_volume_stats(&vol, &cancel, NULL, NULL, &st), -ECANCELED);
  float sample[64];
  size_t n = viewer_volume_sample(&vol, 64, sample);
  cr_assert_eq(n, 22, "every finite voxel when the sample is large");
  n = viewer_volume_sample(&vol, 5, sample);
  cr_assert(n >= 1 && n <= 5);
  viewer_volume_close(&vol);
  unlink(path);
  free(path);
}


static int cmp_float(const void* a, const void* b) {
  float x = *(const float*) a, y = *(const float*) b;
  return (x > y) - (x < y);
}


Test(viewer_volume, percentiles_match_sorting, .timeout = 10) {
  enum {
    N = 10001
  };
  static float vals[N], sorted[N];
  srand(7);
  for (int round = 0; round < 20; round++) {
    size_t n = (size_t) (1 + rand() % N);
    for (size_t i = 0; i < n; i++) {
      /* Many duplicates in some rounds. */
      vals[i] = (float) (rand() % (round % 2 ? 10 : 100000)) - 50;
    }
    memcpy(sorted, vals, n * sizeof(float));
    qsort(sorted, n, sizeof(float), cmp_float);
    double plo = (double) (rand() % 50), phi = 50 + (double) (rand() % 51);
    double lo, hi;
    cr_assert_eq(viewer_percentiles(vals, n, plo, phi, &lo, &hi), 0);
    size_t klo = (size_t) (plo / 100 * (double) (n - 1) + 0.5);
    size_t khi = (size_t) (phi / 100 * (double) (n - 1) + 0.5);
    cr_assert_eq(lo, sorted[klo], "round %d n %zu p %.0f", round, n, plo);
    cr_assert_eq(hi, sorted[khi], "round %d n %zu p %.0f", round, n, phi);
  }
  double lo, hi;
  cr_assert_eq(viewer_percentiles(vals, 0, 1, 99, &lo, &hi), -EINVAL);
}


Test(viewer_volume, mode_names, .timeout = 10) {
  cr_assert_str_eq(viewer_mode_name(0), "int8");
  cr_assert_str_eq(viewer_mode_name(12), "float16");
  cr_assert_str_eq(viewer_mode_name(4), "unknown");
}
