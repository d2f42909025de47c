/* preview_bin.c: binary preview messages (raw and zstd). See
 * preview_bin.h. */
#include "core/preview_bin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/fail.h"
#include "core/timefmt.h"

static const char* enc_names[CORE_ENC_COUNT] = {"base64", "raw", "zstd"};


const char* core_encoding_name(core_encoding_t e) {
  return (unsigned) e < CORE_ENC_COUNT ? enc_names[e] : "?";
}


int core_encoding_parse(const char* s, size_t len, core_encoding_t* out) {
  static const struct {
    const char* name;
    core_encoding_t enc;
  } names[] = {{"base64", CORE_ENC_BASE64},
               {"json", CORE_ENC_BASE64},
               {"raw", CORE_ENC_RAW},
               {"binary", CORE_ENC_RAW},
               {"zstd", CORE_ENC_ZSTD}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0) {
      *out = names[i].enc;
      return 0;
    }
  }
  return -EINVAL;
}


int core_preview_bin_head(const char* job_id,
                          uint64_t seq,
                          int64_t ts_us,
                          const core_shape_t* shape,
                          uint32_t scale,
                          core_encoding_t enc,
                          size_t payload_len,
                          uint8_t* out,
                          size_t cap) {
  if (cap < 4 || strlen(job_id) > 64 || strpbrk(job_id, "\"\\") != NULL) {
    return -ENAMETOOLONG;
  }
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(ts_us, ts);
  int n = snprintf((char*) out + 4, cap - 4,
                   "{\"type\":\"preview\",\"job_id\":\"%s\",\"seq\":%llu,"
                   "\"timestamp\":\"%s\",\"data\":{\"scale\":[%u,%u,%u],"
                   "\"shape\":[%u,%u,%u],\"dtype\":\"uint8\","
                   "\"encoding\":\"%s\",\"payload_bytes\":%zu}}",
                   job_id, (unsigned long long) seq, ts, scale, scale, scale,
                   shape->d[0], shape->d[1], shape->d[2],
                   core_encoding_name(enc), payload_len);
  if (n < 0 || (size_t) n >= cap - 4) {
    return -ENAMETOOLONG;
  }
  out[0] = (uint8_t) ((unsigned) n >> 24);
  out[1] = (uint8_t) ((unsigned) n >> 16);
  out[2] = (uint8_t) ((unsigned) n >> 8);
  out[3] = (uint8_t) n;
  return n + 4;
}


size_t core_zstd_bound(size_t n) {
  return ZSTD_compressBound(n);
}


long core_zstd_compress(const uint8_t* src,
                        size_t n,
                        uint8_t* dst,
                        size_t cap,
                        int level) {
  size_t r = ZSTD_compress(dst, cap, src, n, level);
  return ZSTD_isError(r) ? -EIO : (long) r;
}


int core_preview_bin_decode(const uint8_t* bytes,
                            size_t len,
                            const core_shape_t* volume,
                            core_server_msg_t* msg,
                            core_preview_t* out,
                            char* err,
                            size_t err_len) {
  memset(out, 0, sizeof(*out));
  memset(msg, 0, sizeof(*msg));
  if (len < 4) {
    return core_fail(err, err_len,
                     "binary message shorter than its length field");
  }
  size_t head_len = ((size_t) bytes[0] << 24) | ((size_t) bytes[1] << 16) |
                    ((size_t) bytes[2] << 8) | bytes[3];
  if (head_len > len - 4 || head_len > 65536) {
    return core_fail(err, err_len,
                     "binary header length %zu exceeds the message", head_len);
  }
  int rc =
      core_msg_decode((const char*) bytes + 4, head_len, msg, err, err_len);
  if (rc != 0) {
    return rc;
  }
  if (strcmp(msg->type, "preview") != 0) {
    core_msg_clear(msg);
    return core_fail(err, err_len, "binary messages must be previews, not '%s'",
                     msg->type);
  }
  const json_t* data = msg->data;
  const char* enc_s = json_string_value(json_object_get(data, "encoding"));
  core_encoding_t enc;
  if (enc_s == NULL || core_encoding_parse(enc_s, strlen(enc_s), &enc) != 0 ||
      enc == CORE_ENC_BASE64) {
    core_msg_clear(msg);
    return core_fail(err, err_len, "data.encoding must be \"raw\" or \"zstd\"");
  }
  const json_t* pb = json_object_get(data, "payload_bytes");
  size_t payload_len = len - 4 - head_len;
  if (!json_is_integer(pb) || (size_t) json_integer_value(pb) != payload_len) {
    core_msg_clear(msg);
    return core_fail(
        err, err_len,
        "data.payload_bytes does not match the %zu bytes that follow",
        payload_len);
  }
  rc = core_msg_preview_geometry(data, volume, out, err, err_len);
  if (rc != 0) {
    core_msg_clear(msg);
    return rc;
  }
  size_t want = (size_t) core_shape_voxels(&out->shape);
  const uint8_t* payload = bytes + 4 + head_len;
  if (enc == CORE_ENC_RAW && payload_len != want) {
    core_msg_clear(msg);
    return core_fail(err, err_len, "raw payload has %zu bytes, shape needs %zu",
                     payload_len, want);
  }
  if (enc == CORE_ENC_ZSTD) {
    unsigned long long content = ZSTD_getFrameContentSize(payload, payload_len);
    if (content != want) {
      core_msg_clear(msg);
      return core_fail(err, err_len,
                       "zstd payload does not announce exactly %zu bytes",
                       want);
    }
  }
  out->voxels = malloc(want > 0 ? want : 1);
  if (out->voxels == NULL) {
    core_msg_clear(msg);
    return -ENOMEM;
  }
  if (enc == CORE_ENC_RAW) {
    memcpy(out->voxels, payload, want);
  } else {
    size_t got = ZSTD_decompress(out->voxels, want, payload, payload_len);
    if (ZSTD_isError(got) || got != want) {
      free(out->voxels);
      out->voxels = NULL;
      core_msg_clear(msg);
      return core_fail(err, err_len,
                       "zstd payload does not decompress to %zu bytes", want);
    }
  }
  out->len = want;
  return 0;
}
