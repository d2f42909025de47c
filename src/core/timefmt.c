/* timefmt.c: protocol timestamps "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC.
 * Negative times (before 1970) format correctly: seconds are floored, so the
 * microseconds field is never negative. Times outside years 0000..9999 do
 * not fit the fixed width and are clamped to the nearest representable one
 * (a clock reading that far off is a bug elsewhere; we never overflow out).
 * Parsing is strict: fixed width, real calendar dates, no leap second. */
#include "core/timefmt.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in Unix us. */
#define TS_MIN_US (-62167219200LL * 1000000LL)
#define TS_MAX_US (253402300799LL * 1000000LL + 999999LL)


/* Writes `v` (0 <= v < 10^n) as n digits then `sep`; returns the end. The
 * fields are range-checked above, so no snprintf and its truncation games. */
static char* put_digits(char* p, int v, int n, char sep) {
  for (int i = n - 1; i >= 0; i--) {
    p[i] = (char) ('0' + v % 10);
    v /= 10;
  }
  p[n] = sep;
  return p + n + 1;
}


void core_timestamp_format(int64_t unix_us, char out[CORE_TIMESTAMP_LEN + 1]) {
  if (unix_us < TS_MIN_US) {
    unix_us = TS_MIN_US;
  } else if (unix_us > TS_MAX_US) {
    unix_us = TS_MAX_US;
  }
  int64_t secs = unix_us / 1000000;
  int64_t us = unix_us % 1000000;
  if (us < 0) {
    us += 1000000;
    secs -= 1;
  }
  time_t t = (time_t) secs;
  struct tm tm;
  gmtime_r(&t, &tm);
  char* p = out;
  p = put_digits(p, tm.tm_year + 1900, 4, '-');
  p = put_digits(p, tm.tm_mon + 1, 2, '-');
  p = put_digits(p, tm.tm_mday, 2, 'T');
  p = put_digits(p, tm.tm_hour, 2, ':');
  p = put_digits(p, tm.tm_min, 2, ':');
  p = put_digits(p, tm.tm_sec, 2, '.');
  p = put_digits(p, (int) us, 6, 'Z');
  *p = '\0';
}


/* Reads `n` decimal digits at s; false when any is not a digit. */
static bool read_digits(const char* s, int n, int* out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}


int core_timestamp_parse(const char* s, int64_t* unix_us) {
  /* Positions of the separators in "YYYY-MM-DDTHH:MM:SS.ffffffZ". */
  static const struct {
    int pos;
    char c;
  } seps[] = {{4, '-'},  {7, '-'},  {10, 'T'}, {13, ':'},
              {16, ':'}, {19, '.'}, {26, 'Z'}};
  for (int i = 0; i < CORE_TIMESTAMP_LEN; i++) {
    if (s[i] == '\0') {
      return -EINVAL;
    }
  }
  if (s[CORE_TIMESTAMP_LEN] != '\0') {
    return -EINVAL;
  }
  for (size_t i = 0; i < sizeof(seps) / sizeof(seps[0]); i++) {
    if (s[seps[i].pos] != seps[i].c) {
      return -EINVAL;
    }
  }
  int year, mon, day, hour, min, sec, us;
  if (!read_digits(s, 4, &year) || !read_digits(s + 5, 2, &mon) ||
      !read_digits(s + 8, 2, &day) || !read_digits(s + 11, 2, &hour) ||
      !read_digits(s + 14, 2, &min) || !read_digits(s + 17, 2, &sec) ||
      !read_digits(s + 20, 6, &us)) {
    return -EINVAL;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
      sec > 59) {
    return -EINVAL;
  }
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  /* timegm normalises 2021-02-30 to March 2; a changed day means the date
   * did not exist. */
  if (tm.tm_mday != day || tm.tm_mon != mon - 1) {
    return -EINVAL;
  }
  *unix_us = (int64_t) t * 1000000 + us;
  return 0;
}
