/* fuzz_engine_proto.c: libFuzzer target for core_engine_msg_parse() over
 * any bytes an exec engine might print as one line. A parsed message must
 * respect its documented bounds; a refusal must say why. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/engine_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  core_engine_msg_t m;
  char err[160];
  err[0] = '\0';
  int rc =
      core_engine_msg_parse((const char*) data, size, &m, err, sizeof(err));
  if (rc == -ENODATA) {
    return 0;
  }
  if (rc != 0) {
    assert(rc == -EINVAL && err[0] != '\0');
    return 0;
  }
  assert(strlen(m.message) <= CORE_ENGINE_MESSAGE_MAX);
  if (m.has_progress) {
    assert(m.progress >= 0 && m.progress <= 1 && !isnan(m.progress));
  }
  if (m.type == CORE_ENGINE_MSG_STATS) {
    assert(json_is_object(m.stats));
    json_decref(m.stats);
  }
  return 0;
}
