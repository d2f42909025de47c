/* uuid.c: version 4 UUIDs (RFC 4122 section 4.4) from caller-supplied
 * random bytes, and validation of the canonical text form. */
#include "core/uuid.h"


void core_uuid4_format(const uint8_t random16[16],
                       char out[CORE_UUID_STR_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[16];
  for (int i = 0; i < 16; i++) {
    b[i] = random16[i];
  }
  b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80); /* variant 10xx */

  char* p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      *p++ = '-';
    }
    *p++ = hex[b[i] >> 4];
    *p++ = hex[b[i] & 0x0f];
  }
  *p = '\0';
}


bool core_uuid_is_valid(const char* s, size_t len) {
  if (len != CORE_UUID_STR_LEN) {
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') {
        return false;
      }
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                 (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}
