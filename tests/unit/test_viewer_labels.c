/* test_viewer_labels.c: label volumes for the overlay: upsampled previews
 * align voxel to voxel with the volume exactly as the server downsamples
 * (core_shape_downsample_u8 then upsample gives every block its origin's
 * label, clipped at the border), shape checks, anisotropic factors, and
 * the MRC export/import round trip. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "viewer/viewer_labels.h"

#include "core/mrc.h"


static void check_alignment(core_shape_t s, uint32_t scale) {
  size_t n = (size_t) core_shape_voxels(&s);
  uint8_t* full = malloc(n);
  for (size_t i = 0; i < n; i++) {
    full[i] = (uint8_t) ((i * 2654435761u) >> 13);
  }
  core_shape_t p = core_shape_downsample(&s, scale);
  uint8_t* preview = malloc((size_t) core_shape_voxels(&p));
  core_shape_downsample_u8(full, &s, scale, preview);
  uint8_t* up = malloc(n);
  uint32_t scales[3] = {scale, scale, scale};
  cr_assert_eq(viewer_labels_upsample(preview, p.d, scales, &s, up), 0);
  for (uint32_t z = 0; z < s.d[0]; z++) {
    for (uint32_t y = 0; y < s.d[1]; y++) {
      for (uint32_t x = 0; x < s.d[2]; x++) {
        uint32_t oz = z - z % scale, oy = y - y % scale, ox = x - x % scale;
        size_t i = ((size_t) z * s.d[1] + y) * s.d[2] + x;
        size_t o = ((size_t) oz * s.d[1] + oy) * s.d[2] + ox;
        cr_assert_eq(up[i], full[o], "shape %ux%ux%u scale %u at %u,%u,%u",
                     s.d[0], s.d[1], s.d[2], scale, z, y, x);
      }
    }
  }
  free(full);
  free(preview);
  free(up);
}


Test(viewer_labels, upsampling_aligns_with_server_blocks, .timeout = 10) {
  check_alignment((core_shape_t){{8, 8, 8}}, 1);
  check_alignment((core_shape_t){{8, 8, 8}}, 2);
  check_alignment((core_shape_t){{9, 10, 11}}, 2); /* border blocks clip */
  check_alignment((core_shape_t){{40, 60, 70}}, 3);
  check_alignment((core_shape_t){{5, 17, 33}}, 4);
  check_alignment((core_shape_t){{1, 1, 1}}, 16);
}


Test(viewer_labels, wrong_preview_shape_is_refused, .timeout = 10) {
  core_shape_t s = {{9, 10, 11}};
  uint8_t preview[5 * 5 * 6] = {0};
  uint8_t* out = malloc(9 * 10 * 11);
  uint32_t ok[3] = {5, 5, 6}, bad[3] = {4, 5, 6};
  uint32_t two[3] = {2, 2, 2}, zero[3] = {0, 2, 2};
  cr_assert_eq(viewer_labels_upsample(preview, ok, two, &s, out), 0);
  cr_assert_eq(viewer_labels_upsample(preview, bad, two, &s, out), -EINVAL);
  cr_assert_eq(viewer_labels_upsample(preview, ok, zero, &s, out), -EINVAL);
  free(out);
}


Test(viewer_labels, anisotropic_factors_use_the_same_rule, .timeout = 10) {
  core_shape_t s = {{4, 6, 7}};
  uint32_t scale[3] = {1, 2, 3};
  uint32_t ps[3] = {4, 3, 3};
  uint8_t preview[36];
  for (int i = 0; i < 36; i++) {
    preview[i] = (uint8_t) i;
  }
  uint8_t out[4 * 6 * 7];
  cr_assert_eq(viewer_labels_upsample(preview, ps, scale, &s, out), 0);
  for (int z = 0; z < 4; z++) {
    for (int y = 0; y < 6; y++) {
      for (int x = 0; x < 7; x++) {
        cr_assert_eq(out[(z * 6 + y) * 7 + x],
                     preview[(z * 3 + y / 2) * 3 + x / 3]);
      }
    }
  }
}


Test(viewer_labels, export_and_read_round_trip, .timeout = 10) {
  core_shape_t s = {{3, 4, 5}};
  uint8_t labels[60], back[60];
  for (int i = 0; i < 60; i++) {
    labels[i] = (uint8_t) (i % 3);
  }
  char dir[] = "/tmp/test_viewer_labels-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof(path), "%s/mask.mrc", dir);
  double vs[3] = {2, 3, 0};
  cr_assert_eq(viewer_labels_write_mrc(path, labels, &s, vs), 0);
  char part[300];
  snprintf(part, sizeof(part), "%s.part", path);
  cr_assert_neq(access(part, F_OK), 0, "no .part file left behind");
  char err[256] = "";
  cr_assert_eq(viewer_labels_read_mrc(path, &s, back, err, sizeof(err)), 0,
               "%s", err);
  cr_assert_arr_eq(back, labels, 60);

  /* The header says what the data holds. */
  FILE* f = fopen(path, "rb");
  uint8_t head[CORE_MRC_HEADER_LEN];
  cr_assert_eq(fread(head, 1, sizeof(head), f), sizeof(head));
  fclose(f);
  core_mrc_header_t h;
  cr_assert_eq(core_mrc_header_parse(head, sizeof(head), 1024 + 60, &h, err,
                                     sizeof(err)),
               0, "%s", err);
  cr_assert_eq(h.mode, CORE_MRC_MODE_INT8);
  cr_assert_float_eq(h.dmax, 2, 1e-6);
  cr_assert_float_eq(h.dmin, 0, 1e-6);
  cr_assert_float_eq(h.voxel_size[1], 3, 1e-6);
  cr_assert_float_eq(h.voxel_size[2], 1, 1e-6);

  core_shape_t other = {{3, 4, 6}};
  cr_assert_eq(viewer_labels_read_mrc(path, &other, back, err, sizeof(err)),
               -EINVAL);
  cr_assert(strstr(err, "differs") != NULL, "%s", err);
  unlink(path);
  cr_assert_eq(viewer_labels_read_mrc(path, &s, back, err, sizeof(err)),
               -ENOENT);
  snprintf(path, sizeof(path), "%s/none/mask.mrc", dir);
  cr_assert_eq(viewer_labels_write_mrc(path, labels, &s, vs), -ENOENT);
  rmdir(dir);
}


Test(viewer_labels, histogram_counts_labels, .timeout = 10) {
  uint8_t l[6] = {0, 1, 1, 2, 0, 0};
  uint64_t c[256];
  viewer_labels_histogram(l, 6, c);
  cr_assert(c[0] == 3 && c[1] == 2 && c[2] == 1 && c[3] == 0);
}
