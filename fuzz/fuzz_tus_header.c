/* fuzz_tus_header.c: libFuzzer target for the tus header parsers
 * (core/tus_header.c). The input, as one NUL-terminated header value, goes
 * to all four; what each accepts is checked against an independent reading
 * of the same text: the integer against strtoull, the checksum's digest
 * re-encoded, the metadata's limits and alphabet, and the concatenation's
 * ids (valid, lower case, distinct, each found in the text). */
#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/tus_header.h"
#include "core/uuid.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


static void check_u64(const char* s) {
  uint64_t v = 0;
  if (!core_tus_parse_u64(s, &v)) {
    return;
  }
  const char* p = s + strspn(s, " \t");
  size_t digits = strspn(p, "0123456789");
  assert(digits >= 1 && digits <= 19);
  assert(p[digits + strspn(p + digits, " \t")] == '\0');
  assert(v <= (uint64_t) INT64_MAX && v == strtoull(p, NULL, 10));
}


static void check_checksum(const char* s) {
  core_tus_checksum_t c;
  char err[64];
  if (core_tus_parse_checksum(s, &c, err, sizeof(err)) != 0) {
    return;
  }
  const char* b64 = strchr(s, ' ') + 1;
  assert(c.len == (c.algo == CORE_TUS_SHA1 ? 20u : 32u));
  assert(strncmp(s, c.algo == CORE_TUS_SHA1 ? "sha1 " : "sha256 ",
                 (size_t) (b64 - s)) == 0);
  char again[64];
  core_base64_encode(c.digest, c.len, again);
  assert(strlen(b64) == strlen(again));
  /* Only the unused low bits of the last symbol may differ. */
  assert(memcmp(b64, again, strlen(again) - 2) == 0);
}


static void check_metadata(const char* s) {
  core_tus_metadata_t m;
  char err[64];
  if (core_tus_parse_metadata(s, &m, err, sizeof(err)) != 0) {
    return;
  }
  size_t n = strlen(s);
  assert(n < CORE_TUS_METADATA_MAX);
  for (size_t i = 0; i < n; i++) {
    assert(s[i] >= 0x20 && s[i] <= 0x7e);
  }
  assert(strlen(m.filename) < CORE_TUS_FILENAME_MAX);
  size_t sl = strlen(m.sha256);
  assert(sl == 0 || (sl == 64 && strspn(m.sha256, "0123456789abcdef") == 64));
  assert(m.filename[0] == '\0' || strstr(s, "filename") != NULL);
  assert(sl == 0 || strstr(s, "sha256") != NULL);
}


static void check_concat(const char* s) {
  char ids[CORE_TUS_PARTS_MAX][CORE_UUID_STR_LEN + 1];
  unsigned n = 0;
  char err[64];
  if (core_tus_parse_concat_final(s, ids, &n, err, sizeof(err)) != 0) {
    return;
  }
  assert(strncmp(s, "final;", 6) == 0);
  assert(n >= 1 && n <= CORE_TUS_PARTS_MAX);
  char* lower = strdup(s);
  assert(lower != NULL);
  for (char* c = lower; *c != '\0'; c++) {
    *c = (char) tolower((unsigned char) *c);
  }
  for (unsigned i = 0; i < n; i++) {
    assert(strlen(ids[i]) == CORE_UUID_STR_LEN);
    assert(core_uuid_is_valid(ids[i], CORE_UUID_STR_LEN));
    assert(strspn(ids[i], "0123456789abcdef-") == CORE_UUID_STR_LEN);
    assert(strstr(lower, ids[i]) != NULL);
    for (unsigned k = 0; k < i; k++) {
      assert(strcmp(ids[i], ids[k]) != 0);
    }
  }
  free(lower);
}


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  char* s = malloc(size + 1);
  assert(s != NULL);
  memcpy(s, data, size);
  s[size] = '\0';
  check_u64(s);
  check_checksum(s);
  check_metadata(s);
  check_concat(s);
  free(s);
  return 0;
}
