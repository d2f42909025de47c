/* test_idmap.c: core_idmap against a plain array as the model, through
 * random inserts, replacements and removals (backward-shift deletion is
 * where open addressing usually breaks). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/idmap.h"

#define N 5000
#define KEY 36

static char keys[N][KEY + 1];

static void make_keys(void) {
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof(keys[i]), "%08x-0000-4000-8000-%012x",
             (unsigned) (i * 2654435761u), (unsigned) i);
  }
}

Test(idmap, matches_a_model_under_random_operations) {
  make_keys();
  core_idmap_t m;
  core_idmap_init(&m, KEY);
  static void* model[N];
  srand(7);
  for (int step = 0; step < 200000; step++) {
    int k = rand() % N;
    int op = rand() % 3;
    if (op < 2) {
      void* v = (void*) (uintptr_t) (step + 1);
      cr_assert_eq(core_idmap_put(&m, keys[k], v), 0);
      model[k] = v;
    } else {
      cr_assert_eq(core_idmap_remove(&m, keys[k]), model[k]);
      model[k] = NULL;
    }
    if (step % 997 == 0) {
      size_t count = 0;
      for (int i = 0; i < N; i++) {
        cr_assert_eq(core_idmap_get(&m, keys[i]), model[i], "key %d", i);
        count += model[i] != NULL;
      }
      cr_assert_eq(m.count, count);
    }
  }
  core_idmap_free(&m);
}

Test(idmap, lookup_ignores_case_and_empty_map_is_safe) {
  core_idmap_t m;
  core_idmap_init(&m, 4);
  cr_assert_null(core_idmap_get(&m, "abcd"));
  cr_assert_null(core_idmap_remove(&m, "abcd"));
  int x = 1;
  cr_assert_eq(core_idmap_put(&m, "abcd", &x), 0);
  cr_assert_eq(core_idmap_get(&m, "ABCD"), &x);
  core_idmap_free(&m);
}
