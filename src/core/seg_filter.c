/* seg_filter.c: the classic segmenter's filters over boxes: reading any MRC
 * voxel mode as float (borders clamped), the separable Gaussian, the
 * local-peak threshold and the curvature (Hessian) test. Pure; any thread;
 * the caller owns every buffer. The passes run along whole rows so the
 * compiler can vectorise them. */
#include "core/seg_internal.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/mrc.h"


void core_seg_kernel_init(core_seg_kernel_t* k, float sigma) {
  memset(k, 0, sizeof(*k));
  if (!(sigma > 0)) {
    k->w[0] = 1.0f;
    return;
  }
  assert(sigma <= CORE_SEG_SIGMA_MAX);
  k->r = (uint32_t) ceilf(3.0f * sigma);
  double sum = 0;
  double w[2 * CORE_SEG_KERNEL_MAX + 1];
  for (uint32_t i = 0; i <= 2 * k->r; i++) {
    double x = ((double) i - (double) k->r) / sigma;
    w[i] = exp(-0.5 * x * x);
    sum += w[i];
  }
  for (uint32_t i = 0; i <= 2 * k->r; i++) {
    k->w[i] = (float) (w[i] / sum);
  }
}


bool core_seg_input_ok(const core_seg_input_t* in) {
  if (in == NULL || (in->data == NULL) == (in->read == NULL) ||
      !core_shape_is_valid(&in->shape)) {
    return false;
  }
  switch (in->mode) {
  case CORE_MRC_MODE_INT8:
  case CORE_MRC_MODE_INT16:
  case CORE_MRC_MODE_FLOAT32:
  case CORE_MRC_MODE_UINT16:
  case CORE_MRC_MODE_FLOAT16:
    return true;
  default:
    return false;
  }
}


static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t bits;
  if (e == 0x1f) {
    return 0.0f; /* inf and NaN read as 0, like non-finite float32 */
  }
  if (e == 0) {
    /* Subnormal (or zero): m * 2^-24, exact in float. */
    float v = (float) m * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  bits = sign | ((e + 112u) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}


/* Converts `len` voxels of `mode` from `src` (one row) to float. */
static void convert(int32_t mode,
                    const uint8_t* src,
                    uint32_t len,
                    float* out) {
  switch (mode) {
  case CORE_MRC_MODE_FLOAT32: {
    memcpy(out, src, (size_t) len * 4);
    for (uint32_t x = 0; x < len; x++) {
      /* x - x is 0 only for finite x: NaN and inf read as 0. */
      out[x] = out[x] - out[x] == 0.0f ? out[x] : 0.0f;
    }
    return;
  }
  case CORE_MRC_MODE_INT8: {
    const int8_t* s8 = (const int8_t*) src;
    for (uint32_t x = 0; x < len; x++) {
      out[x] = (float) s8[x];
    }
    return;
  }
  case CORE_MRC_MODE_INT16:
  case CORE_MRC_MODE_UINT16:
  case CORE_MRC_MODE_FLOAT16: {
    for (uint32_t x = 0; x < len; x++) {
      uint16_t u;
      memcpy(&u, src + 2 * (size_t) x, 2);
      out[x] = mode == CORE_MRC_MODE_UINT16  ? (float) u
               : mode == CORE_MRC_MODE_INT16 ? (float) (int16_t) u
                                             : half_to_float(u);
    }
    return;
  }
  default:
    assert(0 && "mode checked by core_seg_input_ok");
  }
}


static uint32_t clamp_coord(int64_t c, uint32_t n) {
  return c < 0 ? 0 : c >= (int64_t) n ? n - 1 : (uint32_t) c;
}


/* The rows of one Z plane that are at hand: all of the volume's (its data)
 * or the box of them the input's read put into a buffer. */
typedef struct {
  const uint8_t* base; /* voxel (y0, x0) of the plane */
  uint32_t y0, x0;     /* the first row and column held */
  size_t row;          /* voxels from one row to the next */
  size_t itemsize;     /* bytes per voxel */
} plane_t;


/* Row y of the plane, x from x0 (may be < 0) for len voxels, the
 * coordinates clamped into the volume (the plane holds those). */
static void read_row(const core_seg_input_t* in,
                     const plane_t* pl,
                     int64_t y,
                     int64_t x0,
                     uint32_t len,
                     float* out) {
  const core_shape_t* s = &in->shape;
  uint32_t yc = clamp_coord(y, s->d[1]);
  assert(yc >= pl->y0);
  const uint8_t* row =
      pl->base + (size_t) (yc - pl->y0) * pl->row * pl->itemsize;
  int64_t nx = s->d[2];
  int64_t a = x0 < 0 ? 0 : x0;
  int64_t b = x0 + len < nx ? x0 + len : nx;
  assert(a >= pl->x0 || a >= b);
  if (a < b) {
    convert(in->mode, row + (size_t) (a - pl->x0) * pl->itemsize,
            (uint32_t) (b - a), out + (a - x0));
  }
  for (int64_t x = x0; x < a && x < x0 + len; x++) {
    assert(pl->x0 == 0); /* the plane holds the border column */
    convert(in->mode, row, 1, out + (x - x0));
  }
  for (int64_t x = b > x0 ? b : x0; x < x0 + len; x++) {
    convert(in->mode, row + (size_t) (nx - 1 - (int64_t) pl->x0) * pl->itemsize,
            1, out + (x - x0));
  }
}


size_t core_seg_smooth_tmp_floats(const uint32_t n[3], uint32_t r) {
  size_t pz = n[0] + 2 * (size_t) r, py = n[1] + 2 * (size_t) r;
  size_t px = n[2] + 2 * (size_t) r;
  /* bx, by, a padded row, and one Z plane of the padded box read raw (at
   * most 4 bytes a voxel: a float each). */
  return pz * py * n[2] + pz * n[1] * n[2] + px + py * px;
}


int core_seg_smooth_box(const core_seg_input_t* in,
                        const core_seg_kernel_t* k,
                        const uint32_t lo[3],
                        const uint32_t n[3],
                        float* out,
                        float* tmp) {
  const uint32_t r = k->r, taps = 2 * k->r + 1;
  const size_t nx = n[2], py = n[1] + 2 * (size_t) r;
  const size_t pz = n[0] + 2 * (size_t) r;
  float* bx = tmp;               /* pz x py x nx: filtered along X */
  float* by = bx + pz * py * nx; /* pz x n[1] x nx: then along Y */
  float* line = by + pz * n[1] * nx;
  uint8_t* raw = (uint8_t*) (line + nx + 2 * r); /* a plane read */
  const core_shape_t* sh = &in->shape;
  plane_t pl = {in->data, 0, 0, sh->d[2], core_mrc_mode_itemsize(in->mode)};
  /* The rows and columns of the volume the padded box clamps to: what a
   * plane read brings. */
  uint32_t blo[3] = {0, 0, 0}, bn[3] = {1, 0, 0};
  for (int a = 1; a < 3; a++) {
    int64_t a0 = (int64_t) lo[a] - r, a1 = (int64_t) lo[a] + n[a] + r;
    blo[a] = a0 < 0 ? 0 : (uint32_t) a0;
    bn[a] = (a1 > sh->d[a] ? sh->d[a] : (uint32_t) a1) - blo[a];
  }
  int64_t loaded = -1; /* the plane in `raw` */
  for (size_t z = 0; z < pz; z++) {
    uint32_t zc = clamp_coord((int64_t) lo[0] + (int64_t) z - r, sh->d[0]);
    if (in->data != NULL) {
      pl.base = (const uint8_t*) in->data +
                (size_t) zc * sh->d[1] * sh->d[2] * pl.itemsize;
    } else if (zc != loaded) {
      blo[0] = zc;
      int err = in->read(in->user, blo, bn, raw);
      assert(err <= 0);
      if (err != 0) {
        return err;
      }
      loaded = zc;
      pl = (plane_t){raw, blo[1], blo[2], bn[2], pl.itemsize};
    }
    for (size_t y = 0; y < py; y++) {
      read_row(in, &pl, (int64_t) lo[1] + (int64_t) y - r, (int64_t) lo[2] - r,
               (uint32_t) (nx + 2 * r), line);
      float* dst = bx + (z * py + y) * nx;
      for (size_t x = 0; x < nx; x++) {
        dst[x] = k->w[0] * line[x];
      }
      for (uint32_t t = 1; t < taps; t++) {
        const float w = k->w[t];
        const float* src = line + t;
        for (size_t x = 0; x < nx; x++) {
          dst[x] += w * src[x];
        }
      }
    }
  }
  for (size_t z = 0; z < pz; z++) {
    for (size_t y = 0; y < n[1]; y++) {
      float* dst = by + (z * n[1] + y) * nx;
      const float* src = bx + (z * py + y) * nx;
      for (size_t x = 0; x < nx; x++) {
        dst[x] = k->w[0] * src[x];
      }
      for (uint32_t t = 1; t < taps; t++) {
        const float w = k->w[t];
        const float* s = src + t * nx;
        for (size_t x = 0; x < nx; x++) {
          dst[x] += w * s[x];
        }
      }
    }
  }
  const size_t plane = n[1] * nx;
  for (size_t z = 0; z < n[0]; z++) {
    float* dst = out + z * plane;
    const float* src = by + z * plane;
    for (size_t i = 0; i < plane; i++) {
      dst[i] = k->w[0] * src[i];
    }
    for (uint32_t t = 1; t < taps; t++) {
      const float w = k->w[t];
      const float* s = src + t * plane;
      for (size_t i = 0; i < plane; i++) {
        dst[i] += w * s[i];
      }
    }
  }
  return 0;
}


/* Running max along a slow axis: dst row i = the element-wise max of src
 * rows i - r..i + r (clipped to 0..len-1), each row `stride` floats. */
static void max_pass(const float* src,
                     float* dst,
                     size_t len,
                     size_t stride,
                     uint32_t r) {
  for (size_t i = 0; i < len; i++) {
    size_t a = i > r ? i - r : 0, b = i + r < len ? i + r : len - 1;
    float* d = dst + i * stride;
    memcpy(d, src + a * stride, stride * sizeof(float));
    for (size_t j = a + 1; j <= b; j++) {
      const float* s = src + j * stride;
      for (size_t x = 0; x < stride; x++) {
        d[x] = s[x] > d[x] ? s[x] : d[x];
      }
    }
  }
}


void core_seg_peak_threshold(const float* d,
                             const uint32_t n[3],
                             uint32_t r,
                             float floor,
                             float fraction,
                             uint8_t* s,
                             float* tmp) {
  const size_t nx = n[2], plane = n[1] * nx, vox = n[0] * plane;
  float* a = tmp;
  float* b = tmp + vox;
  /* Along X: one row at a time, each voxel its own "row" of stride 1. */
  for (size_t row = 0; row < n[0] * (size_t) n[1]; row++) {
    const float* src = d + row * nx;
    float* dst = a + row * nx;
    for (size_t x = 0; x < nx; x++) {
      size_t lo = x > r ? x - r : 0, hi = x + r < nx ? x + r : nx - 1;
      float m = src[lo];
      for (size_t j = lo + 1; j <= hi; j++) {
        m = src[j] > m ? src[j] : m;
      }
      dst[x] = m;
    }
  }
  for (size_t z = 0; z < n[0]; z++) {
    max_pass(a + z * plane, b + z * plane, n[1], nx, r);
  }
  max_pass(b, a, n[0], plane, r);
  for (size_t i = 0; i < vox; i++) {
    float v = d[i];
    s[i] = (uint8_t) (v > 0 && v >= floor && v >= fraction * a[i]);
  }
}


/* d at voxel (z, y, x) + h * (a, b, c) with coordinates clamped into the
 * box. */
static float at(const float* d,
                const uint32_t n[3],
                const int64_t p[3],
                int64_t h,
                const int off[3]) {
  size_t idx = 0;
  for (int a = 0; a < 3; a++) {
    int64_t q = p[a] + h * off[a];
    q = q < 0 ? 0 : q >= (int64_t) n[a] ? (int64_t) n[a] - 1 : q;
    idx = idx * n[a] + (size_t) q;
  }
  return d[idx];
}


bool core_seg_curved_all_ways(const float* d,
                              const uint32_t n[3],
                              size_t i,
                              uint32_t h,
                              float c) {
  const size_t plane = (size_t) n[1] * n[2];
  const int64_t p[3] = {(int64_t) (i / plane), (int64_t) (i / n[2] % n[1]),
                        (int64_t) (i % n[2])};
  const float v = d[i], h2 = (float) h * (float) h;
  /* m = -(Hessian) - c I, by central differences of the smooth field at
   * step h; the curvature test is m positive definite (Sylvester: its
   * leading minors). */
  float m[3][3];
  for (int a = 0; a < 3; a++) {
    int e[3] = {0, 0, 0};
    e[a] = 1;
    int me[3] = {-e[0], -e[1], -e[2]};
    m[a][a] = (2 * v - at(d, n, p, h, e) - at(d, n, p, h, me)) / h2 - c;
    for (int b = a + 1; b < 3; b++) {
      int pp[3] = {0, 0, 0}, pm[3] = {0, 0, 0};
      pp[a] = pp[b] = 1;
      pm[a] = 1;
      pm[b] = -1;
      int mp[3] = {-pm[0], -pm[1], -pm[2]}, mm[3] = {-pp[0], -pp[1], -pp[2]};
      float hab = (at(d, n, p, h, pp) - at(d, n, p, h, pm) -
                   at(d, n, p, h, mp) + at(d, n, p, h, mm)) /
                  (4 * h2);
      m[a][b] = m[b][a] = -hab;
    }
  }
  float m2 = m[0][0] * m[1][1] - m[0][1] * m[1][0];
  float m3 = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
             m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
             m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  return m[0][0] > 0 && m2 > 0 && m3 > 0;
}
