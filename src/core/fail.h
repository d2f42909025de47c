/* fail.h: the one way core parsers report bad input: a sentence in the
 * caller's buffer and -EINVAL. */
#ifndef CORE_FAIL_H
#define CORE_FAIL_H

#include <stddef.h>

/* Formats the sentence into `err` (err_len bytes, may be 0) and returns
 * -EINVAL, so parsers can `return core_fail(err, len, "...", ...);`. */
int core_fail(char* err, size_t err_len, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
