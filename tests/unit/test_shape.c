/* test_shape.c: shape validity, preview arithmetic and nearest-origin
 * down/upsampling, including shapes the scale does not divide. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/shape.h"


static uint8_t value_at(uint32_t z, uint32_t y, uint32_t x) {
  return (uint8_t) (z * 31u + y * 7u + x * 3u + (x >> 3));
}


Test(shape, validity_bounds_each_axis, .timeout = 10) {
  core_shape_t ok = {{1, 4096, 17}};
  cr_assert(core_shape_is_valid(&ok));
  for (int a = 0; a < 3; a++) {
    core_shape_t s = {{5, 5, 5}};
    s.d[a] = 0;
    cr_assert_not(core_shape_is_valid(&s), "axis %d = 0", a);
    s.d[a] = 4097;
    cr_assert_not(core_shape_is_valid(&s), "axis %d = 4097", a);
  }
}


Test(shape, voxels_do_not_overflow, .timeout = 10) {
  core_shape_t s = {{4096, 4096, 4096}};
  cr_assert_eq(core_shape_voxels(&s), (uint64_t) 1 << 36);
  core_shape_t t = {{2, 3, 5}};
  cr_assert_eq(core_shape_voxels(&t), 30);
}


Test(shape, downsample_rounds_up, .timeout = 10) {
  core_shape_t s = {{5, 7, 9}};
  core_shape_t p = core_shape_downsample(&s, 2);
  cr_assert_eq(p.d[0], 3);
  cr_assert_eq(p.d[1], 4);
  cr_assert_eq(p.d[2], 5);
  p = core_shape_downsample(&s, 1);
  cr_assert_eq(memcmp(&p, &s, sizeof(s)), 0);
  core_shape_t big = {{4096, 4095, 1}};
  p = core_shape_downsample(&big, 16);
  cr_assert_eq(p.d[0], 256);
  cr_assert_eq(p.d[1], 256);
  cr_assert_eq(p.d[2], 1);
}


Test(shape, downsample_takes_each_block_origin, .timeout = 10) {
  core_shape_t s = {{11, 13, 17}};
  uint8_t* vol = malloc(core_shape_voxels(&s));
  for (uint32_t z = 0; z < s.d[0]; z++) {
    for (uint32_t y = 0; y < s.d[1]; y++) {
      for (uint32_t x = 0; x < s.d[2]; x++) {
        vol[(z * s.d[1] + y) * s.d[2] + x] = value_at(z, y, x);
      }
    }
  }
  for (uint32_t sc = 1; sc <= 6; sc++) {
    core_shape_t p = core_shape_downsample(&s, sc);
    uint8_t* pre = malloc(core_shape_voxels(&p));
    core_shape_downsample_u8(vol, &s, sc, pre);
    for (uint32_t i = 0; i < p.d[0]; i++) {
      for (uint32_t j = 0; j < p.d[1]; j++) {
        for (uint32_t k = 0; k < p.d[2]; k++) {
          uint8_t got = pre[(i * p.d[1] + j) * p.d[2] + k];
          cr_assert_eq(got, value_at(i * sc, j * sc, k * sc),
                       "scale %u at (%u,%u,%u)", sc, i, j, k);
        }
      }
    }
    free(pre);
  }
  free(vol);
}


Test(shape, upsample_covers_each_block, .timeout = 10) {
  core_shape_t s = {{10, 9, 14}};
  for (uint32_t sc = 1; sc <= 5; sc++) {
    core_shape_t p = core_shape_downsample(&s, sc);
    uint8_t* pre = malloc(core_shape_voxels(&p));
    for (uint64_t i = 0; i < core_shape_voxels(&p); i++) {
      pre[i] = (uint8_t) (i * 37 + 1);
    }
    uint8_t* vol = malloc(core_shape_voxels(&s));
    memset(vol, 0xee, core_shape_voxels(&s));
    core_shape_upsample_u8(pre, &s, sc, vol);
    for (uint32_t z = 0; z < s.d[0]; z++) {
      for (uint32_t y = 0; y < s.d[1]; y++) {
        for (uint32_t x = 0; x < s.d[2]; x++) {
          uint8_t want = pre[((z / sc) * p.d[1] + y / sc) * p.d[2] + x / sc];
          cr_assert_eq(vol[(z * s.d[1] + y) * s.d[2] + x], want,
                       "scale %u at (%u,%u,%u)", sc, z, y, x);
        }
      }
    }
    /* Downsampling the upsampled volume gives the preview back. */
    uint8_t* again = malloc(core_shape_voxels(&p));
    core_shape_downsample_u8(vol, &s, sc, again);
    cr_assert_eq(memcmp(again, pre, core_shape_voxels(&p)), 0, "scale %u", sc);
    free(again);
    free(vol);
    free(pre);
  }
}


Test(shape, scale_larger_than_volume_gives_one_voxel, .timeout = 10) {
  core_shape_t s = {{3, 2, 5}};
  uint8_t vol[30];
  for (int i = 0; i < 30; i++) {
    vol[i] = (uint8_t) (i + 100);
  }
  core_shape_t p = core_shape_downsample(&s, 16);
  cr_assert_eq(core_shape_voxels(&p), 1);
  uint8_t pre[1] = {0};
  core_shape_downsample_u8(vol, &s, 16, pre);
  cr_assert_eq(pre[0], 100);
  uint8_t up[30];
  core_shape_upsample_u8(pre, &s, 16, up);
  for (int i = 0; i < 30; i++) {
    cr_assert_eq(up[i], 100);
  }
}
