/* base64.c: standard padded base64 over OpenSSL's block codec
 * (EVP_EncodeBlock/EVP_DecodeBlock). OpenSSL's decoder is lenient (it skips
 * surrounding whitespace and does not say how much padding it saw), so we
 * validate the text ourselves first and compute the exact length. */
#include "core/base64.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include <openssl/evp.h>

/* OpenSSL takes int lengths; chunks are multiples of 3 (encode) and 4
 * (decode) so that splitting never changes the output. */
#define ENCODE_CHUNK ((size_t) 3 << 28)
#define DECODE_CHUNK ((size_t) 4 << 28)


size_t core_base64_encoded_len(size_t n) {
  return (n / 3 + (n % 3 != 0)) * 4;
}


size_t core_base64_encode(const uint8_t* src, size_t n, char* dst) {
  size_t out = 0;
  while (n > 0) {
    size_t chunk = n < ENCODE_CHUNK ? n : ENCODE_CHUNK;
    int w = EVP_EncodeBlock((unsigned char*) dst + out, src, (int) chunk);
    out += (size_t) w;
    src += chunk;
    n -= chunk;
  }
  dst[out] = '\0';
  return out;
}


size_t core_base64_decoded_max(size_t n) {
  return (n / 4 + (n % 4 != 0)) * 3;
}


static bool is_b64_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}


int core_base64_decode(const char* src,
                       size_t n,
                       uint8_t* dst,
                       size_t* out_len) {
  if (n % 4 != 0) {
    return -EINVAL;
  }
  size_t pad = 0;
  if (n > 0 && src[n - 1] == '=') {
    pad = src[n - 2] == '=' ? 2 : 1;
  }
  for (size_t i = 0; i < n - pad; i++) {
    if (!is_b64_char((unsigned char) src[i])) {
      return -EINVAL;
    }
  }

  size_t done = 0;
  while (done < n) {
    size_t chunk = n - done < DECODE_CHUNK ? n - done : DECODE_CHUNK;
    int w = EVP_DecodeBlock(dst + done / 4 * 3,
                            (const unsigned char*) src + done, (int) chunk);
    if (w < 0) {
      return -EINVAL;
    }
    done += chunk;
  }
  *out_len = n / 4 * 3 - pad;
  return 0;
}
