/* bench_classic_input.c: what reading the classic segmenter's input costs,
 * three ways over the same float32 phantom: in memory (core_seg_input_t
 * .data on a malloc'd buffer, the library's floor), a read-only mapping of
 * the file (what the server did until it could SIGBUS on a truncated
 * volume_path file), and pread through core_seg_input_t.read, one pread per
 * row (per plane when rows are whole), as src/server/classic_io.c reads it
 * now. Rounds alternate the three so the machine's load falls on each
 * alike; the masks must be identical. The file is written once (page cache
 * warm, as a volume read just before is):
 *   build/bench/bench_classic_input [--size 512] [--threads 2] [--rounds 3]
 *       [--dir /tmp] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/mrc.h"
#include "core/phantom.h"
#include "core/seg_classic.h"
#include "seg_driver.h"

typedef struct {
  int fd;
  core_shape_t shape;
} file_t;


/* The server's reader (classic_io.c), without its error mapping. */
static int read_file(void* user,
                     const uint32_t lo[3],
                     const uint32_t n[3],
                     void* out) {
  const file_t* f = user;
  const core_shape_t* s = &f->shape;
  uint8_t* dst = out;
  uint32_t rows = n[2] == s->d[2] ? n[1] : 1;
  size_t len = (size_t) rows * n[2] * sizeof(float);
  for (uint32_t z = 0; z < n[0]; z++) {
    for (uint32_t y = 0; y < n[1]; y += rows) {
      uint64_t v =
          ((uint64_t) (lo[0] + z) * s->d[1] + lo[1] + y) * s->d[2] + lo[2];
      if (pread(f->fd, dst, len, (off_t) (v * sizeof(float))) !=
          (ssize_t) len) {
        return -EIO;
      }
      dst += len;
    }
  }
  return 0;
}


int main(int argc, char** argv) {
  uint32_t n = 512;
  unsigned threads = 2, rounds = 3;
  const char* dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--size") == 0) {
      n = (uint32_t) strtoul(argv[i + 1], NULL, 10);
    } else if (strcmp(argv[i], "--threads") == 0) {
      threads = (unsigned) strtoul(argv[i + 1], NULL, 10);
    } else if (strcmp(argv[i], "--rounds") == 0) {
      rounds = (unsigned) strtoul(argv[i + 1], NULL, 10);
    } else if (strcmp(argv[i], "--dir") == 0) {
      dir = argv[i + 1];
    } else {
      n = 0;
    }
  }
  if (argc % 2 == 0 || n < 8 || threads < 1 || rounds < 1) {
    fprintf(stderr, "usage: see the comment at the top of the file\n");
    return 2;
  }
  core_shape_t s = {{n, n, n}};
  size_t vox = core_shape_voxels(&s), plane = (size_t) n * n;
  float* vol = malloc(vox * sizeof(float));
  uint8_t* ref = malloc(vox);
  uint8_t* mask = malloc(vox);
  char path[4096];
  snprintf(path, sizeof(path), "%s/bench_classic_input.XXXXXX", dir);
  int fd = mkstemp(path);
  if (vol == NULL || ref == NULL || mask == NULL || fd < 0) {
    fprintf(stderr, "out of memory, or cannot create %s\n", path);
    return 1;
  }
  unlink(path);
  core_phantom_t ph;
  core_phantom_init(&ph, &s, 1, 0.5f);
  for (uint32_t z = 0; z < n; z++) {
    core_phantom_slice(&ph, z, vol + z * plane);
  }
  for (size_t off = 0; off < vox * sizeof(float);) {
    ssize_t w = write(fd, (uint8_t*) vol + off, vox * sizeof(float) - off);
    if (w <= 0) {
      fprintf(stderr, "write: %s\n", strerror(errno));
      return 1;
    }
    off += (size_t) w;
  }
  core_seg_params_t p;
  core_seg_params_default(&p);
  file_t f = {fd, s};
  const char* names[3] = {"memory", "mmap of the file", "pread (read cb)"};
  double sum[3] = {0}, best[3] = {1e9, 1e9, 1e9};
  printf("%u^3 float32 (%zu MiB), %u threads, %u rounds\n\n", n,
         vox * sizeof(float) >> 20, threads, rounds);
  printf("| round | input | stats s | windows s | final s | total s |\n");
  printf("|---|---|---|---|---|---|\n");
  for (unsigned r = 0; r < rounds; r++) {
    for (unsigned k0 = 0; k0 < 3; k0++) {
      unsigned k = (k0 + r) % 3;
      core_seg_input_t in = {.mode = CORE_MRC_MODE_FLOAT32, .shape = s};
      void* map = NULL;
      if (k == 0) {
        in.data = vol;
      } else if (k == 1) {
        map = mmap(NULL, vox * sizeof(float), PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
          fprintf(stderr, "mmap: %s\n", strerror(errno));
          return 1;
        }
        in.data = map;
      } else {
        in.read = read_file;
        in.user = &f;
      }
      seg_driver_times_t t;
      int err = seg_driver_run(&in, &p, threads, 0, mask, NULL, &t);
      if (map != NULL) {
        munmap(map, vox * sizeof(float));
      }
      if (err != 0) {
        fprintf(stderr, "%s: %d\n", names[k], err);
        return 1;
      }
      if (r == 0 && k0 == 0) {
        memcpy(ref, mask, vox);
      } else if (memcmp(ref, mask, vox) != 0) {
        fprintf(stderr, "%s: the mask differs\n", names[k]);
        return 1;
      }
      double total = t.stats_s + t.windows_s + t.finish_s;
      sum[k] += total;
      best[k] = total < best[k] ? total : best[k];
      printf("| %u | %s | %.2f | %.2f | %.2f | %.2f |\n", r + 1, names[k],
             t.stats_s, t.windows_s, t.finish_s, total);
      fflush(stdout);
    }
  }
  printf("\n| input | mean total s | best total s |\n|---|---|---|\n");
  for (int k = 0; k < 3; k++) {
    printf("| %s | %.2f | %.2f |\n", names[k], sum[k] / rounds, best[k]);
  }
  printf("\nthe masks are identical\n");
  close(fd);
  free(vol);
  free(ref);
  free(mask);
  return 0;
}
