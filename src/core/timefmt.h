/* timefmt.h: protocol timestamps, UTC with microseconds, e.g.
 * "2026-11-28T20:00:00.123456Z". Pure: callers supply the clock reading. */
#ifndef CORE_TIMEFMT_H
#define CORE_TIMEFMT_H

#include <stdint.h>

#define CORE_TIMESTAMP_LEN 27 /* without the NUL */

/* Formats microseconds since the Unix epoch into `out` (NUL-terminated). */
void core_timestamp_format(int64_t unix_us, char out[CORE_TIMESTAMP_LEN + 1]);

/* Parses exactly the format above (the 'Z' required). Returns 0 or -EINVAL. */
int core_timestamp_parse(const char* s, int64_t* unix_us);

#endif
