/* bench_payload.c: bytes on the wire per preview in each encoding, and what
 * producing them costs. For the `random` and `blobs` patterns of a volume
 * (default 64x128x128, the fan-out scenario's 1 MiB preview): the protocol's
 * JSON + base64 text frame, a raw binary frame, zstd at several levels (once
 * per preview, shared by all subscribers), and what permessage-deflate would
 * send (zlib raw deflate of the JSON text, which a server must run once PER
 * SUBSCRIBER: each connection has its own compression context).
 *   build/bench/bench_payload [nz ny nx]
 * Pure computation; no sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>
#ifdef HAVE_ZLIB
#include <zlib.h>
#endif

#include "core/base64.h"
#include "core/mask.h"
#include "core/msg.h"

#define REPS 5


static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}


#ifdef HAVE_ZLIB
/* Raw deflate (as permessage-deflate sends it) of `src`; returns the
 * compressed length and the best time in *ms. */
static size_t deflate_len(const uint8_t* src, size_t n, int level, double* ms) {
  size_t cap = compressBound((uLong) n) + 64;
  uint8_t* dst = malloc(cap);
  size_t out = 0;
  *ms = 1e30;
  for (int r = 0; r < REPS && dst != NULL; r++) {
    z_stream z;
    memset(&z, 0, sizeof(z));
    double t0 = now_ms();
    deflateInit2(&z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef*) src;
    z.avail_in = (uInt) n;
    z.next_out = dst;
    z.avail_out = (uInt) cap;
    deflate(&z, Z_SYNC_FLUSH);
    out = cap - z.avail_out;
    deflateEnd(&z);
    double dt = now_ms() - t0;
    *ms = dt < *ms ? dt : *ms;
  }
  free(dst);
  return out;
}
#endif


static size_t zstd_len(const uint8_t* src, size_t n, int level, double* ms) {
  size_t cap = ZSTD_compressBound(n);
  uint8_t* dst = malloc(cap);
  size_t out = 0;
  *ms = 1e30;
  for (int r = 0; r < REPS && dst != NULL; r++) {
    double t0 = now_ms();
    out = ZSTD_compress(dst, cap, src, n, level);
    double dt = now_ms() - t0;
    *ms = dt < *ms ? dt : *ms;
  }
  free(dst);
  return ZSTD_isError(out) ? 0 : out;
}


static void row(const char* pattern,
                const char* encoding,
                size_t bytes,
                size_t raw,
                double ms) {
  printf("| %-7s | %-34s | %11zu | %7.2fx | %8.2f |\n", pattern, encoding,
         bytes, (double) raw / (double) bytes, ms);
}


static void report(const char* name, const core_mask_spec_t* spec) {
  core_shape_t s = spec->shape;
  size_t n = (size_t) core_shape_voxels(&s);
  uint8_t* mask = malloc(n);
  core_preview_layout_t layout;
  core_msg_preview_layout("0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10", 12,
                          1795896000000000, &s, 1, n, &layout);
  uint8_t* json = malloc(layout.total_len + 1);
  if (mask == NULL || json == NULL) {
    exit(1);
  }
  double t0 = now_ms();
  core_mask_render(spec, 1.0, 1, 3, mask);
  double render_ms = now_ms() - t0;
  t0 = now_ms();
  memcpy(json, layout.prefix, layout.prefix_len);
  core_base64_encode(mask, n, (char*) json + layout.prefix_len);
  memcpy(json + layout.prefix_len + layout.b64_len, layout.suffix,
         layout.suffix_len);
  double json_ms = now_ms() - t0;
  size_t hdr = 10; /* a 64-bit-length frame header */
  printf("| %-7s | %-34s | %11zu | %8s | %8.2f |\n", name, "(render the mask)",
         n, "", render_ms);
  row(name, "json + base64 (default)", layout.total_len + hdr, n, json_ms);
  row(name, "binary, raw uint8", n + hdr + 64, n, 0);
  int levels[] = {1, 3, 9}; /* -19 takes seconds per 8 MiB */
  for (size_t i = 0; i < sizeof(levels) / sizeof(*levels); i++) {
    double ms = 0;
    size_t z = zstd_len(mask, n, levels[i], &ms);
    char what[64];
    snprintf(what, sizeof(what), "binary, zstd -%d (once per preview)",
             levels[i]);
    row(name, what, z + hdr + 64, n, ms);
  }
#ifdef HAVE_ZLIB
  int dlevels[] = {1, 6};
  for (size_t i = 0; i < sizeof(dlevels) / sizeof(*dlevels); i++) {
    double ms = 0;
    size_t d = deflate_len(json, layout.total_len, dlevels[i], &ms);
    char what[64];
    snprintf(what, sizeof(what), "json, permessage-deflate -%d (each)",
             dlevels[i]);
    row(name, what, d + hdr, n, ms);
  }
#endif
  free(json);
  free(mask);
}


int main(int argc, char** argv) {
  core_mask_spec_t spec = {.shape = {{64, 128, 128}}, .seed = 7};
  if (argc == 4) {
    for (int a = 0; a < 3; a++) {
      spec.shape.d[a] = (uint32_t) strtoul(argv[a + 1], NULL, 10);
    }
  }
  if (!core_shape_is_valid(&spec.shape)) {
    fprintf(stderr, "usage: %s [nz ny nx] (each 1..4096)\n", argv[0]);
    return 2;
  }
  printf(
      "preview %ux%ux%u uint8; binary rows include a 64-byte header "
      "estimate; ms = best of %d on one core\n\n",
      spec.shape.d[0], spec.shape.d[1], spec.shape.d[2], REPS);
  printf(
      "| pattern | encoding                           | bytes/frame | "
      "vs. raw  |       ms |\n|---|---|---:|---:|---:|\n");
  spec.pattern = CORE_PATTERN_RANDOM;
  report("random", &spec);
  spec.pattern = CORE_PATTERN_BLOBS;
  report("blobs", &spec);
  return 0;
}
