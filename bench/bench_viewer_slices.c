/* bench_viewer_slices.c: how fast the viewer can show slices: extracting
 * an XY, XZ and YZ slice of a memory-mapped float32 MRC volume (512^3 by
 * default, written once as a phantom), window/levelling it to grey and
 * compositing a label overlay (an upsampled blobs preview) into 32-bit
 * pixels: exactly the work of viewer_view.c's cache refresh, without GTK.
 * Built by bench/meson.build:
 *   build/bench/bench_viewer_slices [N [FILE.mrc]]
 * (N: edge of the cubic volume, default 512; FILE: where the phantom goes,
 * default /tmp/bench_viewer_N.mrc, reused when it exists.) Prints ms per
 * slice per axis and frames per second when every frame changes one slice
 * (stepping through a view) and all three (moving the crosshair). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mask.h"
#include "core/mrc.h"
#include "core/phantom.h"
#include "viewer/viewer_labels.h"
#include "viewer/viewer_render.h"
#include "viewer/viewer_volume.h"


static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}


static int write_phantom(const char* path, uint32_t n) {
  core_shape_t shape = {{n, n, n}};
  core_phantom_t ph;
  core_phantom_init(&ph, &shape, 1, 0.5f);
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = shape;
  h.mode = CORE_MRC_MODE_FLOAT32;
  h.voxel_size[0] = h.voxel_size[1] = h.voxel_size[2] = 10;
  h.rms = -1;
  uint8_t head[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, head);
  FILE* f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  fwrite(head, 1, sizeof(head), f);
  float* slice = malloc((size_t) n * n * sizeof(float));
  for (uint32_t z = 0; z < n; z++) {
    core_phantom_slice(&ph, z, slice);
    fwrite(slice, sizeof(float), (size_t) n * n, f);
  }
  free(slice);
  return fclose(f);
}


int main(int argc, char** argv) {
  uint32_t n = argc > 1 ? (uint32_t) atoi(argv[1]) : 512;
  char path[4096];
  snprintf(path, sizeof(path), "%s",
           argc > 2 ? argv[2] : "/tmp/bench_viewer_slices.mrc");
  if (argc <= 2) {
    snprintf(path, sizeof(path), "/tmp/bench_viewer_%u.mrc", n);
  }
  struct stat st;
  uint64_t want = CORE_MRC_HEADER_LEN + (uint64_t) n * n * n * 4;
  if (stat(path, &st) != 0 || (uint64_t) st.st_size != want) {
    printf("writing a %u^3 float32 phantom to %s ...\n", n, path);
    fflush(stdout);
    if (write_phantom(path, n) != 0) {
      return 1;
    }
  }
  viewer_volume_t vol;
  char err[512];
  if (viewer_volume_open(path, &vol, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  /* The labels: a blobs preview at scale 2, upsampled as the viewer does. */
  core_shape_t pshape = core_shape_downsample(&vol.shape, 2);
  uint8_t* preview = malloc(core_shape_voxels(&pshape));
  core_mask_spec_t spec;
  memset(&spec, 0, sizeof(spec));
  spec.shape = vol.shape;
  spec.pattern = CORE_PATTERN_BLOBS;
  spec.seed = 1;
  core_mask_render(&spec, 1.0, 2, 0, preview);
  uint8_t* labels = malloc(core_shape_voxels(&vol.shape));
  uint32_t scale[3] = {2, 2, 2};
  double t0 = now_ms();
  viewer_labels_upsample(preview, pshape.d, scale, &vol.shape, labels);
  double up_ms = now_ms() - t0;

  viewer_wl_lut_t lut;
  viewer_wl_lut_init(&lut, vol.mode, (viewer_wl_t){-1.5, 1.5});
  size_t max_px = (size_t) n * n;
  uint8_t* grey = malloc(max_px);
  uint8_t* lab = malloc(max_px);
  uint32_t* argb = malloc(max_px * 4);

  /* Warm the page cache once (the viewer's first pass does the same). */
  for (uint32_t i = 0; i < n; i++) {
    viewer_slice_grey(&vol, &lut, VIEWER_AXIS_XY, i, grey);
  }
  printf(
      "volume %ux%ux%u float32, mmap'ed %s; upsample of the scale-2 "
      "preview: %.1f ms\n",
      n, n, n, path, up_ms);
  double per_axis[3];
  for (int a = 0; a < VIEWER_AXIS_COUNT; a++) {
    uint32_t w, h;
    viewer_slice_dims(&vol.shape, (viewer_axis_t) a, &w, &h);
    uint32_t count = viewer_slice_count(&vol.shape, (viewer_axis_t) a);
    double t = now_ms();
    uint32_t frames = 0;
    for (uint32_t i = 0; i < count; i += 2, frames++) {
      viewer_slice_grey(&vol, &lut, (viewer_axis_t) a, i, grey);
      viewer_slice_labels(labels, &vol.shape, (viewer_axis_t) a, i, lab);
      viewer_composite(grey, lab, (size_t) w * h, 0.5, argb);
    }
    per_axis[a] = (now_ms() - t) / frames;
    printf("%s slice (%ux%u): %.2f ms  -> %.0f slices/s stepping this view\n",
           viewer_axis_name((viewer_axis_t) a), w, h, per_axis[a],
           1000.0 / per_axis[a]);
  }
  double all = per_axis[0] + per_axis[1] + per_axis[2];
  printf("all three views per frame (crosshair moved): %.2f ms -> %.0f fps\n",
         all, 1000.0 / all);
  printf("command: %s %u %s\n", argv[0], n, path);
  viewer_wl_lut_free(&lut);
  viewer_volume_close(&vol);
  free(grey);
  free(lab);
  free(argb);
  free(labels);
  free(preview);
  return 0;
}
