/* test_timefmt.c: protocol timestamps, known values, round trips, clamping
 * and strict parsing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/timefmt.h"


static void check_format(int64_t us, const char* want) {
  char out[CORE_TIMESTAMP_LEN + 1];
  memset(out, 'x', sizeof(out));
  core_timestamp_format(us, out);
  cr_assert_str_eq(out, want, "for %lld", (long long) us);
  cr_assert_eq(strlen(out), CORE_TIMESTAMP_LEN);
}


Test(timefmt, formats_known_values, .timeout = 10) {
  check_format(0, "1970-01-01T00:00:00.000000Z");
  check_format(1795896000123456LL, "2026-11-28T20:00:00.123456Z");
  check_format(951827696000789LL, "2000-02-29T12:34:56.000789Z");
  check_format(-14182940000000LL, "1969-07-20T20:17:40.000000Z");
}


Test(timefmt, formats_negative_times_with_floored_seconds, .timeout = 10) {
  check_format(-1, "1969-12-31T23:59:59.999999Z");
  check_format(-1000000, "1969-12-31T23:59:59.000000Z");
  check_format(-1000001, "1969-12-31T23:59:58.999999Z");
}


Test(timefmt, clamps_times_outside_four_digit_years, .timeout = 10) {
  check_format(INT64_MAX, "9999-12-31T23:59:59.999999Z");
  check_format(INT64_MIN, "0000-01-01T00:00:00.000000Z");
}


Test(timefmt, parses_known_values, .timeout = 10) {
  int64_t us = 0;
  cr_assert_eq(core_timestamp_parse("2026-11-28T20:00:00.123456Z", &us), 0);
  cr_assert_eq(us, 1795896000123456LL);
  cr_assert_eq(core_timestamp_parse("1969-12-31T23:59:59.999999Z", &us), 0);
  cr_assert_eq(us, -1);
}


Test(timefmt, round_trips, .timeout = 10) {
  int64_t values[] = {0,
                      1,
                      -1,
                      999999,
                      1000000,
                      1795896000123456LL,
                      -62167219200000000LL,
                      253402300799999999LL,
                      4102444800000000LL - 1};
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    char s[CORE_TIMESTAMP_LEN + 1];
    core_timestamp_format(values[i], s);
    int64_t back = 42;
    cr_assert_eq(core_timestamp_parse(s, &back), 0, "%s", s);
    cr_assert_eq(back, values[i], "%s", s);
  }
  for (int64_t v = -5000000000000LL; v < 5000000000000LL; v += 123456789012LL) {
    char s[CORE_TIMESTAMP_LEN + 1];
    core_timestamp_format(v, s);
    int64_t back = 0;
    cr_assert_eq(core_timestamp_parse(s, &back), 0, "%s", s);
    cr_assert_eq(back, v, "%s", s);
  }
}


Test(timefmt, rejects_bad_strings, .timeout = 10) {
  static const char* bad[] = {
      "",
      "2026-11-28T20:00:00.123456",    /* no Z */
      "2026-11-28T20:00:00.123456z",   /* lowercase z */
      "2026-11-28t20:00:00.123456Z",   /* lowercase t */
      "2026-11-28 20:00:00.123456Z",   /* space */
      "2026-11-28T20:00:00.12345Z",    /* 5 fraction digits */
      "2026-11-28T20:00:00.1234567Z",  /* 7 */
      "2026-11-28T20:00:00Z",          /* no fraction */
      "2026-11-28T20:00:00.123456Z ",  /* trailing space */
      "2026-11-28T20:00:00.123456+00", /* offset */
      "2026-13-01T00:00:00.000000Z",   /* month 13 */
      "2026-00-01T00:00:00.000000Z",
      "2026-11-00T00:00:00.000000Z",
      "2025-02-29T00:00:00.000000Z", /* not a leap year */
      "2026-04-31T00:00:00.000000Z",
      "2026-11-28T24:00:00.000000Z",
      "2026-11-28T20:60:00.000000Z",
      "2026-11-28T20:00:60.000000Z",
      "2026-11-28T20:00:00.12345aZ",
      "+026-11-28T20:00:00.123456Z",
      "2026/11/28T20:00:00.123456Z",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int64_t us = 7;
    cr_assert_eq(core_timestamp_parse(bad[i], &us), -EINVAL, "accepted %s",
                 bad[i]);
    cr_assert_eq(us, 7, "wrote output for %s", bad[i]);
  }
}


Test(timefmt, accepts_a_leap_day, .timeout = 10) {
  int64_t us = 0;
  cr_assert_eq(core_timestamp_parse("2024-02-29T00:00:00.000000Z", &us), 0);
  cr_assert_eq(us, 1709164800000000LL);
}
