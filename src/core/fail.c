/* fail.c: see fail.h. */
#include "core/fail.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>


int core_fail(char* err, size_t err_len, const char* fmt, ...) {
  if (err_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}
