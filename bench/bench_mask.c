/* bench_mask.c: time per core_mask_render() and core_mask_count_labels() of
 * a 128x256x256 volume (8 MiB at scale 1). Built by bench/meson.build:
 *   build/bench/bench_mask [nz ny nx]
 * Prints milliseconds per call (best and mean over the repetitions). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/mask.h"

#define REPS 20


static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}


static void bench(const char* what,
                  const core_mask_spec_t* spec,
                  double progress,
                  uint32_t scale,
                  uint8_t* out) {
  double best = 1e30;
  double sum = 0;
  for (int i = 0; i < REPS; i++) {
    double t0 = now_ms();
    core_mask_render(spec, progress, scale, (uint64_t) i, out);
    double dt = now_ms() - t0;
    best = dt < best ? dt : best;
    sum += dt;
  }
  printf("%-28s scale %2u progress %.2f: best %7.3f ms, mean %7.3f ms\n", what,
         scale, progress, best, sum / REPS);
}


int main(int argc, char** argv) {
  core_mask_spec_t spec = {.shape = {{128, 256, 256}}, .seed = 42};
  if (argc == 4) {
    for (int a = 0; a < 3; a++) {
      spec.shape.d[a] = (uint32_t) strtoul(argv[a + 1], NULL, 10);
    }
  }
  if (!core_shape_is_valid(&spec.shape)) {
    fprintf(stderr, "usage: %s [nz ny nx] (each 1..4096)\n", argv[0]);
    return 2;
  }
  uint64_t n = core_shape_voxels(&spec.shape);
  uint8_t* out = malloc(n);
  if (out == NULL) {
    return 1;
  }
  printf("volume %ux%ux%u (%.1f MiB)\n", spec.shape.d[0], spec.shape.d[1],
         spec.shape.d[2], (double) n / (1 << 20));
  spec.pattern = CORE_PATTERN_RANDOM;
  bench("random", &spec, 0.5, 1, out);
  bench("random", &spec, 0.5, 2, out);
  spec.pattern = CORE_PATTERN_BLOBS;
  bench("blobs", &spec, 1.0, 1, out);
  bench("blobs", &spec, 0.5, 1, out);
  bench("blobs", &spec, 1.0, 2, out);
  bench("blobs", &spec, 1.0, 4, out);

  core_mask_render(&spec, 1.0, 1, 0, out);
  double best = 1e30;
  uint64_t counts[3];
  for (int i = 0; i < REPS; i++) {
    counts[0] = counts[1] = counts[2] = 0;
    double t0 = now_ms();
    core_mask_count_labels(out, n, counts, 3);
    double dt = now_ms() - t0;
    best = dt < best ? dt : best;
  }
  printf("count_labels (3 labels): best %.3f ms; 0:%llu 1:%llu 2:%llu\n", best,
         (unsigned long long) counts[0], (unsigned long long) counts[1],
         (unsigned long long) counts[2]);
  free(out);
  return 0;
}
