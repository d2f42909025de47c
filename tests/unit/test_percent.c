/* test_percent.c: hex digits and percent-decoding (src/core/percent.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/percent.h"


Test(percent, hex_digits_either_case) {
  cr_assert_eq(core_hex_value('0'), 0);
  cr_assert_eq(core_hex_value('9'), 9);
  cr_assert_eq(core_hex_value('a'), 10);
  cr_assert_eq(core_hex_value('F'), 15);
  cr_assert_eq(core_hex_value('g'), -1);
  cr_assert_eq(core_hex_value(-56), -1, "a negative char is no digit");
}


Test(percent, decodes_escapes_and_keeps_plus) {
  char out[32];
  size_t len = 99;
  const char* in = "a%40b%3a+%2F%25";
  cr_assert(core_percent_decode(in, strlen(in), out, sizeof(out), &len));
  cr_assert_str_eq(out, "a@b:+/%");
  cr_assert_eq(len, 7);
  cr_assert(core_percent_decode("", 0, out, sizeof(out), &len));
  cr_assert_str_empty(out);
  cr_assert_eq(len, 0);
  /* Only the n bytes given count: the escape past them is not read. */
  cr_assert(core_percent_decode("ab%41", 2, out, sizeof(out), &len));
  cr_assert_str_eq(out, "ab");
}


Test(percent, refuses_bad_escapes_nul_and_no_room) {
  char out[4];
  size_t len;
  const char* bad[] = {"%", "%4", "%zz", "%4g", "a%00b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert(
        !core_percent_decode(bad[i], strlen(bad[i]), out, sizeof(out), &len),
        "%s", bad[i]);
  }
  cr_assert(core_percent_decode("abc", 3, out, sizeof(out), &len));
  cr_assert(!core_percent_decode("abcd", 4, out, sizeof(out), &len));
  cr_assert(!core_percent_decode("", 0, out, 0, &len));
}
