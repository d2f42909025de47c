/* tus_header.h: the tus 1.0.0 request headers the server reads
 * (docs/protocol.md, "Uploads"): decimal integers (Upload-Offset,
 * Upload-Length, Content-Length), Upload-Checksum, Upload-Metadata and
 * Upload-Concat. Pure functions, no I/O and no allocation; every input is
 * a header value as received, NUL-terminated, of any length. A refusal
 * comes with a sentence for the client in `err` (err_len bytes, may be 0).
 * The server's routes: src/server/cmd_upload*.c. */
#ifndef CORE_TUS_HEADER_H
#define CORE_TUS_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/uuid.h"

#define CORE_TUS_FILENAME_MAX 256 /* bytes, with the NUL */
#define CORE_TUS_METADATA_MAX                                                  \
  2048                        /* bytes of Upload-Metadata, with the NUL        \
                               */
#define CORE_TUS_PARTS_MAX 64 /* parts a final upload may name */

/* A decimal integer: 1 to 19 digits (leading zeros allowed), at most
 * INT64_MAX (records store signed 64-bit integers), optionally between
 * spaces or tabs. No sign, no other character. */
bool core_tus_parse_u64(const char* s, uint64_t* out);

typedef enum {
  CORE_TUS_SHA1,
  CORE_TUS_SHA256
} core_tus_algo_t;

typedef struct {
  core_tus_algo_t algo;
  uint8_t digest[32];
  size_t len; /* 20 (sha1) or 32 (sha256) */
} core_tus_checksum_t;

/* Upload-Checksum: "<algorithm> <base64 digest>", the algorithm sha1 or
 * sha256 (lowercase), one space, the strict base64 of a digest of that
 * algorithm's length. Returns 0, -ENOTSUP (another algorithm) or -EINVAL. */
int core_tus_parse_checksum(const char* v,
                            core_tus_checksum_t* out,
                            char* err,
                            size_t err_len);

typedef struct {
  char filename[CORE_TUS_FILENAME_MAX]; /* decoded, or "" */
  char sha256[65];                      /* 64 lowercase hex digits, or "" */
} core_tus_metadata_t;

/* Upload-Metadata: pairs "key" or "key base64" separated by ',' (spaces
 * around them ignored). Keys are non-empty, unique, printable ASCII
 * without ' ' or ','; values strict base64. The whole value is printable
 * ASCII and shorter than CORE_TUS_METADATA_MAX, so it can be stored and
 * echoed as it came. Known keys: filename (valid UTF-8 without NUL, under
 * CORE_TUS_FILENAME_MAX bytes; a name, never a path) and sha256 (64
 * lowercase hex digits); others are kept unread. Returns 0, -E2BIG (too
 * long) or -EINVAL. */
int core_tus_parse_metadata(const char* v,
                            core_tus_metadata_t* out,
                            char* err,
                            size_t err_len);

/* `Upload-Concat: final;<url> <url> ...` (spaces or tabs between URLs):
 * each URL a path or an absolute URL whose path, without query or
 * fragment, ends in "/v1/uploads/<id>" (one trailing '/' allowed; any
 * prefix before, as behind a proxy). The ids go to `ids`, in order, in
 * lower case.
 * Returns 0, -EINVAL (not "final;" and at least one such URL), -E2BIG
 * (more than CORE_TUS_PARTS_MAX) or -EEXIST (an id named twice, in any
 * case). */
int core_tus_parse_concat_final(const char* v,
                                char ids[][CORE_UUID_STR_LEN + 1],
                                unsigned* count,
                                char* err,
                                size_t err_len);

#endif
