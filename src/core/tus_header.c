/* tus_header.c: tus request headers. See tus_header.h. */
#include "core/tus_header.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/base64.h"

#define ROUTE "v1/uploads"
#define ROUTE_LEN (sizeof(ROUTE) - 1)


static int refuse(int code, char* err, size_t err_len, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(int code, char* err, size_t err_len, const char* fmt, ...) {
  if (err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  return code;
}


static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}


bool core_tus_parse_u64(const char* s, uint64_t* out) {
  if (s == NULL) {
    return false;
  }
  while (is_ows(*s)) {
    s++;
  }
  uint64_t v = 0;
  size_t digits = 0;
  for (; *s >= '0' && *s <= '9'; s++, digits++) {
    if (digits == 19) {
      return false;
    }
    v = v * 10 + (uint64_t) (*s - '0'); /* < 10^19 < 2^64: no overflow */
  }
  while (is_ows(*s)) {
    s++;
  }
  if (digits == 0 || *s != '\0' || v > (uint64_t) INT64_MAX) {
    return false;
  }
  *out = v;
  return true;
}


int core_tus_parse_checksum(const char* v,
                            core_tus_checksum_t* out,
                            char* err,
                            size_t err_len) {
  size_t want = 0;
  if (strncmp(v, "sha1 ", 5) == 0) {
    out->algo = CORE_TUS_SHA1;
    want = 20;
    v += 5;
  } else if (strncmp(v, "sha256 ", 7) == 0) {
    out->algo = CORE_TUS_SHA256;
    want = 32;
    v += 7;
  } else {
    return refuse(-ENOTSUP, err, err_len,
                  "Upload-Checksum algorithm must be sha1 or sha256");
  }
  uint8_t d[sizeof(out->digest)];
  size_t n = strlen(v);
  size_t got = 0;
  if (n != core_base64_encoded_len(want) ||
      core_base64_decode(v, n, d, &got) != 0 || got != want) {
    return refuse(-EINVAL, err, err_len,
                  "Upload-Checksum must be the algorithm, a space and the "
                  "base64 digest");
  }
  memcpy(out->digest, d, got);
  out->len = got;
  return 0;
}


/* Whether `s` (`n` bytes) is valid UTF-8: no overlong forms, no
 * surrogates, nothing past U+10FFFF. */
static bool is_utf8(const uint8_t* s, size_t n) {
  static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t more = 0;
    uint32_t cp = c;
    if (c >= 0x80) {
      if ((c & 0xe0) == 0xc0) {
        more = 1;
        cp = c & 0x1fu;
      } else if ((c & 0xf0) == 0xe0) {
        more = 2;
        cp = c & 0x0fu;
      } else if ((c & 0xf8) == 0xf0) {
        more = 3;
        cp = c & 0x07u;
      } else {
        return false;
      }
    }
    if (n - i <= more) {
      return false;
    }
    for (size_t k = 1; k <= more; k++) {
      if ((s[i + k] & 0xc0) != 0x80) {
        return false;
      }
      cp = cp << 6 | (s[i + k] & 0x3fu);
    }
    if (cp < min_cp[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += more + 1;
  }
  return true;
}


/* Whether key `k` (`n` bytes) appears among the keys of `v` before `k`. */
static bool key_seen(const char* v, const char* k, size_t n) {
  const char* p = v;
  while (p < k) {
    p += strspn(p, " ,");
    size_t len = strcspn(p, " ,");
    if (p < k && len == n && memcmp(p, k, n) == 0) {
      return true;
    }
    p += strcspn(p, ",");
  }
  return false;
}


/* One pair "key[ base64]" of `n` bytes at `p`. */
static int metadata_pair(const char* v,
                         const char* p,
                         size_t n,
                         core_tus_metadata_t* out,
                         char* err,
                         size_t err_len) {
  size_t klen = strcspn(p, " ,");
  if (klen > n) {
    klen = n;
  }
  if (key_seen(v, p, klen)) {
    return refuse(-EINVAL, err, err_len,
                  "Upload-Metadata names key '%.*s' twice",
                  (int) (klen < 64 ? klen : 64), p);
  }
  const char* val = p + klen;
  size_t vlen = n - klen;
  while (vlen > 0 && *val == ' ') {
    val++;
    vlen--;
  }
  bool is_filename = klen == 8 && memcmp(p, "filename", 8) == 0;
  bool is_sha256 = klen == 6 && memcmp(p, "sha256", 6) == 0;
  uint8_t decoded[CORE_TUS_METADATA_MAX];
  size_t dlen = 0;
  if (vlen > 0 && core_base64_decode(val, vlen, decoded, &dlen) != 0) {
    return refuse(-EINVAL, err, err_len,
                  "Upload-Metadata value of '%.*s' is not base64",
                  (int) (klen < 64 ? klen : 64), p);
  }
  if (is_filename) {
    if (dlen >= sizeof(out->filename) || memchr(decoded, '\0', dlen) ||
        !is_utf8(decoded, dlen)) {
      return refuse(-EINVAL, err, err_len,
                    "Upload-Metadata filename must be UTF-8 without NUL, "
                    "shorter than %d bytes",
                    CORE_TUS_FILENAME_MAX);
    }
    memcpy(out->filename, decoded, dlen);
    out->filename[dlen] = '\0';
  } else if (is_sha256) {
    if (dlen != 64 || strspn((const char*) decoded, "0123456789abcdef") < 64) {
      return refuse(-EINVAL, err, err_len,
                    "Upload-Metadata sha256 must be 64 lowercase hex digits");
    }
    memcpy(out->sha256, decoded, 64);
    out->sha256[64] = '\0';
  }
  return 0;
}


int core_tus_parse_metadata(const char* v,
                            core_tus_metadata_t* out,
                            char* err,
                            size_t err_len) {
  memset(out, 0, sizeof(*out));
  size_t len = strlen(v);
  if (len >= CORE_TUS_METADATA_MAX) {
    return refuse(-E2BIG, err, err_len,
                  "Upload-Metadata is longer than %d bytes",
                  CORE_TUS_METADATA_MAX - 1);
  }
  for (size_t i = 0; i < len; i++) {
    if (v[i] < 0x20 || v[i] > 0x7e) {
      return refuse(-EINVAL, err, err_len,
                    "Upload-Metadata must be printable ASCII (keys, and "
                    "values in base64)");
    }
  }
  const char* p = v;
  while (*p != '\0') {
    p += strspn(p, " ,");
    size_t n = strcspn(p, ",");
    size_t next = n;
    while (n > 0 && p[n - 1] == ' ') {
      n--;
    }
    if (n > 0) {
      int rc = metadata_pair(v, p, n, out, err, err_len);
      if (rc != 0) {
        return rc;
      }
    }
    p += next;
  }
  return 0;
}


/* The upload id at the end of URL `url` (`len` bytes), or NULL. */
static const char* url_id(const char* url, size_t len) {
  const char* path = url;
  for (size_t i = 0; i + 3 <= len; i++) {
    if (memcmp(url + i, "://", 3) == 0) {
      path = memchr(url + i + 3, '/', len - i - 3);
      if (path == NULL) {
        return NULL;
      }
      break;
    }
  }
  size_t n = len - (size_t) (path - url);
  for (size_t i = 0; i < n; i++) {
    if (path[i] == '?' || path[i] == '#') {
      n = i;
      break;
    }
  }
  if (n > 0 && path[n - 1] == '/') {
    n--;
  }
  /* ".../v1/uploads/<id>": the id, the '/' before it, the route before. */
  if (n < ROUTE_LEN + 1 + CORE_UUID_STR_LEN) {
    return NULL;
  }
  const char* id = path + n - CORE_UUID_STR_LEN;
  size_t route_at = n - CORE_UUID_STR_LEN - 1 - ROUTE_LEN;
  if (!core_uuid_is_valid(id, CORE_UUID_STR_LEN) || id[-1] != '/' ||
      memcmp(path + route_at, ROUTE, ROUTE_LEN) != 0 ||
      (route_at > 0 && path[route_at - 1] != '/')) {
    return NULL;
  }
  return id;
}


int core_tus_parse_concat_final(const char* v,
                                char ids[][CORE_UUID_STR_LEN + 1],
                                unsigned* count,
                                char* err,
                                size_t err_len) {
  static const char usage[] =
      "Upload-Concat must be 'partial' or 'final;' and the URLs of the "
      "partial uploads, separated by spaces";
  *count = 0;
  if (strncmp(v, "final;", 6) != 0) {
    return refuse(-EINVAL, err, err_len, "%s", usage);
  }
  const char* p = v + 6;
  for (;;) {
    p += strspn(p, " \t");
    size_t n = strcspn(p, " \t");
    if (n == 0) {
      break;
    }
    const char* id = url_id(p, n);
    if (id == NULL) {
      return refuse(-EINVAL, err, err_len,
                    "Upload-Concat names '%.*s', which is not an upload URL "
                    "(/v1/uploads/<id>)",
                    (int) (n < 80 ? n : 80), p);
    }
    if (*count == CORE_TUS_PARTS_MAX) {
      return refuse(-E2BIG, err, err_len,
                    "a final upload has at most %d parts "
                    "(limits.max_upload_parts)",
                    CORE_TUS_PARTS_MAX);
    }
    /* Lower case, as the server writes ids (and finds them in any case):
     * one part named twice in two cases is one part named twice. */
    char lower[CORE_UUID_STR_LEN + 1];
    for (size_t i = 0; i < CORE_UUID_STR_LEN; i++) {
      lower[i] = (char) tolower((unsigned char) id[i]);
    }
    lower[CORE_UUID_STR_LEN] = '\0';
    for (unsigned i = 0; i < *count; i++) {
      if (memcmp(ids[i], lower, CORE_UUID_STR_LEN) == 0) {
        return refuse(-EEXIST, err, err_len,
                      "Upload-Concat names upload %s twice", lower);
      }
    }
    memcpy(ids[*count], lower, CORE_UUID_STR_LEN + 1);
    (*count)++;
    p += n;
  }
  if (*count == 0) {
    return refuse(-EINVAL, err, err_len, "%s", usage);
  }
  return 0;
}
