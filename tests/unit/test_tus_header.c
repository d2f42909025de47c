/* test_tus_header.c: core/tus_header, the tus request headers the server
 * reads: integers, Upload-Checksum, Upload-Metadata, Upload-Concat. Edge
 * cases: overflow, empty values, spaces, duplicates, bad base64, invalid
 * UTF-8, values at and past their limits. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/tus_header.h"

#define ID1 "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
#define ID2 "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10"


static bool u64(const char* s, uint64_t* v) {
  *v = 777;
  return core_tus_parse_u64(s, v);
}


Test(tus_header, integers_are_plain_decimal, .timeout = 10) {
  uint64_t v;
  cr_assert(u64("0", &v) && v == 0);
  cr_assert(u64("123", &v) && v == 123);
  cr_assert(u64("  42\t", &v) && v == 42, "spaces and tabs around");
  cr_assert(u64("0000000000000000001", &v) && v == 1, "19 digits");
  cr_assert(u64("9223372036854775807", &v) && v == INT64_MAX);
  static const char* bad[] = {"",
                              " ",
                              "+5",
                              "-5",
                              "- 5",
                              "5 5",
                              "5,5",
                              "0x10",
                              "1e3",
                              "12a",
                              "\xd9\xa1", /* an Arabic-Indic digit */
                              "00000000000000000001",
                              "9223372036854775808",
                              "9999999999999999999",
                              "18446744073709551616",
                              "99999999999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert(!u64(bad[i], &v), "'%s' accepted", bad[i]);
    cr_assert_eq(v, 777, "'%s' changed the output", bad[i]);
  }
  cr_assert(!core_tus_parse_u64(NULL, &v));
}


static int checksum(const char* v, core_tus_checksum_t* out) {
  char err[160] = "";
  int rc = core_tus_parse_checksum(v, out, err, sizeof(err));
  cr_assert(rc == 0 || err[0] != '\0', "no reason for '%s'", v);
  return rc;
}


Test(tus_header, checksum_is_algorithm_space_digest, .timeout = 10) {
  core_tus_checksum_t c;
  uint8_t d[32];
  char b64[64];
  memset(d, 0xab, sizeof(d));
  char v[128];
  core_base64_encode(d, 20, b64);
  snprintf(v, sizeof(v), "sha1 %s", b64);
  cr_assert_eq(checksum(v, &c), 0);
  cr_assert(c.algo == CORE_TUS_SHA1 && c.len == 20 &&
            memcmp(c.digest, d, 20) == 0);
  core_base64_encode(d, 32, b64);
  snprintf(v, sizeof(v), "sha256 %s", b64);
  cr_assert_eq(checksum(v, &c), 0);
  cr_assert(c.algo == CORE_TUS_SHA256 && c.len == 32);
  /* The wrong length for the algorithm, either way. */
  snprintf(v, sizeof(v), "sha1 %s", b64);
  cr_assert_eq(checksum(v, &c), -EINVAL);
  core_base64_encode(d, 20, b64);
  snprintf(v, sizeof(v), "sha256 %s", b64);
  cr_assert_eq(checksum(v, &c), -EINVAL);
  static const char* unsupported[] = {"md5 AAAA", "sha1",        "SHA1 AAAA",
                                      "",         "sha512 AAAA", " sha1 AAAA"};
  for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
    cr_assert_eq(checksum(unsupported[i], &c), -ENOTSUP, "'%s'",
                 unsupported[i]);
  }
  snprintf(v, sizeof(v), "sha1  %s", b64); /* two spaces */
  cr_assert_eq(checksum(v, &c), -EINVAL);
  snprintf(v, sizeof(v), "sha1 %s ", b64); /* a space after */
  cr_assert_eq(checksum(v, &c), -EINVAL);
  cr_assert_eq(checksum("sha1 ", &c), -EINVAL);
  cr_assert_eq(checksum("sha1 not-base64!", &c), -EINVAL);
  cr_assert_eq(checksum("sha1 q6urq6urq6urq6urq6urq6urq6s", &c), -EINVAL,
               "unpadded");
}


static int meta(const char* v, core_tus_metadata_t* m) {
  char err[200] = "";
  int rc = core_tus_parse_metadata(v, m, err, sizeof(err));
  cr_assert(rc == 0 || err[0] != '\0', "no reason for '%s'", v);
  return rc;
}


/* "key base64(value)" for a value of `n` bytes. */
static void pair(char* out,
                 size_t cap,
                 const char* key,
                 const void* value,
                 size_t n) {
  char* b64 = malloc(core_base64_encoded_len(n) + 1);
  cr_assert_not_null(b64);
  core_base64_encode(value, n, b64);
  snprintf(out, cap, "%s %s", key, b64);
  free(b64);
}


Test(tus_header, metadata_reads_filename_and_sha256, .timeout = 10) {
  core_tus_metadata_t m;
  cr_assert_eq(meta("", &m), 0);
  cr_assert_str_empty(m.filename);
  cr_assert_str_empty(m.sha256);
  cr_assert_eq(meta("filename dC5tcmM=", &m), 0);
  cr_assert_str_eq(m.filename, "t.mrc");
  char sha[65];
  memset(sha, 'a', 64);
  sha[64] = '\0';
  char v[512];
  char p[200];
  pair(p, sizeof(p), "sha256", sha, 64);
  snprintf(v, sizeof(v), " filename dC5tcmM= ,  %s , flag,other eA== ", p);
  cr_assert_eq(meta(v, &m), 0, "spaces around pairs, a key alone");
  cr_assert_str_eq(m.filename, "t.mrc");
  cr_assert_str_eq(m.sha256, sha);
  cr_assert_eq(meta(",,, ,", &m), 0, "empty pairs");
}


Test(tus_header, metadata_refusals, .timeout = 10) {
  core_tus_metadata_t m;
  cr_assert_eq(meta("a eA==,a eQ==", &m), -EINVAL, "a key twice");
  cr_assert_eq(meta("filename eA==,filename eQ==", &m), -EINVAL);
  cr_assert_eq(meta("flag,flag", &m), -EINVAL);
  cr_assert_eq(meta("ab eA==,a eQ==,b", &m), 0, "prefixes are other keys");
  cr_assert_eq(meta("filename not-base64!", &m), -EINVAL);
  cr_assert_eq(meta("filename eA", &m), -EINVAL, "unpadded");
  cr_assert_eq(meta("filename eA== eA==", &m), -EINVAL, "two values");
  cr_assert_eq(meta("other ***", &m), -EINVAL, "unknown keys need base64");
  cr_assert_eq(meta("filename\teA==", &m), -EINVAL, "a tab");
  cr_assert_eq(meta("filename eA==\x01", &m), -EINVAL, "a control byte");
  cr_assert_eq(meta("k\xc3\xa9 eA==", &m), -EINVAL, "a key not ASCII");
  char v[4096];
  cr_assert_eq(meta("sha256 eA==", &m), -EINVAL);
  char sha[65];
  memset(sha, 'A', 64);
  pair(v, sizeof(v), "sha256", sha, 64);
  cr_assert_eq(meta(v, &m), -EINVAL, "upper-case hex");
  memset(sha, 'a', 64);
  pair(v, sizeof(v), "sha256", sha, 63);
  cr_assert_eq(meta(v, &m), -EINVAL, "63 digits");
  memset(sha, 'g', 64);
  pair(v, sizeof(v), "sha256", sha, 64);
  cr_assert_eq(meta(v, &m), -EINVAL, "not hex");
}


Test(tus_header, metadata_filename_is_a_name_not_a_path, .timeout = 10) {
  core_tus_metadata_t m;
  char v[1024];
  /* Kept as given: it names the volume, and is never a path. */
  static const char* kept[] = {"../../etc/passwd", "a/b.mrc", "..",
                               "two\nlines\r", "caf\xc3\xa9 \xf0\x9f\xa7\xac"};
  for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
    pair(v, sizeof(v), "filename", kept[i], strlen(kept[i]));
    cr_assert_eq(meta(v, &m), 0, "'%s'", kept[i]);
    cr_assert_str_eq(m.filename, kept[i]);
  }
  static const struct {
    const char* bytes;
    size_t len;
  } refused[] = {{"a\0b", 3},
                 {"\xff", 1},
                 {"\xc0\xaf", 2},         /* overlong '/' */
                 {"\xed\xa0\x80", 3},     /* a surrogate */
                 {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
                 {"\xe2\x82", 2},         /* cut short */
                 {"\x80", 1}};
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    pair(v, sizeof(v), "filename", refused[i].bytes, refused[i].len);
    cr_assert_eq(meta(v, &m), -EINVAL, "case %zu", i);
  }
  char name[300];
  memset(name, 'n', sizeof(name));
  pair(v, sizeof(v), "filename", name, CORE_TUS_FILENAME_MAX - 1);
  cr_assert_eq(meta(v, &m), 0);
  cr_assert_eq(strlen(m.filename), CORE_TUS_FILENAME_MAX - 1);
  pair(v, sizeof(v), "filename", name, CORE_TUS_FILENAME_MAX);
  cr_assert_eq(meta(v, &m), -EINVAL);
}


Test(tus_header, metadata_length_limit, .timeout = 10) {
  core_tus_metadata_t m;
  char* v = malloc(CORE_TUS_METADATA_MAX + 1);
  cr_assert_not_null(v);
  memset(v, 'k', CORE_TUS_METADATA_MAX);
  v[CORE_TUS_METADATA_MAX - 1] = '\0';
  cr_assert_eq(meta(v, &m), 0, "the longest: one long key");
  v[CORE_TUS_METADATA_MAX - 1] = 'k';
  v[CORE_TUS_METADATA_MAX] = '\0';
  cr_assert_eq(meta(v, &m), -E2BIG);
  /* As many distinct keys as fit ("k0,k1,..."): still fine. */
  size_t n = 0;
  for (int i = 0; n + 8 < CORE_TUS_METADATA_MAX; i++) {
    n += (size_t) snprintf(v + n, CORE_TUS_METADATA_MAX - n, "%sk%d",
                           i > 0 ? "," : "", i);
  }
  cr_assert_eq(meta(v, &m), 0);
  free(v);
}


static int concat(const char* v,
                  unsigned* count,
                  char ids[][CORE_UUID_STR_LEN + 1]) {
  char err[200] = "";
  int rc = core_tus_parse_concat_final(v, ids, count, err, sizeof(err));
  cr_assert(rc == 0 || err[0] != '\0', "no reason for '%s'", v);
  return rc;
}


Test(tus_header, concat_final_takes_paths_and_urls, .timeout = 10) {
  char ids[CORE_TUS_PARTS_MAX][CORE_UUID_STR_LEN + 1];
  unsigned n = 99;
  cr_assert_eq(concat("final;/v1/uploads/" ID1, &n, ids), 0);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(ids[0], ID1);
  cr_assert_eq(concat("final; http://h:1/v1/uploads/" ID2
                      "\t https://p.example/cryo/v1/uploads/" ID1 "/?x=1#f",
                      &n, ids),
               0);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(ids[0], ID2);
  cr_assert_str_eq(ids[1], ID1);
  cr_assert_eq(concat("final;v1/uploads/" ID1 "#frag", &n, ids), 0);
  /* The query is not the path, whatever it names. */
  cr_assert_eq(concat("final;/v1/uploads/" ID1 "?q=/v1/uploads/" ID2, &n, ids),
               0);
  cr_assert_str_eq(ids[0], ID1);
  cr_assert_eq(concat("final;/v1/jobs/x?/v1/uploads/" ID2, &n, ids), -EINVAL);
}


Test(tus_header, concat_final_refusals, .timeout = 10) {
  char ids[CORE_TUS_PARTS_MAX][CORE_UUID_STR_LEN + 1];
  unsigned n;
  static const char* invalid[] = {
      "",
      "partial",
      "final",
      "final;",
      "final;   \t ",
      "Final;/v1/uploads/" ID1,
      "final;/v1/jobs/" ID1,
      "final;/v1/uploads/nope",
      "final;/xv1/uploads/" ID1,
      "final;/v1/uploads/" ID1 "/extra",
      "final;/v1/uploads/" ID1 "//",
      "final;http://host",
      "final;http://host/",
      "final;/v1/uploads/../" ID1,
      "final;/v1/uploads/3f1c2a9e_5b7d-4e8f-9a0b-1c2d3e4f5a6b",
  };
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    cr_assert_eq(concat(invalid[i], &n, ids), -EINVAL, "'%s'", invalid[i]);
  }
  cr_assert_eq(concat("final;/v1/uploads/" ID1 " /v1/uploads/" ID1, &n, ids),
               -EEXIST);
  cr_assert_eq(concat("final;/v1/uploads/" ID1
                      " /v1/uploads/3F1C2A9E-5B7D-4E8F-9A0B-1C2D3E4F5A6B",
                      &n, ids),
               -EEXIST, "the same id in upper case");
  cr_assert_eq(
      concat("final;/v1/uploads/3F1C2A9E-5B7D-4E8F-9A0B-1C2D3E4F5A6B", &n, ids),
      0);
  cr_assert_str_eq(ids[0], ID1, "kept in lower case");
  char* v = malloc(8 + (CORE_TUS_PARTS_MAX + 1) * 64);
  cr_assert_not_null(v);
  size_t len = (size_t) sprintf(v, "final;");
  for (int i = 0; i <= CORE_TUS_PARTS_MAX; i++) {
    len += (size_t) sprintf(v + len,
                            " /v1/uploads/3f1c2a9e-5b7d-4e8f-9a0b-%012d", i);
    if (i == CORE_TUS_PARTS_MAX - 1) {
      cr_assert_eq(concat(v, &n, ids), 0);
      cr_assert_eq(n, CORE_TUS_PARTS_MAX);
    }
  }
  cr_assert_eq(concat(v, &n, ids), -E2BIG);
  free(v);
  /* A very long URL is refused, its echo in the message cut short. */
  char* longv = malloc(100008);
  cr_assert_not_null(longv);
  memset(longv, 'a', 100007);
  memcpy(longv, "final;/", 7);
  longv[100007] = '\0';
  char err[200];
  cr_assert_eq(core_tus_parse_concat_final(longv, ids, &n, err, sizeof(err)),
               -EINVAL);
  cr_assert_lt(strlen(err), sizeof(err));
  free(longv);
}
