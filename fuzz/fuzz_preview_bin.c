/* fuzz_preview_bin.c: libFuzzer target for binary preview messages (raw and
 * zstd): whatever the bytes, decoding either fails cleanly or yields exactly
 * prod(shape) voxels. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/preview_bin.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  core_server_msg_t msg;
  core_preview_t p;
  char err[256];
  core_shape_t volume = {{64, 64, 64}};
  for (int i = 0; i < 2; i++) {
    if (core_preview_bin_decode(data, size, i == 0 ? NULL : &volume, &msg, &p,
                                err, sizeof(err)) == 0) {
      assert(p.len == core_shape_voxels(&p.shape));
      free(p.voxels);
      core_msg_clear(&msg);
    }
  }
  return 0;
}
