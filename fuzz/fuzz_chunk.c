/* fuzz_chunk.c: libFuzzer target for the chunks encoding's parsers
 * (core/chunk.c, core/chunk_view.c): the input as a chunk message (what
 * parses must round-trip through the writer and name a valid level) and
 * as a view message for a small volume (what parses must lie within it). */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "core/chunk.h"
#include "core/chunk_view.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  core_chunk_head_t h;
  if (core_chunk_head_parse(data, size, &h) == 0) {
    assert(h.level < CORE_CHUNK_LEVELS);
    assert(h.payload_len == size - CORE_CHUNK_HEAD_LEN);
    uint8_t again[CORE_CHUNK_HEAD_LEN];
    core_chunk_head_write(&h, again);
    assert(memcmp(again, data, CORE_CHUNK_HEAD_LEN) == 0);
  }
  core_shape_t vol = {{7, 300, 4096}};
  core_view_t v;
  char err[160];
  if (core_view_parse((const char*) data, size, &vol, &v, err, sizeof(err)) ==
      0) {
    for (int a = 0; a < 3; a++) {
      assert(!v.has[a] || v.at[a] < vol.d[a]);
    }
    assert(v.zoom > 0);
    assert(core_view_plane_level(v.zoom, 4) <= 4);
  }
  return 0;
}
