/* criterion/criterion.h (stand-in): the part of Criterion's API our unit
 * tests use, for ThreadSanitizer builds only. Criterion itself cannot start
 * under TSan: its runner maps a shared arena at a fixed address range that
 * TSan reserves for its shadow memory ("Could not initialize inheritable
 * arena", Snaipe/Criterion#274). The test sources stay unchanged; this header
 * comes first on the include path of the TSan build (tests/unit/meson.build)
 * and runner.c runs every Test() in a forked child with its timeout, like
 * Criterion. Supports Test(suite, name[, .timeout = s, .init = f,
 * .fini = g]), the cr_assert_*
 * macros below (each takes an optional printf-style message) and
 * cr_skip_test(). */
#ifndef CRTSAN_CRITERION_H
#define CRTSAN_CRITERION_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  int unused_;    /* lets Test() take zero or more designated fields */
  double timeout; /* seconds, 0: none */
  void (*init)(void); /* before the test, in its child (NULL: none) */
  void (*fini)(void); /* after a test that returned (NULL: none) */
} crtsan_opts_t;

typedef struct crtsan_test_s {
  const char* suite;
  const char* name;
  void (*fn)(void);
  crtsan_opts_t opts;
  struct crtsan_test_s* next;
} crtsan_test_t;

void crtsan_register(crtsan_test_t* test);
_Noreturn void crtsan_fail(const char* file,
                           int line,
                           const char* expr,
                           const char* fmt,
                           ...) __attribute__((format(printf, 4, 5)));
_Noreturn void crtsan_skip(const char* fmt, ...)
    __attribute__((format(printf, 1, 2)));

#define Test(suite, name, ...)                                                 \
  static void crtsan_fn_##suite##_##name(void);                                \
  static crtsan_test_t crtsan_test_##suite##_##name = {                        \
      #suite, #name, crtsan_fn_##suite##_##name, {0, __VA_ARGS__}, NULL};      \
  __attribute__((constructor)) static void crtsan_reg_##suite##_##name(void) { \
    crtsan_register(&crtsan_test_##suite##_##name);                            \
  }                                                                            \
  static void crtsan_fn_##suite##_##name(void)

/* The message (a string literal and its arguments) is optional; the leading
 * space keeps the format non-empty when it is absent. */
#define CRTSAN_CHECK(cond, expr, ...)                                          \
  do {                                                                         \
    if (!(cond)) {                                                             \
      crtsan_fail(__FILE__, __LINE__, expr, " " __VA_ARGS__);                  \
    }                                                                          \
  } while (0)

#define cr_assert(cond, ...) CRTSAN_CHECK((cond), #cond, __VA_ARGS__)
#define cr_assert_not(cond, ...)                                               \
  CRTSAN_CHECK(!(cond), "!(" #cond ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)                                                \
  CRTSAN_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)                                               \
  CRTSAN_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)                                                \
  CRTSAN_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)                                               \
  CRTSAN_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)                                                \
  CRTSAN_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)                                               \
  CRTSAN_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)                                                 \
  CRTSAN_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...)                                             \
  CRTSAN_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                            \
  CRTSAN_CHECK(strcmp((a), (b)) == 0, #a " == " #b " (strings)", __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                           \
  CRTSAN_CHECK(strcmp((a), (b)) != 0, #a " != " #b " (strings)", __VA_ARGS__)
#define cr_assert_arr_eq(a, b, size, ...)                                      \
  CRTSAN_CHECK(memcmp((a), (b), (size)) == 0, #a " == " #b " (arrays)",        \
               __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                     \
  CRTSAN_CHECK(fabs((double) (a) - (double) (b)) <= (double) (eps),            \
               #a " == " #b " within " #eps, __VA_ARGS__)
#define cr_assert_str_empty(a, ...)                                            \
  CRTSAN_CHECK((a)[0] == '\0', #a " is empty", __VA_ARGS__)
/* Criterion's expectations go on after a failure; here a failed one ends
 * the test at once, which fails it just the same. */
#define cr_expect(cond, ...) cr_assert(cond, __VA_ARGS__)
#define cr_expect_not(cond, ...) cr_assert_not(cond, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) cr_assert_neq(a, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) cr_assert_gt(a, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) cr_assert_geq(a, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) cr_assert_lt(a, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) cr_assert_leq(a, b, __VA_ARGS__)
#define cr_expect_null(p, ...) cr_assert_null(p, __VA_ARGS__)
#define cr_expect_not_null(p, ...) cr_assert_not_null(p, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_assert_str_eq(a, b, __VA_ARGS__)
#define cr_expect_arr_eq(a, b, n, ...) cr_assert_arr_eq(a, b, n, __VA_ARGS__)
#define cr_log_info(...)                                                       \
  do {                                                                         \
    fprintf(stderr, __VA_ARGS__);                                              \
    fputc('\n', stderr);                                                       \
  } while (0)
#define cr_skip_test(...) crtsan_skip(" " __VA_ARGS__)

#endif
