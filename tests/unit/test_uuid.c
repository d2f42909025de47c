/* test_uuid.c: v4 formatting bits and canonical-form validation. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/uuid.h"


Test(uuid, sets_version_and_variant_bits, .timeout = 10) {
  uint8_t zeros[16] = {0};
  uint8_t ones[16];
  memset(ones, 0xff, sizeof(ones));
  char out[CORE_UUID_STR_LEN + 1];
  core_uuid4_format(zeros, out);
  cr_assert_str_eq(out, "00000000-0000-4000-8000-000000000000");
  core_uuid4_format(ones, out);
  cr_assert_str_eq(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}


Test(uuid, formats_bytes_in_order_lowercase, .timeout = 10) {
  uint8_t b[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                   0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  char out[CORE_UUID_STR_LEN + 1];
  core_uuid4_format(b, out);
  cr_assert_str_eq(out, "01234567-89ab-4def-8123-456789abcdef");
  cr_assert(core_uuid_is_valid(out, strlen(out)));
}


Test(uuid, validates_canonical_form, .timeout = 10) {
  const char* good[] = {"01234567-89ab-4def-8123-456789abcdef",
                        "01234567-89AB-CDEF-0123-456789ABCDEF"};
  for (size_t i = 0; i < 2; i++) {
    cr_assert(core_uuid_is_valid(good[i], strlen(good[i])), "%s", good[i]);
  }
  const char* bad[] = {
      "",
      "01234567-89ab-4def-8123-456789abcde",   /* short */
      "01234567-89ab-4def-8123-456789abcdef0", /* long */
      "0123456789ab-4def-8123-456789abcdef-",  /* dash moved */
      "01234567-89ab-4def-8123_456789abcdef",
      "g1234567-89ab-4def-8123-456789abcdef", /* not hex */
      "{1234567-89ab-4def-8123-456789abcdef",
      "01234567089ab04def081230456789abcdef",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_not(core_uuid_is_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
  }
  /* The length bounds the check: a valid prefix of a longer string is not
   * read past len, and a NUL inside fails. */
  cr_assert_not(core_uuid_is_valid("01234567-89ab-4def-8123-456789abcdef", 35));
  cr_assert_not(
      core_uuid_is_valid("01234567-89ab-4def-8123-456789abcde\0", 36));
}
