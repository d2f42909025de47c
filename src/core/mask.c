/* mask.c: the simulated inference engine's masks. Pure and re-entrant (all
 * state on the stack), called from worker threads.
 *
 * random: one xoshiro256** draw gives 64 voxels (one bit each).
 * blobs: the seed and shape fix the structures of the phantom tomogram
 * (core/phantom.h) in full-resolution coordinates (membranes: the vesicles'
 * shells; particles: solid spheres). Each is rasterised row by
 * row over its bounding box: per row one or two x-intervals from a sqrt,
 * then memset, so the cost is in rows, not voxels. A preview at scale s
 * samples volume voxel (i*s, j*s, k*s), and every decision about a row is
 * taken from its full-resolution (z, y) alone, so a scale-s render equals
 * the nearest-origin downsampling of the scale-1 render bit for bit. */
#include "core/mask.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#if defined(__SSE2__) && defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "core/phantom.h"

#define LABEL_MEMBRANE 1
#define LABEL_PARTICLE 2
/* Half width of a membrane's label: the phantom's leaflets sit 1.5 voxels
 * either side of the mid-surface with a 1.2-voxel profile. */
#define MEMBRANE_HALF_WIDTH 2.5

typedef struct {
  uint64_t s[4];
} rng_t;

/* Rasterisation target: the preview grid plus what is revealed so far. */
typedef struct {
  core_shape_t vol;  /* full resolution */
  core_shape_t prev; /* ceil(vol / scale) */
  uint32_t scale;
  uint8_t* out; /* preview planes [i_lo, i_hi) */
  uint32_t i_lo, i_hi;
  /* Windows revealed: all Z slabs below `slab`; in slab `slab`, the window
   * rows below `wrow`; in window row `wrow`, x below `xlim_part`. */
  uint32_t slab, wrow, xlim_part;
} raster_t;


static uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}


static void rng_init(rng_t* r, uint64_t seed, uint64_t tick) {
  uint64_t x = seed;
  uint64_t key = splitmix64(&x) ^ tick;
  for (int i = 0; i < 4; i++) {
    r->s[i] = splitmix64(&key);
  }
}


static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}


static inline uint64_t rng_next(rng_t* r) {
  uint64_t* s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}


/* Spreads the 64 bits of `r` over 64 bytes of 0/1: pass k takes bit k of
 * each byte of r. The voxel order is a fixed permutation of the bits, which
 * keeps them i.i.d. */
static inline void spread_bits(uint64_t r, uint8_t* dst) {
  for (int k = 0; k < 8; k++) {
    uint64_t w = (r >> k) & 0x0101010101010101ull;
    memcpy(dst + 8 * k, &w, sizeof(w));
  }
}


static void render_random(uint64_t seed,
                          uint64_t tick,
                          uint8_t* out,
                          uint64_t n) {
  rng_t r;
  rng_init(&r, seed, tick);
  for (; n >= 64; n -= 64, out += 64) {
    spread_bits(rng_next(&r), out);
  }
  if (n > 0) {
    uint8_t tail[64];
    spread_bits(rng_next(&r), tail);
    memcpy(out, tail, n);
  }
}


/* Length of the revealed prefix of full-resolution row (z, y): x < result. */
static uint32_t visible_xlim(const raster_t* r, uint32_t z, uint32_t y) {
  uint32_t wz = z / CORE_MASK_WINDOW;
  if (wz != r->slab) {
    return wz < r->slab ? r->vol.d[2] : 0;
  }
  uint32_t wy = y / CORE_MASK_WINDOW;
  if (wy != r->wrow) {
    return wy < r->wrow ? r->vol.d[2] : 0;
  }
  return r->xlim_part;
}


/* Sets preview voxels of row `row` whose sample x lies in [a, b] and below
 * xlim. */
static void fill_span(const raster_t* r,
                      uint8_t* row,
                      double a,
                      double b,
                      uint32_t xlim,
                      uint8_t label) {
  a = ceil(a);
  b = floor(b);
  if (a < 0) {
    a = 0;
  }
  if (b > (double) xlim - 1) {
    b = (double) xlim - 1;
  }
  if (a > b) {
    return;
  }
  uint32_t x0 = (uint32_t) a;
  uint32_t x1 = (uint32_t) b;
  uint32_t k0 = x0 / r->scale + (x0 % r->scale != 0);
  uint32_t k1 = x1 / r->scale;
  if (k0 <= k1) {
    memset(row + k0, label, k1 - k0 + 1);
  }
}


/* Preview index range [*i0, *i1] whose samples i*s fall in [c-rad, c+rad]
 * clipped to 0..n-1; false when empty. */
static bool axis_range(double c,
                       double rad,
                       uint32_t n,
                       uint32_t s,
                       uint32_t* i0,
                       uint32_t* i1) {
  double lo = ceil(c - rad);
  double hi = floor(c + rad);
  if (lo < 0) {
    lo = 0;
  }
  if (hi > (double) n - 1) {
    hi = (double) n - 1;
  }
  if (lo > hi) {
    return false;
  }
  uint32_t a = (uint32_t) lo;
  uint32_t b = (uint32_t) hi;
  *i0 = a / s + (a % s != 0);
  *i1 = b / s;
  return *i0 <= *i1;
}


/* Draws the voxels at distance ri..ro from the centre (ri <= 0: a solid
 * ball), `label` over whatever is there. */
static void draw_shell(const raster_t* r,
                       const double c[3],
                       double ro,
                       double ri,
                       uint8_t label) {
  uint32_t i0, i1, j0, j1;
  uint32_t s = r->scale;
  if (!axis_range(c[0], ro, r->vol.d[0], s, &i0, &i1) ||
      !axis_range(c[1], ro, r->vol.d[1], s, &j0, &j1)) {
    return;
  }
  i0 = i0 > r->i_lo ? i0 : r->i_lo;
  i1 = i1 < r->i_hi - 1 ? i1 : r->i_hi - 1;
  if (i0 > i1) {
    return; /* none of its planes is in the slab drawn */
  }
  double ro2 = ro * ro;
  double ri2 = ri > 0 ? ri * ri : -1.0;
  for (uint32_t i = i0; i <= i1; i++) {
    uint32_t z = i * s;
    if (z / CORE_MASK_WINDOW > r->slab) {
      return; /* this and every later plane is still hidden */
    }
    double dz = z - c[0];
    double dz2 = dz * dz;
    uint8_t* plane =
        r->out + (size_t) (i - r->i_lo) * r->prev.d[1] * r->prev.d[2];
    for (uint32_t j = j0; j <= j1; j++) {
      uint32_t y = j * s;
      double dy = y - c[1];
      double q = dz2 + dy * dy;
      if (q > ro2) {
        continue;
      }
      uint32_t xlim = visible_xlim(r, z, y);
      if (xlim == 0) {
        continue;
      }
      uint8_t* row = plane + (size_t) j * r->prev.d[2];
      double wo = sqrt(ro2 - q);
      if (q >= ri2) {
        fill_span(r, row, c[2] - wo, c[2] + wo, xlim, label);
      } else {
        double wi = sqrt(ri2 - q);
        fill_span(r, row, c[2] - wo, c[2] - wi, xlim, label);
        fill_span(r, row, c[2] + wi, c[2] + wo, xlim, label);
      }
    }
  }
}


static void render_blobs(const core_mask_spec_t* spec,
                         double progress,
                         uint32_t scale,
                         uint32_t i_lo,
                         uint32_t i_hi,
                         uint8_t* out) {
  raster_t r;
  r.vol = spec->shape;
  r.prev = core_shape_downsample(&spec->shape, scale);
  r.scale = scale;
  r.out = out;
  r.i_lo = i_lo;
  r.i_hi = i_hi;
  memset(out, 0, (size_t) (i_hi - i_lo) * r.prev.d[1] * r.prev.d[2]);

  uint64_t nw[3];
  for (int a = 0; a < 3; a++) {
    nw[a] =
        r.vol.d[a] / CORE_MASK_WINDOW + (r.vol.d[a] % CORE_MASK_WINDOW != 0);
  }
  uint64_t total = nw[0] * nw[1] * nw[2];
  uint64_t shown = total;
  if (!(progress >= 0)) { /* NaN too */
    shown = 0;
  } else if (progress < 1) {
    shown = (uint64_t) floor(progress * (double) total);
  }
  if (shown == 0) {
    return;
  }
  uint64_t rem = shown % (nw[1] * nw[2]);
  r.slab = (uint32_t) (shown / (nw[1] * nw[2]));
  r.wrow = (uint32_t) (rem / nw[2]);
  uint64_t xl = rem % nw[2] * CORE_MASK_WINDOW;
  r.xlim_part = xl < r.vol.d[2] ? (uint32_t) xl : r.vol.d[2];

  /* The structures are the phantom's (core/phantom.h) for the same shape
   * and seed, so a blobs job on `cryomamba phantom --seed N` segments what
   * the tomogram shows: vesicle membranes (label 1, the two leaflets and a
   * voxel either side) and particles (label 2, drawn over membranes). */
  core_phantom_t ph;
  core_phantom_init(&ph, &spec->shape, spec->seed, 0.0f);
  for (unsigned i = 0; i < ph.vesicle_count; i++) {
    const core_phantom_ball_t* b = &ph.vesicles[i];
    double c[3] = {b->c[0], b->c[1], b->c[2]};
    draw_shell(&r, c, b->r + MEMBRANE_HALF_WIDTH, b->r - MEMBRANE_HALF_WIDTH,
               LABEL_MEMBRANE);
  }
  for (unsigned i = 0; i < ph.particle_count; i++) {
    const core_phantom_ball_t* b = &ph.particles[i];
    double c[3] = {b->c[0], b->c[1], b->c[2]};
    draw_shell(&r, c, b->r, -1.0, LABEL_PARTICLE);
  }
}


void core_mask_render(const core_mask_spec_t* spec,
                      double progress,
                      uint32_t scale,
                      uint64_t tick,
                      uint8_t* out) {
  assert(scale >= 1);
  assert(core_shape_is_valid(&spec->shape));
  switch (spec->pattern) {
  case CORE_PATTERN_RANDOM: {
    core_shape_t p = core_shape_downsample(&spec->shape, scale);
    render_random(spec->seed, tick, out, core_shape_voxels(&p));
    return;
  }
  case CORE_PATTERN_BLOBS: {
    core_shape_t p = core_shape_downsample(&spec->shape, scale);
    render_blobs(spec, progress, scale, 0, p.d[0], out);
    return;
  }
  }
}


void core_mask_render_planes(const core_mask_spec_t* spec,
                             double progress,
                             uint64_t tick,
                             uint32_t z0,
                             uint32_t z1,
                             uint8_t* out) {
  assert(core_shape_is_valid(&spec->shape));
  assert(z0 < z1 && z1 <= spec->shape.d[0]);
  size_t plane = (size_t) spec->shape.d[1] * spec->shape.d[2];
  if (spec->pattern == CORE_PATTERN_BLOBS) {
    render_blobs(spec, progress, 1, z0, z1, out);
    return;
  }
  /* random: one stream over the whole volume, so the planes before z0 are
   * drawn and dropped (the stream cannot seek) */
  rng_t r;
  rng_init(&r, spec->seed, tick);
  uint8_t tmp[64];
  uint64_t skip = (uint64_t) z0 * plane;
  uint64_t want = (uint64_t) (z1 - z0) * plane;
  uint64_t pos = 0;
  while (pos + 64 <= skip) {
    (void) rng_next(&r);
    pos += 64;
  }
  while (want > 0) {
    spread_bits(rng_next(&r), tmp);
    uint64_t from = skip > pos ? skip - pos : 0;
    uint64_t n = 64 - from < want ? 64 - from : want;
    memcpy(out, tmp + from, (size_t) n);
    out += n;
    want -= n;
    pos += 64;
  }
}


#if !(defined(__SSE2__) && defined(__x86_64__))
/* 0x01 in each byte lane of w that is zero, exact (no borrow between
 * lanes). */
static inline uint64_t zero_byte_flags(uint64_t w) {
  const uint64_t lo7 = 0x7f7f7f7f7f7f7f7full;
  uint64_t t = ((w & lo7) + lo7) | w;
  return (~t >> 7) & 0x0101010101010101ull; /* 1 per zero byte */
}


/* Sums the eight byte lanes of `acc` (each <= 255). */
static inline uint64_t lane_sum(uint64_t acc) {
  uint64_t pairs =
      (acc & 0x00ff00ff00ff00ffull) + ((acc >> 8) & 0x00ff00ff00ff00ffull);
  return (pairs * 0x0001000100010001ull) >> 48;
}
#endif


/* Counts bytes equal to v in mask[0..len). Masks have 2 or 3 labels, so a
 * pass of vector compares per label beats a histogram's dependent
 * increments: SSE2 (always there on x86-64) 16 bytes at a time, else SWAR 8
 * at a time. Byte lane counters are flushed before they can overflow. */
static uint64_t count_byte(const uint8_t* mask, uint64_t len, uint8_t v) {
  uint64_t total = 0;
  uint64_t i = 0;
#if defined(__SSE2__) && defined(__x86_64__)
  const __m128i pat = _mm_set1_epi8((char) v);
  const __m128i zero = _mm_setzero_si128();
  while (len - i >= 16) {
    uint64_t n = (len - i) / 16;
    n = n > 255 ? 255 : n;
    __m128i acc = zero;
    for (uint64_t k = 0; k < n; k++, i += 16) {
      __m128i x = _mm_loadu_si128((const __m128i*) (mask + i));
      acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(x, pat)); /* -(-1) per match */
    }
    __m128i sums = _mm_sad_epu8(acc, zero);
    total += (uint64_t) _mm_cvtsi128_si64(sums) +
             (uint64_t) _mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
  }
#else
  uint64_t pattern = 0x0101010101010101ull * v;
  while (len - i >= 8) {
    uint64_t n = (len - i) / 8;
    n = n > 255 ? 255 : n;
    uint64_t acc = 0;
    for (uint64_t k = 0; k < n; k++, i += 8) {
      uint64_t x;
      memcpy(&x, mask + i, sizeof(x));
      acc += zero_byte_flags(x ^ pattern);
    }
    total += lane_sum(acc);
  }
#endif
  for (; i < len; i++) {
    total += mask[i] == v;
  }
  return total;
}


uint64_t core_mask_count_labels(const uint8_t* mask,
                                uint64_t len,
                                uint64_t* counts,
                                unsigned n_labels) {
  if (n_labels <= 8) {
    uint64_t matched = 0;
    for (unsigned v = 0; v < n_labels; v++) {
      uint64_t c = count_byte(mask, len, (uint8_t) v);
      counts[v] += c;
      matched += c;
    }
    return len - matched;
  }
  uint64_t hist[256] = {0};
  for (uint64_t i = 0; i < len; i++) {
    hist[mask[i]]++;
  }
  uint64_t other = 0;
  for (unsigned v = 0; v < 256; v++) {
    if (v < n_labels) {
      counts[v] += hist[v];
    } else {
      other += hist[v];
    }
  }
  return other;
}


/* Windows shown at `progress` (as render_blobs counts them). */
static uint64_t windows_shown(double progress, uint64_t total) {
  if (!(progress >= 0)) {
    return 0;
  }
  return progress < 1 ? (uint64_t) floor(progress * (double) total) : total;
}


core_box_t core_mask_changed_box(const core_mask_spec_t* spec,
                                 double pa,
                                 uint64_t ta,
                                 double pb,
                                 uint64_t tb) {
  const core_shape_t* s = &spec->shape;
  core_box_t all = {{0, 0, 0}, {s->d[0], s->d[1], s->d[2]}};
  if (spec->pattern == CORE_PATTERN_RANDOM) {
    return ta == tb ? core_box_empty() : all;
  }
  uint64_t nw[3];
  for (int a = 0; a < 3; a++) {
    nw[a] = s->d[a] / CORE_MASK_WINDOW + (s->d[a] % CORE_MASK_WINDOW != 0);
  }
  uint64_t total = nw[0] * nw[1] * nw[2];
  uint64_t wa = windows_shown(pa, total);
  uint64_t wb = windows_shown(pb, total);
  if (wa == wb) {
    return core_box_empty();
  }
  uint64_t w0 = wa < wb ? wa : wb;
  uint64_t w1 = (wa < wb ? wb : wa) - 1; /* the last window that differs */
  uint64_t z0 = w0 / (nw[1] * nw[2]);
  uint64_t z1 = w1 / (nw[1] * nw[2]);
  uint64_t y0 = w0 / nw[2] % nw[1];
  uint64_t y1 = w1 / nw[2] % nw[1];
  core_box_t b = all;
  b.lo[0] = (uint32_t) (z0 * CORE_MASK_WINDOW);
  b.hi[0] = (uint32_t) ((z1 + 1) * CORE_MASK_WINDOW);
  if (z0 == z1) { /* one slab: its rows */
    b.lo[1] = (uint32_t) (y0 * CORE_MASK_WINDOW);
    b.hi[1] = (uint32_t) ((y1 + 1) * CORE_MASK_WINDOW);
    if (y0 == y1) { /* one row: its windows */
      b.lo[2] = (uint32_t) (w0 % nw[2] * CORE_MASK_WINDOW);
      b.hi[2] = (uint32_t) ((w1 % nw[2] + 1) * CORE_MASK_WINDOW);
    }
  }
  for (int a = 0; a < 3; a++) {
    b.hi[a] = b.hi[a] < s->d[a] ? b.hi[a] : s->d[a];
  }
  return b;
}
