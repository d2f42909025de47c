/* percent.c: see percent.h. */
#include "core/percent.h"


int core_hex_value(int c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}


bool core_percent_decode(const char* in,
                         size_t n,
                         char* out,
                         size_t cap,
                         size_t* len) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char) in[i];
    if (c == '%') {
      int hi = i + 2 < n ? core_hex_value(in[i + 1]) : -1;
      int lo = i + 2 < n ? core_hex_value(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return false;
      }
      c = hi * 16 + lo;
      i += 2;
    }
    if (c == 0 || o + 1 >= cap) {
      return false;
    }
    out[o++] = (char) c;
  }
  if (cap == 0) {
    return false;
  }
  out[o] = '\0';
  *len = o;
  return true;
}
