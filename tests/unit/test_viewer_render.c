/* test_viewer_render.c: what the slice views show: window/level (the
 * tables of every mode agree with the direct formula), the three slices of
 * a volume and of a label volume against direct indexing, label colours,
 * overlay compositing and the screenshot layout. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "viewer/viewer_render.h"


Test(viewer_render, window_level_maps_linearly_and_clips, .timeout = 10) {
  viewer_wl_t wl = {10, 20};
  cr_assert_eq(viewer_wl_apply(&wl, 5), 0);
  cr_assert_eq(viewer_wl_apply(&wl, 10), 0);
  cr_assert_eq(viewer_wl_apply(&wl, 15), 128); /* 127.5 rounds up */
  cr_assert_eq(viewer_wl_apply(&wl, 20), 255);
  cr_assert_eq(viewer_wl_apply(&wl, 1e9), 255);
  cr_assert_eq(viewer_wl_apply(&wl, NAN), 0);
  viewer_wl_t step = {3, 3};
  cr_assert_eq(viewer_wl_apply(&step, 3), 0);
  cr_assert_eq(viewer_wl_apply(&step, 3.5), 255);
}


/* A volume in memory (no file): the slice functions only read data. */
static viewer_volume_t fake_volume(core_shape_t shape,
                                   int32_t mode,
                                   uint8_t** buf) {
  viewer_volume_t v;
  memset(&v, 0, sizeof(v));
  v.shape = shape;
  v.mode = mode;
  v.itemsize = core_mrc_mode_itemsize(mode);
  size_t n = (size_t) core_shape_voxels(&shape);
  *buf = malloc(n * v.itemsize);
  for (size_t i = 0; i < n; i++) {
    uint8_t* p = *buf + i * v.itemsize;
    int iv = (int) ((i * 37) % 200) - 100;
    switch (mode) {
    case CORE_MRC_MODE_INT8:
      *p = (uint8_t) (int8_t) iv;
      break;
    case CORE_MRC_MODE_INT16: {
      int16_t s = (int16_t) (iv * 100);
      memcpy(p, &s, 2);
      break;
    }
    case CORE_MRC_MODE_UINT16: {
      uint16_t u = (uint16_t) ((iv + 100) * 300);
      memcpy(p, &u, 2);
      break;
    }
    case CORE_MRC_MODE_FLOAT16: {
      /* Bit patterns of finite halves: exponent never 31. */
      uint16_t h = (uint16_t) ((i * 2654435761u) & 0x7bff);
      h = (uint16_t) (h | (i % 2 ? 0x8000u : 0u));
      memcpy(p, &h, 2);
      break;
    }
    default: {
      float f = (float) iv * 0.37f;
      memcpy(p, &f, 4);
      break;
    }
    }
  }
  v.data = *buf;
  return v;
}


static double value_at(const viewer_volume_t* v, size_t i) {
  float f;
  viewer_convert_to_float(v->data + i * v->itemsize, v->mode, 1, &f);
  return f;
}


static void check_slices(int32_t mode, viewer_wl_t wl) {
  core_shape_t shape = {{5, 7, 9}};
  uint8_t* buf;
  viewer_volume_t v = fake_volume(shape, mode, &buf);
  viewer_wl_lut_t lut;
  cr_assert_eq(viewer_wl_lut_init(&lut, mode, wl), 0);
  uint8_t out[100];
  for (int a = 0; a < VIEWER_AXIS_COUNT; a++) {
    uint32_t w, h;
    viewer_slice_dims(&shape, (viewer_axis_t) a, &w, &h);
    uint32_t count = viewer_slice_count(&shape, (viewer_axis_t) a);
    for (uint32_t index = 0; index < count; index++) {
      viewer_slice_grey(&v, &lut, (viewer_axis_t) a, index, out);
      for (uint32_t row = 0; row < h; row++) {
        for (uint32_t col = 0; col < w; col++) {
          uint32_t zyx[3];
          viewer_slice_voxel((viewer_axis_t) a, index, col, row, zyx);
          size_t i = ((size_t) zyx[0] * 7 + zyx[1]) * 9 + zyx[2];
          uint8_t want = viewer_wl_apply(&wl, value_at(&v, i));
          uint8_t got = out[row * w + col];
          /* float32 computes in single precision: allow one step. */
          cr_assert(abs((int) got - (int) want) <= (mode == 2 ? 1 : 0),
                    "mode %d axis %s slice %u (%u,%u): %u != %u", mode,
                    viewer_axis_name((viewer_axis_t) a), index, col, row, got,
                    want);
        }
      }
    }
  }
  viewer_wl_lut_free(&lut);
  free(buf);
}


Test(viewer_render, slices_of_every_mode, .timeout = 10) {
  check_slices(CORE_MRC_MODE_INT8, (viewer_wl_t){-50, 60});
  check_slices(CORE_MRC_MODE_INT16, (viewer_wl_t){-5000, 3000});
  check_slices(CORE_MRC_MODE_UINT16, (viewer_wl_t){1000, 50000});
  check_slices(CORE_MRC_MODE_FLOAT16, (viewer_wl_t){-2, 2});
  check_slices(CORE_MRC_MODE_FLOAT32, (viewer_wl_t){-20, 25});
  check_slices(CORE_MRC_MODE_FLOAT32, (viewer_wl_t){0, 0});
}


Test(viewer_render, slice_geometry, .timeout = 10) {
  core_shape_t s = {{3, 4, 5}};
  uint32_t w, h;
  viewer_slice_dims(&s, VIEWER_AXIS_XY, &w, &h);
  cr_assert(w == 5 && h == 4);
  viewer_slice_dims(&s, VIEWER_AXIS_XZ, &w, &h);
  cr_assert(w == 5 && h == 3);
  viewer_slice_dims(&s, VIEWER_AXIS_YZ, &w, &h);
  cr_assert(w == 3 && h == 4);
  cr_assert_eq(viewer_slice_count(&s, VIEWER_AXIS_XY), 3);
  cr_assert_eq(viewer_slice_count(&s, VIEWER_AXIS_XZ), 4);
  cr_assert_eq(viewer_slice_count(&s, VIEWER_AXIS_YZ), 5);
  uint32_t zyx[3];
  viewer_slice_voxel(VIEWER_AXIS_YZ, 2, 1, 3, zyx);
  cr_assert(zyx[0] == 1 && zyx[1] == 3 && zyx[2] == 2);
  uint32_t rects[3][4], W, H;
  viewer_ortho_layout(&s, 4, rects, &W, &H);
  cr_assert(W == 5 + 4 + 3 && H == 4 + 4 + 3);
  cr_assert(rects[VIEWER_AXIS_YZ][0] == 9 && rects[VIEWER_AXIS_YZ][1] == 0);
  cr_assert(rects[VIEWER_AXIS_XZ][0] == 0 && rects[VIEWER_AXIS_XZ][1] == 8);
}


Test(viewer_render, label_slices_match_indexing, .timeout = 10) {
  core_shape_t s = {{6, 5, 4}};
  uint8_t labels[120], out[30];
  for (int i = 0; i < 120; i++) {
    labels[i] = (uint8_t) (i * 7);
  }
  for (int a = 0; a < VIEWER_AXIS_COUNT; a++) {
    uint32_t w, h;
    viewer_slice_dims(&s, (viewer_axis_t) a, &w, &h);
    for (uint32_t index = 0; index < viewer_slice_count(&s, (viewer_axis_t) a);
         index++) {
      viewer_slice_labels(labels, &s, (viewer_axis_t) a, index, out);
      for (uint32_t row = 0; row < h; row++) {
        for (uint32_t col = 0; col < w; col++) {
          uint32_t zyx[3];
          viewer_slice_voxel((viewer_axis_t) a, index, col, row, zyx);
          cr_assert_eq(out[row * w + col],
                       labels[(zyx[0] * 5 + zyx[1]) * 4 + zyx[2]]);
        }
      }
    }
  }
}


Test(viewer_render, overlay_blends_label_colour, .timeout = 10) {
  uint8_t grey[4] = {0, 100, 200, 255};
  uint8_t labels[4] = {0, 1, 2, 0};
  uint32_t out[4];
  viewer_composite(grey, labels, 4, 0.5, out);
  cr_assert_eq(out[0], 0xff000000u);
  cr_assert_eq(out[3], 0xffffffffu);
  uint32_t c1 = viewer_label_rgb(1);
  uint32_t want =
      0xff000000u |
      (uint32_t) viewer_blend_channel(100, (uint8_t) (c1 >> 16), 0.5) << 16 |
      (uint32_t) viewer_blend_channel(100, (uint8_t) (c1 >> 8), 0.5) << 8 |
      viewer_blend_channel(100, (uint8_t) c1, 0.5);
  cr_assert_eq(out[1], want, "%08x != %08x", out[1], want);
  /* (g*(256-a) + c*a + 128) >> 8 with a = 128: the rounded midpoint. */
  cr_assert_eq(viewer_blend_channel(100, 255, 0.5), 178);
  cr_assert_eq(viewer_blend_channel(100, 0, 0.5), 50);
  cr_assert_eq(viewer_blend_channel(100, 255, 1.0), 255);
  cr_assert_eq(viewer_blend_channel(100, 255, 0.0), 100);
  /* Opacity 0 or no labels: plain grey. */
  viewer_composite(grey, labels, 4, 0, out);
  cr_assert_eq(out[1], 0xff646464u);
  viewer_composite(grey, NULL, 4, 1, out);
  cr_assert_eq(out[2], 0xffc8c8c8u);
  /* Full opacity shows the colour itself. */
  viewer_composite(grey, labels, 4, 1, out);
  cr_assert_eq(out[2], 0xff000000u | viewer_label_rgb(2));
}


Test(viewer_render, label_colours_are_distinct_and_never_grey, .timeout = 10) {
  for (int a = 1; a < 256; a++) {
    uint32_t c = viewer_label_rgb((uint8_t) a);
    uint32_t r = c >> 16, g = (c >> 8) & 0xff, b = c & 0xff;
    cr_assert(!(r == g && g == b), "label %d is grey", a);
    for (int bb = 1; bb < a && a <= 8; bb++) {
      cr_assert_neq(c, viewer_label_rgb((uint8_t) bb));
    }
  }
  cr_assert_eq(viewer_label_rgb(1), 0xff4000u);
  cr_assert_eq(viewer_label_rgb(2), 0x00a0ffu);
}
