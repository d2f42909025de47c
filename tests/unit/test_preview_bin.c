/* test_preview_bin.c: binary preview messages (raw and zstd): the header
 * layout, round trips through the decoder, and hostile messages rejected
 * before any large allocation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/preview_bin.h"

#define JOB "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define TS_US 1795896000123456LL


/* Builds a whole binary message for `voxels` in `enc`; caller frees. */
static uint8_t* build(const core_shape_t* shape,
                      uint32_t scale,
                      const uint8_t* voxels,
                      size_t n,
                      core_encoding_t enc,
                      size_t* len) {
  size_t cap = CORE_PREVIEW_BIN_HEAD_MAX + core_zstd_bound(n) + n;
  uint8_t* payload = malloc(cap);
  size_t payload_len = n;
  if (enc == CORE_ENC_ZSTD) {
    long z = core_zstd_compress(voxels, n, payload, cap, 1);
    cr_assert_gt(z, 0);
    payload_len = (size_t) z;
  } else {
    memcpy(payload, voxels, n);
  }
  uint8_t* msg = malloc(CORE_PREVIEW_BIN_HEAD_MAX + payload_len);
  int head = core_preview_bin_head(JOB, 9, TS_US, shape, scale, enc,
                                   payload_len, msg, CORE_PREVIEW_BIN_HEAD_MAX);
  cr_assert_gt(head, 4);
  memcpy(msg + head, payload, payload_len);
  free(payload);
  *len = (size_t) head + payload_len;
  return msg;
}


static void fill(uint8_t* v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    v[i] = (uint8_t) ((i * 7 + i / 13) % 3);
  }
}


Test(preview_bin, encoding_names_round_trip, .timeout = 10) {
  core_encoding_t e;
  cr_assert_eq(core_encoding_parse("zstd", 4, &e), 0);
  cr_assert_eq(e, CORE_ENC_ZSTD);
  cr_assert_eq(core_encoding_parse("binary", 6, &e), 0);
  cr_assert_eq(e, CORE_ENC_RAW);
  cr_assert_eq(core_encoding_parse("json", 4, &e), 0);
  cr_assert_eq(e, CORE_ENC_BASE64);
  cr_assert_eq(core_encoding_parse("gzip", 4, &e), -EINVAL);
  cr_assert_str_eq(core_encoding_name(CORE_ENC_RAW), "raw");
}


Test(preview_bin, raw_and_zstd_decode_to_the_same_voxels, .timeout = 10) {
  core_shape_t volume = {{9, 10, 11}};
  core_shape_t shape = {{5, 5, 6}}; /* ceil(volume / 2) */
  size_t n = 5 * 5 * 6;
  uint8_t voxels[150];
  fill(voxels, n);
  for (int e = CORE_ENC_RAW; e <= CORE_ENC_ZSTD; e++) {
    size_t len = 0;
    uint8_t* msg = build(&shape, 2, voxels, n, (core_encoding_t) e, &len);
    core_server_msg_t m;
    core_preview_t p;
    char err[256];
    cr_assert_eq(
        core_preview_bin_decode(msg, len, &volume, &m, &p, err, sizeof(err)), 0,
        "%s", err);
    cr_assert_str_eq(m.type, "preview");
    cr_assert_eq(m.seq, 9);
    cr_assert_eq(m.ts_us, TS_US);
    cr_assert_eq(p.len, n);
    cr_assert_eq(p.scale[0], 2);
    cr_assert_eq(memcmp(p.voxels, voxels, n), 0);
    free(p.voxels);
    core_msg_clear(&m);
    free(msg);
  }
}


Test(preview_bin, header_length_is_big_endian_json, .timeout = 10) {
  core_shape_t shape = {{1, 1, 2}};
  uint8_t buf[CORE_PREVIEW_BIN_HEAD_MAX];
  int n = core_preview_bin_head(JOB, 1, TS_US, &shape, 1, CORE_ENC_RAW, 2, buf,
                                sizeof(buf));
  size_t h = ((size_t) buf[0] << 24) | ((size_t) buf[1] << 16) |
             ((size_t) buf[2] << 8) | buf[3];
  cr_assert_eq(h + 4, (size_t) n);
  json_error_t jerr;
  json_t* env = json_loadb((const char*) buf + 4, h, 0, &jerr);
  cr_assert_not_null(env, "%s", jerr.text);
  json_t* data = json_object_get(env, "data");
  cr_assert_str_eq(json_string_value(json_object_get(data, "encoding")), "raw");
  cr_assert_eq(json_integer_value(json_object_get(data, "payload_bytes")), 2);
  cr_assert_null(json_object_get(data, "payload"));
  json_decref(env);
}


Test(preview_bin, hostile_messages_are_rejected, .timeout = 10) {
  core_shape_t shape = {{4, 4, 4}};
  uint8_t voxels[64];
  fill(voxels, 64);
  size_t len = 0;
  uint8_t* good = build(&shape, 1, voxels, 64, CORE_ENC_RAW, &len);
  core_server_msg_t m;
  core_preview_t p;
  char err[256];
  /* Truncated by one byte: payload_bytes no longer matches. */
  cr_assert_eq(
      core_preview_bin_decode(good, len - 1, NULL, &m, &p, err, sizeof(err)),
      -EINVAL);
  /* A header length pointing past the end. */
  uint8_t bad_len[8] = {0x7f, 0xff, 0xff, 0xff, '{', '}', 0, 0};
  cr_assert_eq(core_preview_bin_decode(bad_len, sizeof(bad_len), NULL, &m, &p,
                                       err, sizeof(err)),
               -EINVAL);
  /* Shorter than the length field. */
  cr_assert_eq(core_preview_bin_decode(good, 3, NULL, &m, &p, err, sizeof(err)),
               -EINVAL);
  /* The shape disagrees with the job's volume. */
  core_shape_t other = {{8, 4, 4}};
  cr_assert_eq(
      core_preview_bin_decode(good, len, &other, &m, &p, err, sizeof(err)),
      -EINVAL);
  cr_assert(strstr(err, "shape") != NULL, "%s", err);
  free(good);
  /* zstd that announces another size than the shape needs. */
  core_shape_t small = {{2, 4, 4}};
  uint8_t* z = build(&small, 1, voxels, 32, CORE_ENC_ZSTD, &len);
  /* Patch the envelope to claim a 4x4x4 shape: same header length. */
  char* shape_at = strstr((char*) z + 4, "\"shape\":[2,4,4]");
  cr_assert_not_null(shape_at);
  shape_at[9] = '4';
  cr_assert_eq(core_preview_bin_decode(z, len, NULL, &m, &p, err, sizeof(err)),
               -EINVAL);
  cr_assert(strstr(err, "zstd") != NULL, "%s", err);
  free(z);
}
