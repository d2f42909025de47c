/* base64.h: standard base64 (RFC 4648, padded, no line breaks) over
 * OpenSSL's block codec. Pure functions; safe on any thread. */
#ifndef CORE_BASE64_H
#define CORE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encoded length of `n` bytes: 4 * ceil(n / 3). */
size_t core_base64_encoded_len(size_t n);

/* Encodes `n` bytes of `src` into `dst`, which needs encoded_len(n) + 1
 * bytes: a NUL is written at dst[encoded_len(n)] (callers may overwrite it).
 * Returns encoded_len(n). */
size_t core_base64_encode(const uint8_t* src, size_t n, char* dst);

/* Upper bound of the decoded length of `n` characters. */
size_t core_base64_decoded_max(size_t n);

/* Strictly decodes `n` characters (length a multiple of 4, alphabet
 * A-Z a-z 0-9 + /, '=' padding only at the end, no whitespace) into `dst`
 * (decoded_max(n) bytes). Sets *out_len; returns 0 or -EINVAL. */
int core_base64_decode(const char* src, size_t n, uint8_t* dst,
                       size_t* out_len);

#endif
