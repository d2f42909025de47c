/* preview_bin.h: the opt-in binary preview encodings (protocol v1
 * extension, docs/protocol.md "Binary previews"). A binary WebSocket message:
 *   uint32 big-endian H | H bytes of JSON envelope | payload
 * where the envelope is the preview message without "payload" and with
 * data.encoding ("raw" or "zstd") and data.payload_bytes. "raw" carries the
 * C-order voxels; "zstd" one zstd frame that decompresses to them. Pure;
 * any thread. */
#ifndef CORE_PREVIEW_BIN_H
#define CORE_PREVIEW_BIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "core/shape.h"

typedef enum {
  CORE_ENC_BASE64 = 0, /* the reference's JSON text + base64 (default) */
  CORE_ENC_RAW = 1,    /* binary message, raw voxels */
  CORE_ENC_ZSTD = 2    /* binary message, zstd-compressed voxels */
} core_encoding_t;

#define CORE_ENC_COUNT 3
#define CORE_PREVIEW_BIN_HEAD_MAX (CORE_MSG_PREFIX_MAX + 4)

/* "base64", "raw", "zstd"; parse returns 0 or -EINVAL (also accepts
 * "json" for base64 and "binary" for raw). */
const char* core_encoding_name(core_encoding_t e);
int core_encoding_parse(const char* s, size_t len, core_encoding_t* out);

/* Writes the 4-byte length and the JSON envelope of a binary preview into
 * `out` (cap >= CORE_PREVIEW_BIN_HEAD_MAX). Returns the bytes written or
 * -ENAMETOOLONG. */
int core_preview_bin_head(const char* job_id,
                          uint64_t seq,
                          int64_t ts_us,
                          const core_shape_t* shape,
                          uint32_t scale,
                          core_encoding_t enc,
                          size_t payload_len,
                          uint8_t* out,
                          size_t cap);

/* Upper bound of the zstd output for `n` input bytes. */
size_t core_zstd_bound(size_t n);

/* Compresses `n` bytes at `level` into `dst` (cap bytes). Returns the
 * compressed length or -EIO. */
long core_zstd_compress(const uint8_t* src,
                        size_t n,
                        uint8_t* dst,
                        size_t cap,
                        int level);

/* Decodes a whole binary preview message: validates the envelope (as
 * core_msg_decode), the data (scale, shape, dtype, encoding, payload_bytes
 * equal to what follows) and the payload (raw: exactly prod(shape) bytes;
 * zstd: a frame whose content size is exactly prod(shape)). On success
 * fills `msg` (release with core_msg_clear) and `out` (caller frees
 * out->voxels). `volume` as in core_msg_decode_preview. Returns 0, -EINVAL
 * with `err`, or -ENOMEM. */
int core_preview_bin_decode(const uint8_t* bytes,
                            size_t len,
                            const core_shape_t* volume,
                            core_server_msg_t* msg,
                            core_preview_t* out,
                            char* err,
                            size_t err_len);

#endif
