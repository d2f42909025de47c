/* bench_classic.c: quality and speed of the classic segmenter
 * (core/seg_classic.h) on `cryomamba phantom` volumes, generated in memory,
 * against their exact ground truth (the sim engine's `blobs` mask for the
 * same shape and seed). Built by bench/meson.build:
 *   build/bench/bench_classic [--sizes 128,256] [--noise 0.25,0.5,0.75,1]
 *       [--seeds 1] [--speed 512] [--threads 1,2] [--quality-threads 2]
 * Prints Dice per label for every size x noise x seed, then the end-to-end
 * time (stats + windows + final pass, not the phantom's generation) of a
 * speed-size^3 float32 volume at noise 0.5 on each thread count, with its
 * Dice. --speed 0 skips the speed rows. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mask.h"
#include "core/mrc.h"
#include "core/phantom.h"
#include "core/seg_classic.h"
#include "seg_driver.h"

#define LIST_MAX 16

typedef struct {
  const core_phantom_t* ph;
  float* vol;
  uint32_t z0, z1;
} gen_job_t;


static void* gen_slices(void* arg) {
  gen_job_t* j = arg;
  size_t plane = (size_t) j->ph->shape.d[1] * j->ph->shape.d[2];
  for (uint32_t z = j->z0; z < j->z1; z++) {
    core_phantom_slice(j->ph, z, j->vol + z * plane);
  }
  return NULL;
}


/* The phantom of (n^3, seed, noise) into vol, on `threads` threads. */
static void generate(uint32_t n,
                     uint64_t seed,
                     float noise,
                     float* vol,
                     unsigned threads) {
  core_shape_t s = {{n, n, n}};
  core_phantom_t ph;
  core_phantom_init(&ph, &s, seed, noise);
  pthread_t tid[LIST_MAX];
  gen_job_t jobs[LIST_MAX];
  for (unsigned t = 0; t < threads; t++) {
    jobs[t] = (gen_job_t){&ph, vol, n * t / threads, n * (t + 1) / threads};
    if (pthread_create(&tid[t], NULL, gen_slices, &jobs[t]) != 0) {
      gen_slices(&jobs[t]);
      tid[t] = 0;
    }
  }
  for (unsigned t = 0; t < threads; t++) {
    if (tid[t] != 0) {
      pthread_join(tid[t], NULL);
    }
  }
}


/* Dice of label 1 and 2 of `got` against `want`. */
static void dice(const uint8_t* got,
                 const uint8_t* want,
                 uint64_t n,
                 double out[3]) {
  uint64_t both[3] = {0}, a[3] = {0}, b[3] = {0};
  for (uint64_t i = 0; i < n; i++) {
    a[got[i] < 3 ? got[i] : 0]++;
    b[want[i]]++;
    both[got[i] == want[i] ? got[i] : 0]++;
  }
  for (int l = 1; l < 3; l++) {
    out[l] = a[l] + b[l] ? 2.0 * (double) both[l] / (double) (a[l] + b[l]) : 1;
  }
}


static int parse_list(const char* s, double* out) {
  int n = 0;
  while (*s && n < LIST_MAX) {
    char* end;
    out[n++] = strtod(s, &end);
    if (end == s) {
      return -1;
    }
    s = *end == ',' ? end + 1 : end;
  }
  return n;
}


typedef struct {
  double dice[3];
  seg_driver_times_t t;
  core_seg_summary_t sum;
} result_t;


static int run(uint32_t n,
               uint64_t seed,
               float noise,
               unsigned threads,
               unsigned gen_threads,
               result_t* r) {
  uint64_t vox = (uint64_t) n * n * n;
  float* vol = malloc(vox * sizeof(float));
  uint8_t* mask = malloc(vox);
  uint8_t* truth = malloc(vox);
  if (vol == NULL || mask == NULL || truth == NULL) {
    free(vol);
    free(mask);
    free(truth);
    return -ENOMEM;
  }
  generate(n, seed, noise, vol, gen_threads);
  core_mask_spec_t spec = {{{n, n, n}}, CORE_PATTERN_BLOBS, seed};
  core_mask_render(&spec, 1.0, 1, 0, truth);
  core_seg_params_t p;
  core_seg_params_default(&p);
  core_seg_input_t in = {
      .data = vol, .mode = CORE_MRC_MODE_FLOAT32, .shape = {{n, n, n}}};
  int err = seg_driver_run(&in, &p, threads, 0, mask, &r->sum, &r->t);
  if (err == 0) {
    dice(mask, truth, vox, r->dice);
  }
  free(vol);
  free(mask);
  free(truth);
  return err;
}


int main(int argc, char** argv) {
  double sizes[LIST_MAX] = {128, 256}, noises[LIST_MAX] = {0.25, 0.5, 0.75, 1};
  double seeds[LIST_MAX] = {1}, threads[LIST_MAX] = {1, 2};
  int n_sizes = 2, n_noises = 4, n_seeds = 1, n_threads = 2;
  unsigned speed = 512, qthreads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char* o = argv[i];
    const char* v = argv[i + 1];
    if (strcmp(o, "--sizes") == 0) {
      n_sizes = parse_list(v, sizes);
    } else if (strcmp(o, "--noise") == 0) {
      n_noises = parse_list(v, noises);
    } else if (strcmp(o, "--seeds") == 0) {
      n_seeds = parse_list(v, seeds);
    } else if (strcmp(o, "--threads") == 0) {
      n_threads = parse_list(v, threads);
    } else if (strcmp(o, "--speed") == 0) {
      speed = (unsigned) strtoul(v, NULL, 10);
    } else if (strcmp(o, "--quality-threads") == 0) {
      qthreads = (unsigned) strtoul(v, NULL, 10);
    } else {
      n_sizes = -1;
    }
  }
  if (argc % 2 == 0 || n_sizes < 0 || n_noises < 0 || n_seeds < 0 ||
      n_threads < 0 || qthreads < 1 || qthreads > LIST_MAX) {
    fprintf(stderr, "usage: see the comment at the top of bench_classic.c\n");
    return 2;
  }
  printf("command:");
  for (int i = 0; i < argc; i++) {
    printf(" %s", argv[i]);
  }
  printf(
      "\n\n| size | noise | seed | Dice membrane | Dice particle | "
      "components | time s (%u threads) |\n|---|---|---|---|---|---|---|\n",
      qthreads);
  for (int a = 0; a < n_sizes; a++) {
    for (int b = 0; b < n_noises; b++) {
      for (int c = 0; c < n_seeds; c++) {
        result_t r;
        uint32_t n = (uint32_t) sizes[a];
        if (run(n, (uint64_t) seeds[c], (float) noises[b], qthreads, qthreads,
                &r) != 0) {
          fprintf(stderr, "run failed\n");
          return 1;
        }
        printf("| %u^3 | %.2f | %llu | %.3f | %.3f | %llu | %.2f |\n", n,
               noises[b], (unsigned long long) seeds[c], r.dice[1], r.dice[2],
               (unsigned long long) r.sum.components,
               r.t.stats_s + r.t.windows_s + r.t.finish_s);
        fflush(stdout);
      }
    }
  }
  if (speed == 0) {
    return 0;
  }
  printf(
      "\n| volume | threads | stats s | windows s | final s | total s | "
      "Mvoxel/s | Dice membrane | Dice particle |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  for (int t = 0; t < n_threads; t++) {
    result_t r;
    unsigned th = (unsigned) threads[t];
    if (th < 1 || th > LIST_MAX || run(speed, 1, 0.5f, th, 2, &r) != 0) {
      fprintf(stderr, "speed run failed\n");
      return 1;
    }
    double total = r.t.stats_s + r.t.windows_s + r.t.finish_s;
    double vox = (double) speed * speed * speed;
    printf(
        "| %u^3 float32 (%.0f MiB) | %u | %.2f | %.2f | %.2f | %.2f | "
        "%.1f | %.3f | %.3f |\n",
        speed, vox * 4 / (1 << 20), th, r.t.stats_s, r.t.windows_s,
        r.t.finish_s, total, vox / total / 1e6, r.dice[1], r.dice[2]);
    fflush(stdout);
  }
  return 0;
}
