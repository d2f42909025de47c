/* percent.h: hexadecimal digits and RFC 3986 percent-decoding, shared by
 * the server's query tokens (auth.c) and the Redis URL's user information
 * (redis_url.c). Pure functions. */
#ifndef CORE_PERCENT_H
#define CORE_PERCENT_H

#include <stdbool.h>
#include <stddef.h>

/* The value of hex digit `c` (either case), or -1. */
int core_hex_value(int c);

/* Decodes `n` bytes at `in` (%XX escapes; '+' stays '+') into `out`, NUL
 * terminated, its length in *len. False on a malformed escape, a decoded
 * NUL (a C string would end there) or more than cap - 1 bytes. */
bool core_percent_decode(const char* in,
                         size_t n,
                         char* out,
                         size_t cap,
                         size_t* len);

#endif
