/* test_mrc.c: MRC2014 header write/parse round trips, the written layout,
 * each rejection, and (when Debian's python3-mrcfile is there) that a file
 * we write opens in mrcfile without a warning. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mrc.h"


static core_mrc_header_t sample_header(void) {
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = (core_shape_t){{5, 6, 7}};
  h.mode = CORE_MRC_MODE_INT8;
  h.voxel_size[0] = 3.0;
  h.voxel_size[1] = 2.5;
  h.voxel_size[2] = 1.25;
  h.dmin = 0;
  h.dmax = 2;
  h.dmean = 0.5f;
  h.rms = 0.25f;
  return h;
}


static int32_t i32_at(const uint8_t* b, size_t off) {
  return (int32_t) ((uint32_t) b[off] | (uint32_t) b[off + 1] << 8 |
                    (uint32_t) b[off + 2] << 16 | (uint32_t) b[off + 3] << 24);
}


static void put_i32(uint8_t* b, size_t off, int32_t v) {
  uint32_t u = (uint32_t) v;
  for (int i = 0; i < 4; i++) {
    b[off + (size_t) i] = (uint8_t) (u >> (8 * i));
  }
}


static void put_f32(uint8_t* b, size_t off, float f) {
  int32_t v;
  memcpy(&v, &f, sizeof(v));
  put_i32(b, off, v);
}


/* Parses `buf` expecting -EINVAL with `needle` in the message. */
static void expect_reject(const uint8_t* buf,
                          size_t len,
                          uint64_t file_len,
                          const char* needle) {
  core_mrc_header_t h;
  char err[256] = "";
  cr_assert_eq(core_mrc_header_parse(buf, len, file_len, &h, err, sizeof(err)),
               -EINVAL, "accepted, expected \"%s\"", needle);
  cr_assert(strstr(err, needle) != NULL, "\"%s\" lacks \"%s\"", err, needle);
}


Test(mrc, write_then_parse_round_trips, .timeout = 10) {
  int32_t modes[] = {0, 1, 2, 6, 12};
  for (size_t m = 0; m < 5; m++) {
    core_mrc_header_t h = sample_header();
    h.mode = modes[m];
    h.ext_header_len = m == 2 ? 2048 : 0;
    uint8_t buf[CORE_MRC_HEADER_LEN];
    core_mrc_header_write(&h, buf);
    core_mrc_header_t back;
    char err[256];
    int rc = core_mrc_header_parse(buf, sizeof(buf), core_mrc_file_len(&h),
                                   &back, err, sizeof(err));
    cr_assert_eq(rc, 0, "mode %d: %s", h.mode, err);
    cr_assert_eq(memcmp(&back.shape, &h.shape, sizeof(h.shape)), 0);
    cr_assert_eq(back.mode, h.mode);
    cr_assert_eq(back.ext_header_len, h.ext_header_len);
    for (int a = 0; a < 3; a++) {
      cr_assert_float_eq(back.voxel_size[a], h.voxel_size[a], 1e-6);
    }
    cr_assert_float_eq(back.dmax, 2.0f, 1e-6);
    cr_assert_float_eq(back.dmean, 0.5f, 1e-6);
    cr_assert_float_eq(back.rms, 0.25f, 1e-6);
  }
}


Test(mrc, writes_the_mrc2014_layout, .timeout = 10) {
  core_mrc_header_t h = sample_header();
  uint8_t b[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, b);
  cr_assert_eq(i32_at(b, 0), 7); /* nx is the fastest axis */
  cr_assert_eq(i32_at(b, 4), 6);
  cr_assert_eq(i32_at(b, 8), 5);
  cr_assert_eq(i32_at(b, 28), 7); /* mx */
  cr_assert_eq(i32_at(b, 36), 5); /* mz */
  cr_assert_eq(i32_at(b, 64), 1);
  cr_assert_eq(i32_at(b, 68), 2);
  cr_assert_eq(i32_at(b, 72), 3);
  cr_assert_eq(i32_at(b, 88), 1);
  cr_assert_eq(i32_at(b, 108), 20140);
  cr_assert_eq(memcmp(b + 208, "MAP ", 4), 0);
  cr_assert_eq(b[212], 0x44);
  cr_assert_eq(b[213], 0x44);
  cr_assert_eq(i32_at(b, 220), 1);
  float cella_x;
  memcpy(&cella_x, b + 40, 4);
  cr_assert_float_eq(cella_x, 1.25f * 7, 1e-6);
  float alpha;
  memcpy(&alpha, b + 52, 4);
  cr_assert_float_eq(alpha, 90.0f, 1e-6);
}


Test(mrc, reports_sizes, .timeout = 10) {
  core_mrc_header_t h = sample_header();
  h.mode = CORE_MRC_MODE_FLOAT32;
  h.ext_header_len = 100;
  cr_assert_eq(core_mrc_data_offset(&h), 1124);
  cr_assert_eq(core_mrc_file_len(&h), 1124 + 5 * 6 * 7 * 4);
  cr_assert_eq(core_mrc_mode_itemsize(0), 1);
  cr_assert_eq(core_mrc_mode_itemsize(1), 2);
  cr_assert_eq(core_mrc_mode_itemsize(2), 4);
  cr_assert_eq(core_mrc_mode_itemsize(6), 2);
  cr_assert_eq(core_mrc_mode_itemsize(12), 2);
  cr_assert_eq(core_mrc_mode_itemsize(3), 0);
  cr_assert_eq(core_mrc_mode_itemsize(4), 0);
  cr_assert_eq(core_mrc_mode_itemsize(-1), 0);
}


Test(mrc, unset_cell_means_one_angstrom, .timeout = 10) {
  core_mrc_header_t h = sample_header();
  uint8_t b[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, b);
  put_f32(b, 40, 0.0f); /* cella x */
  put_i32(b, 32, 0);    /* my */
  core_mrc_header_t back;
  char err[128];
  cr_assert_eq(core_mrc_header_parse(b, sizeof(b), 0, &back, err, sizeof(err)),
               0, "%s", err);
  cr_assert_float_eq(back.voxel_size[2], 1.0, 1e-12);
  cr_assert_float_eq(back.voxel_size[1], 1.0, 1e-12);
  cr_assert_float_eq(back.voxel_size[0], 3.0, 1e-6);
}


Test(mrc, rejects_each_corrupt_header, .timeout = 10) {
  core_mrc_header_t h = sample_header();
  uint8_t good[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, good);
  uint8_t b[CORE_MRC_HEADER_LEN];

  expect_reject(good, CORE_MRC_HEADER_LEN - 1, 0, "header needs 1024");

  memcpy(b, good, sizeof(b));
  memcpy(b + 208, "MAP\0", 4);
  expect_reject(b, sizeof(b), 0, "MAP ");

  memcpy(b, good, sizeof(b));
  b[212] = 0x11;
  b[213] = 0x11;
  expect_reject(b, sizeof(b), 0, "big-endian MRC files are not supported");

  int32_t bad_modes[] = {3, 4, 5, 7, 101, -1};
  for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
    memcpy(b, good, sizeof(b));
    put_i32(b, 12, bad_modes[i]);
    expect_reject(b, sizeof(b), 0, "unsupported MRC mode");
  }

  int32_t bad_dims[] = {0, -1, 4097, INT32_MAX};
  for (size_t off = 0; off <= 8; off += 4) {
    for (size_t i = 0; i < 4; i++) {
      memcpy(b, good, sizeof(b));
      put_i32(b, off, bad_dims[i]);
      expect_reject(b, sizeof(b), 0, "outside 1..4096");
    }
  }

  memcpy(b, good, sizeof(b));
  put_i32(b, 92, -4);
  expect_reject(b, sizeof(b), 0, "negative extended header");

  /* 5*6*7 int8 voxels after 1024 header bytes: 1234 bytes needed. */
  expect_reject(good, sizeof(good), 1233,
                "truncated MRC file: header announces 1234 bytes, file has "
                "1233");
  memcpy(b, good, sizeof(b));
  put_i32(b, 92, 16);
  expect_reject(b, sizeof(b), 1234, "announces 1250 bytes");
}


Test(mrc, accepts_exact_and_longer_files, .timeout = 10) {
  core_mrc_header_t h = sample_header();
  uint8_t b[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, b);
  core_mrc_header_t back;
  char err[128];
  cr_assert_eq(
      core_mrc_header_parse(b, sizeof(b), 1234, &back, err, sizeof(err)), 0,
      "%s", err);
  cr_assert_eq(
      core_mrc_header_parse(b, sizeof(b), 5000, &back, err, sizeof(err)), 0,
      "%s", err);
  /* An older little-endian stamp (0x44 0x41) is still little-endian. */
  b[213] = 0x41;
  cr_assert_eq(core_mrc_header_parse(b, sizeof(b), 0, &back, err, sizeof(err)),
               0, "%s", err);
}


static const char* find_python(void) {
  return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : NULL;
}


Test(mrc, written_file_opens_in_mrcfile_without_warnings, .timeout = 30) {
  const char* py = find_python();
  if (py == NULL ||
      system("/usr/bin/python3 -c 'import mrcfile' 2>/dev/null") != 0) {
    cr_skip_test("python3-mrcfile is not installed");
  }
  /* A 3-label mask, with the statistics a writer must fill in. */
  core_mrc_header_t h = sample_header();
  size_t n = (size_t) core_shape_voxels(&h.shape);
  uint8_t* data = malloc(n);
  double sum = 0;
  double sum2 = 0;
  for (size_t i = 0; i < n; i++) {
    data[i] = (uint8_t) (i % 3);
    sum += data[i];
  }
  double mean = sum / (double) n;
  for (size_t i = 0; i < n; i++) {
    sum2 += (data[i] - mean) * (data[i] - mean);
  }
  h.dmin = 0;
  h.dmax = 2;
  h.dmean = (float) mean;
  h.rms = (float) __builtin_sqrt(sum2 / (double) n);
  uint8_t hdr[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, hdr);

  char path[] = "/tmp/test_mrc_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE* f = fdopen(fd, "wb");
  cr_assert_eq(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
  cr_assert_eq(fwrite(data, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
  free(data);

  char cmd[512];
  snprintf(
      cmd, sizeof(cmd),
      "/usr/bin/python3 -W error -c \"import io, mrcfile, sys; "
      "m = mrcfile.open('%s', permissive=False); "
      "assert m.data.shape == (5, 6, 7), m.data.shape; "
      "vs = m.voxel_size; "
      "assert (float(vs.x), float(vs.y), float(vs.z)) == (1.25, 2.5, 3.0), vs; "
      "assert int(m.data[0, 0, 2]) == 2; m.close(); "
      "sys.exit(0 if mrcfile.validate('%s', print_file=io.StringIO()) else "
      "3)\"",
      path, path);
  int rc = system(cmd);
  unlink(path);
  cr_assert_eq(rc, 0, "mrcfile refused our file (status %d)", rc);
}
