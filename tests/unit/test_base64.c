/* test_base64.c: core/base64 against RFC 4648 vectors, an independent
 * reference encoder, and strict decoding. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


/* Bit-by-bit encoder written from the RFC, independent of OpenSSL. */
static void ref_encode(const uint8_t* src, size_t n, char* dst) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t) src[i] << 16;
    if (i + 1 < n) {
      v |= (uint32_t) src[i + 1] << 8;
    }
    if (i + 2 < n) {
      v |= src[i + 2];
    }
    dst[o++] = alphabet[(v >> 18) & 63];
    dst[o++] = alphabet[(v >> 12) & 63];
    dst[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
    dst[o++] = i + 2 < n ? alphabet[v & 63] : '=';
  }
  dst[o] = '\0';
}


static int decode_str(const char* s, uint8_t* out, size_t* out_len) {
  return core_base64_decode(s, strlen(s), out, out_len);
}


Test(base64, encodes_rfc4648_vectors, .timeout = 10) {
  static const char* plain[] = {"",     "f",     "fo",    "foo",
                                "foob", "fooba", "foobar"};
  static const char* enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                              "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    char out[16];
    size_t n =
        core_base64_encode((const uint8_t*) plain[i], strlen(plain[i]), out);
    cr_assert_eq(n, strlen(enc[i]));
    cr_assert_str_eq(out, enc[i]);
    uint8_t dec[16];
    size_t dn = 99;
    cr_assert_eq(decode_str(enc[i], dec, &dn), 0, "decode %s", enc[i]);
    cr_assert_eq(dn, strlen(plain[i]));
    cr_assert_eq(memcmp(dec, plain[i], dn), 0);
  }
}


Test(base64, matches_reference_for_lengths_0_to_300, .timeout = 10) {
  srand(1234);
  uint8_t src[300];
  char got[401];
  char want[401];
  uint8_t back[300];
  for (size_t n = 0; n <= 300; n++) {
    for (size_t i = 0; i < n; i++) {
      src[i] = (uint8_t) rand();
    }
    size_t len = core_base64_encode(src, n, got);
    ref_encode(src, n, want);
    cr_assert_eq(len, core_base64_encoded_len(n));
    cr_assert_str_eq(got, want, "length %zu", n);
    cr_assert_leq(n, core_base64_decoded_max(len));
    size_t back_len = 0;
    cr_assert_eq(core_base64_decode(got, len, back, &back_len), 0);
    cr_assert_eq(back_len, n, "length %zu decoded to %zu", n, back_len);
    cr_assert_eq(memcmp(back, src, n), 0, "length %zu", n);
  }
}


Test(base64, round_trips_a_large_random_buffer, .timeout = 10) {
  size_t n = 3 * 1000 * 1000 + 1;
  uint8_t* src = malloc(n);
  char* enc = malloc(core_base64_encoded_len(n) + 1);
  uint8_t* dec = malloc(core_base64_decoded_max(core_base64_encoded_len(n)));
  cr_assert(src != NULL && enc != NULL && dec != NULL);
  for (size_t i = 0; i < n; i++) {
    src[i] = (uint8_t) (i * 2654435761u >> 13);
  }
  size_t len = core_base64_encode(src, n, enc);
  cr_assert_eq(enc[len], '\0');
  size_t out = 0;
  cr_assert_eq(core_base64_decode(enc, len, dec, &out), 0);
  cr_assert_eq(out, n);
  cr_assert_eq(memcmp(src, dec, n), 0);
  free(src);
  free(enc);
  free(dec);
}


Test(base64, rejects_malformed_text, .timeout = 10) {
  static const char* bad[] = {
      "Zg=",                                   /* length not a multiple of 4 */
      "Z",       "Zm9vY", "Zg=a",              /* padding followed by data */
      "Z===",                                  /* three padding characters */
      "====",    "=Zg=",  "Zg==Zg==",          /* padding in the middle */
      "Zm9v\n",  "Zm 9",  " Zm9v",    "Zm9v ", /* whitespace */
      "Zm-_",                                  /* URL-safe alphabet */
      "Zm9\x80", "Zm.v",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t out[16];
    size_t n = 0;
    cr_assert_eq(decode_str(bad[i], out, &n), -EINVAL, "accepted \"%s\"",
                 bad[i]);
  }
}


Test(base64, rejects_an_embedded_nul, .timeout = 10) {
  uint8_t out[8];
  size_t n = 0;
  cr_assert_eq(core_base64_decode("Zm\0v", 4, out, &n), -EINVAL);
}


Test(base64, reports_lengths, .timeout = 10) {
  cr_assert_eq(core_base64_encoded_len(0), 0);
  cr_assert_eq(core_base64_encoded_len(1), 4);
  cr_assert_eq(core_base64_encoded_len(3), 4);
  cr_assert_eq(core_base64_encoded_len(4), 8);
  cr_assert_eq(core_base64_decoded_max(0), 0);
  cr_assert_eq(core_base64_decoded_max(4), 3);
  cr_assert_eq(core_base64_decoded_max(8), 6);
}
