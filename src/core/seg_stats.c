/* seg_stats.c: the classic segmenter's global statistics, computed before
 * any window: the background level and the noise of the *smoothed* volume,
 * which every threshold is relative to. Both come from a fixed sample (up
 * to 4 x 4 x 4 cubes of 32^3 spread over the volume), so the cost does not
 * grow with the volume and the result is deterministic. Robust estimates:
 * the median (structures are a minority), and the noise from the light
 * half only (dense structures sit on the dark side), which for Gaussian
 * noise has median |deviation| = 0.6745 sd. Pure; any thread. */
#include "core/seg_internal.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define SAMPLE_EDGE 32u
#define SAMPLES_PER_AXIS 4u


/* The k-th smallest of a[0..n) (k < n), reordering a: Wirth's selection
 * (Hoare partitions around a[k]); no randomness, so the same input gives
 * the same answer. */
static float select_kth(float* a, size_t n, size_t k) {
  assert(k < n);
  int64_t lo = 0, hi = (int64_t) n - 1, kk = (int64_t) k;
  while (lo < hi) {
    float pivot = a[kk];
    int64_t i = lo, j = hi;
    do {
      while (a[i] < pivot) {
        i++;
      }
      while (pivot < a[j]) {
        j--;
      }
      if (i <= j) {
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    } while (i <= j);
    if (j < kk) {
      lo = i;
    }
    if (kk < i) {
      hi = j;
    }
  }
  return a[kk];
}


/* Sample cube `i` of `count` along an axis of length `len`: its start,
 * spread so that the first starts at 0 and the last ends at len. */
static uint32_t sample_start(uint32_t len,
                             uint32_t edge,
                             uint32_t i,
                             uint32_t count) {
  if (count <= 1) {
    return 0;
  }
  return (uint32_t) ((uint64_t) (len - edge) * i / (count - 1));
}


/* Mean and sd of the raw values of the sampled cubes. 0 or the input's read
 * error. */
static int raw_moments(const core_seg_input_t* in,
                       const core_seg_kernel_t* identity,
                       const uint32_t edge[3],
                       const uint32_t count[3],
                       float* buf,
                       float* tmp,
                       core_seg_stats_t* out) {
  double sum = 0, sum2 = 0;
  uint64_t n = 0;
  size_t cube = (size_t) edge[0] * edge[1] * edge[2];
  for (uint32_t i = 0; i < count[0] * count[1] * count[2]; i++) {
    uint32_t c[3] = {i / (count[1] * count[2]), i / count[2] % count[1],
                     i % count[2]};
    uint32_t lo[3];
    for (int a = 0; a < 3; a++) {
      lo[a] = sample_start(in->shape.d[a], edge[a], c[a], count[a]);
    }
    int err = core_seg_smooth_box(in, identity, lo, edge, buf, tmp);
    if (err != 0) {
      return err;
    }
    for (size_t j = 0; j < cube; j++) {
      sum += buf[j];
      sum2 += (double) buf[j] * buf[j];
    }
    n += cube;
  }
  out->mean = sum / (double) n;
  double var = sum2 / (double) n - out->mean * out->mean;
  out->sd = var > 0 ? sqrt(var) : 0;
  return 0;
}


/* Robust sd of the second differences at step h along X of the smoothed
 * sample (rows of `edge` voxels), divided by h^2: the noise a curvature at
 * that scale is compared with. Median |difference| / 0.6745, as the noise
 * is symmetric. 0 when the rows are too short or memory is short (a
 * curvature then only needs to be negative). */
static float curvature_sd(const float* f, size_t n, uint32_t edge, uint32_t h) {
  if (edge < 2 * h + 1) {
    return 0;
  }
  size_t m = 0;
  float* dd = malloc(n * sizeof(float));
  if (dd == NULL) {
    return 0;
  }
  for (size_t row = 0; row < n / edge; row++) {
    const float* r = f + row * edge;
    for (uint32_t x = h; x + h < edge; x++) {
      float v = r[x + h] - 2 * r[x] + r[x - h];
      dd[m++] = v < 0 ? -v : v;
    }
  }
  float sd = select_kth(dd, m, m / 2) / 0.6745f / ((float) h * (float) h);
  free(dd);
  return sd;
}


int core_seg_stats(const core_seg_input_t* in,
                   const core_seg_params_t* p,
                   core_seg_stats_t* out) {
  if (!core_seg_input_ok(in) || core_seg_params_check(p, NULL, 0) != 0) {
    return -EINVAL;
  }
  uint32_t edge[3], count[3];
  for (int a = 0; a < 3; a++) {
    uint32_t len = in->shape.d[a];
    edge[a] = len < SAMPLE_EDGE ? len : SAMPLE_EDGE;
    uint32_t fit = len / edge[a] + (len % edge[a] != 0);
    count[a] = fit < SAMPLES_PER_AXIS ? fit : SAMPLES_PER_AXIS;
  }
  core_seg_kernel_t k, identity;
  core_seg_kernel_init(&k, p->sigma);
  core_seg_kernel_init(&identity, 0);
  size_t cube = (size_t) edge[0] * edge[1] * edge[2];
  size_t cubes = (size_t) count[0] * count[1] * count[2];
  float* all = malloc(cube * cubes * sizeof(float));
  float* tmp = malloc(core_seg_smooth_tmp_floats(edge, k.r) * sizeof(float));
  if (all == NULL || tmp == NULL) {
    free(all);
    free(tmp);
    return -ENOMEM;
  }
  int err = raw_moments(in, &identity, edge, count, all, tmp, out);
  for (size_t i = 0; err == 0 && i < cubes; i++) {
    uint32_t c[3] = {(uint32_t) (i / (count[1] * count[2])),
                     (uint32_t) (i / count[2] % count[1]),
                     (uint32_t) (i % count[2])};
    uint32_t lo[3];
    for (int a = 0; a < 3; a++) {
      lo[a] = sample_start(in->shape.d[a], edge[a], c[a], count[a]);
    }
    err = core_seg_smooth_box(in, &k, lo, edge, all + i * cube, tmp);
  }
  free(tmp);
  if (err != 0) {
    free(all);
    return err;
  }
  size_t n = cube * cubes;
  out->sampled = n;
  out->curvature_sd = curvature_sd(all, n, edge[2], 1);
  out->curvature_sd2 = curvature_sd(all, n, edge[2], 2);
  out->core_curvature_sd = curvature_sd(all, n, edge[2], core_seg_core_step(p));
  out->background = select_kth(all, n, n / 2);
  /* Deviations on the light side, compacted to the front of `all`. */
  size_t m = 0;
  double sq = 0;
  for (size_t i = 0; i < n; i++) {
    float dev = p->dense_is_bright ? out->background - all[i]
                                   : all[i] - out->background;
    if (dev > 0) {
      all[m++] = dev;
      sq += (double) dev * dev;
    }
  }
  out->noise_sd = 0;
  if (m > 0) {
    out->noise_sd = select_kth(all, m, m / 2) / 0.6745f;
    if (!(out->noise_sd > 0)) {
      /* Quantised data with over half the light side on one level: fall
       * back to the root mean square deviation. */
      out->noise_sd = (float) sqrt(sq / (double) m);
    }
  }
  free(all);
  return 0;
}
