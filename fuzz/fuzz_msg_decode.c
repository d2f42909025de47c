/* fuzz_msg_decode.c: libFuzzer target for the WebSocket codec's parsers:
 * core_msg_parse_client(), core_msg_decode() and, on any decoded data
 * object, core_msg_decode_preview() with and without a volume shape. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = (const char*) data;
  core_client_msg_t kind = core_msg_parse_client(text, size);
  assert(kind == CORE_CLIENT_MSG_PING || kind == CORE_CLIENT_MSG_UNKNOWN ||
         kind == CORE_CLIENT_MSG_INVALID);

  core_server_msg_t msg;
  char err[256];
  if (core_msg_decode(text, size, &msg, err, sizeof(err)) != 0) {
    assert(msg.data == NULL);
    return 0;
  }
  assert(strlen(msg.type) > 0 && strlen(msg.type) < sizeof(msg.type));

  /* Ask for the shape the message claims at scale 1, and for a fixed one. */
  core_shape_t volumes[2] = {{{64, 64, 64}}, {{100, 37, 5}}};
  for (int i = -1; i < 2; i++) {
    core_preview_t p;
    int rc = core_msg_decode_preview(msg.data, i < 0 ? NULL : &volumes[i], &p,
                                     err, sizeof(err));
    if (rc == 0) {
      assert(core_shape_is_valid(&p.shape));
      assert(p.len == core_shape_voxels(&p.shape));
      if (p.len > 0) {
        /* Touch both ends so ASan checks the allocation. */
        volatile uint8_t sink = p.voxels[0] ^ p.voxels[p.len - 1];
        (void) sink;
      }
      free(p.voxels);
    } else {
      assert(p.voxels == NULL);
    }
  }
  core_msg_clear(&msg);
  return 0;
}
