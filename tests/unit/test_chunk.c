/* Unit tests for core/chunk.c and core/chunk_view.c: grids, headers, the
 * pyramid's 2x fold, and view messages. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/chunk.h"
#include "core/chunk_view.h"

Test(chunk, grid_counts_partial_edge_chunks) {
  core_shape_t v = {{70, 100, 90}};
  core_chunk_grid_t g = core_chunk_grid(&v, 0);
  cr_assert_eq(g.n[0], 3);
  cr_assert_eq(g.n[1], 4);
  cr_assert_eq(g.n[2], 3);
  uint32_t c[3] = {2, 3, 2};
  core_box_t b = core_chunk_box(&g, c);
  cr_assert_eq(b.hi[0] - b.lo[0], 6);
  cr_assert_eq(b.hi[1] - b.lo[1], 4);
  cr_assert_eq(b.hi[2] - b.lo[2], 26);
  uint32_t back[3];
  core_chunk_coords(&g, core_chunk_index(&g, c), back);
  cr_assert(memcmp(back, c, sizeof(c)) == 0);
  core_chunk_grid_t g4 = core_chunk_grid(&v, 4);
  cr_assert_eq(g4.shape.d[0], 5);
  cr_assert_eq(g4.count, 1);
}

Test(chunk, header_round_trip_and_rejects) {
  uint8_t msg[CORE_CHUNK_HEAD_LEN + 3];
  core_chunk_head_t h = {
      .level = 2, .c = {1, 2, 3}, .version = 77, .payload_len = 3};
  core_chunk_head_write(&h, msg);
  core_chunk_head_t got;
  cr_assert_eq(core_chunk_head_parse(msg, sizeof(msg), &got), 0);
  cr_assert_eq(got.level, 2);
  cr_assert_eq(got.c[2], 3);
  cr_assert_eq(got.version, 77);
  cr_assert_neq(core_chunk_head_parse(msg, sizeof(msg) - 1, &got), 0);
  msg[0] = 'X';
  cr_assert_neq(core_chunk_head_parse(msg, sizeof(msg), &got), 0);
  h.flags = CORE_CHUNK_FLAG_ZERO; /* a zero chunk with a payload */
  core_chunk_head_write(&h, msg);
  cr_assert_neq(core_chunk_head_parse(msg, sizeof(msg), &got), 0);
  h.payload_len = 0;
  core_chunk_head_write(&h, msg);
  cr_assert_eq(core_chunk_head_parse(msg, CORE_CHUNK_HEAD_LEN, &got), 0);
  h.level = CORE_CHUNK_LEVELS;
  core_chunk_head_write(&h, msg);
  cr_assert_neq(core_chunk_head_parse(msg, CORE_CHUNK_HEAD_LEN, &got), 0);
}

Test(chunk, fold2_is_the_block_max_clipped_to_the_shape) {
  core_shape_t s = {{3, 3, 5}}; /* odd: the last blocks are partial */
  uint8_t src[45];
  for (int i = 0; i < 45; i++) {
    src[i] = (uint8_t) (i % 7 == 0 ? 2 : i % 3 == 0);
  }
  core_box_t all = {{0, 0, 0}, {3, 3, 5}};
  core_box_t dst_box = {{0, 0, 0}, {2, 2, 3}};
  uint8_t dst[12];
  core_chunk_fold2(src, &all, &s, &dst_box, dst);
  for (uint32_t z = 0; z < 2; z++) {
    for (uint32_t y = 0; y < 2; y++) {
      for (uint32_t x = 0; x < 3; x++) {
        uint8_t m = 0;
        for (uint32_t dz = 2 * z; dz < 2 * z + 2 && dz < 3; dz++) {
          for (uint32_t dy = 2 * y; dy < 2 * y + 2 && dy < 3; dy++) {
            for (uint32_t dx = 2 * x; dx < 2 * x + 2 && dx < 5; dx++) {
              uint8_t v = src[(dz * 3 + dy) * 5 + dx];
              m = v > m ? v : m;
            }
          }
        }
        cr_assert_eq(dst[(z * 2 + y) * 3 + x], m);
      }
    }
  }
}

Test(chunk, cut_then_place_restores_the_box) {
  core_shape_t s = {{4, 5, 6}};
  uint8_t vol[120];
  for (int i = 0; i < 120; i++) {
    vol[i] = (uint8_t) i;
  }
  core_box_t all = {{0, 0, 0}, {4, 5, 6}};
  core_box_t b = {{1, 2, 3}, {3, 5, 6}};
  uint8_t part[18];
  core_chunk_cut(vol, &all, &b, part);
  uint8_t out[120];
  memset(out, 0xee, sizeof(out));
  core_chunk_place(out, &s, &b, part);
  for (uint32_t z = 0; z < 4; z++) {
    for (uint32_t y = 0; y < 5; y++) {
      for (uint32_t x = 0; x < 6; x++) {
        bool in = z >= 1 && z < 3 && y >= 2 && x >= 3;
        size_t i = (z * 5 + y) * 6 + x;
        cr_assert_eq(out[i], in ? vol[i] : 0xee);
      }
    }
  }
}

Test(chunk, views_parse_and_reject) {
  core_shape_t v = {{10, 20, 30}};
  core_view_t view;
  char err[160];
  const char* ok = "{\"type\":\"view\",\"z\":3,\"y\":null,\"zoom\":0.25}";
  cr_assert_eq(core_view_parse(ok, strlen(ok), &v, &view, err, sizeof(err)), 0);
  cr_assert(view.has[0] && !view.has[1] && !view.has[2]);
  cr_assert_eq(view.at[0], 3);
  cr_assert_eq(core_view_plane_level(view.zoom, 4), 2);
  cr_assert_eq(core_view_plane_level(view.zoom, 1), 1);
  cr_assert_eq(core_view_plane_level(3.0, 4), 0);
  const char* bad[] = {"{\"z\":10}",
                       "{\"x\":-1}",
                       "{\"y\":1.5}",
                       "{\"zoom\":0}",
                       "{\"zoom\":\"a\"}",
                       "[1]",
                       "{"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_neq(
        core_view_parse(bad[i], strlen(bad[i]), &v, &view, err, sizeof(err)), 0,
        "%s", bad[i]);
  }
}
