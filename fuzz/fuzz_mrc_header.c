/* fuzz_mrc_header.c: libFuzzer target for core_mrc_header_parse(). Input:
 * 8 bytes of claimed file length, then the header bytes. Anything accepted
 * must be self-consistent and survive a write/parse round trip. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "core/mrc.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) {
    return 0;
  }
  uint64_t file_len;
  memcpy(&file_len, data, sizeof(file_len));
  data += 8;
  size -= 8;

  core_mrc_header_t h;
  char err[256];
  if (core_mrc_header_parse(data, size, file_len, &h, err, sizeof(err)) != 0) {
    assert(memchr(err, '\0', sizeof(err)) != NULL);
    return 0;
  }
  assert(core_shape_is_valid(&h.shape));
  assert(core_mrc_mode_itemsize(h.mode) > 0);
  assert(file_len == 0 || file_len >= core_mrc_file_len(&h));
  for (int a = 0; a < 3; a++) {
    assert(h.voxel_size[a] > 0 || h.voxel_size[a] != h.voxel_size[a]);
  }

  uint8_t out[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, out);
  core_mrc_header_t back;
  int rc = core_mrc_header_parse(out, sizeof(out), 0, &back, err, sizeof(err));
  assert(rc == 0);
  assert(memcmp(&back.shape, &h.shape, sizeof(h.shape)) == 0);
  assert(back.mode == h.mode);
  assert(back.ext_header_len == h.ext_header_len);
  return 0;
}
