/* uuid.h: job ids are random (version 4) UUIDs in canonical lowercase form,
 * "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". Pure: callers supply randomness. */
#ifndef CORE_UUID_H
#define CORE_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_UUID_STR_LEN 36 /* without the NUL */

/* Formats 16 random bytes as a v4 UUID (version and variant bits set). */
void core_uuid4_format(const uint8_t random16[16],
                       char out[CORE_UUID_STR_LEN + 1]);

/* True when `s` (`len` bytes) is a canonical 8-4-4-4-12 hex UUID
 * (lowercase or uppercase hex digits). */
bool core_uuid_is_valid(const char* s, size_t len);

#endif
