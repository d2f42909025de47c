/* fuzz_base64.c: libFuzzer target for strict base64 decoding. Whatever
 * decodes must re-encode to exactly the input (canonical padding aside, the
 * alphabet and layout are fixed), and any input's encoding must decode back
 * to it. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  /* Direction 1: the input as base64 text. */
  uint8_t* dec = malloc(core_base64_decoded_max(size) + 1);
  size_t n = 0;
  if (core_base64_decode((const char*) data, size, dec, &n) == 0) {
    assert(n <= core_base64_decoded_max(size));
    assert(core_base64_encoded_len(n) == size);
    char* enc = malloc(size + 1);
    assert(core_base64_encode(dec, n, enc) == size);
    /* Only the unused low bits of the last symbol may differ. */
    if (size >= 4) {
      assert(memcmp(enc, data, size - 4) == 0);
    }
    free(enc);
  }
  free(dec);

  /* Direction 2: the input as raw bytes. */
  size_t elen = core_base64_encoded_len(size);
  char* enc = malloc(elen + 1);
  assert(core_base64_encode(data, size, enc) == elen);
  assert(enc[elen] == '\0');
  uint8_t* back = malloc(core_base64_decoded_max(elen) + 1);
  assert(core_base64_decode(enc, elen, back, &n) == 0);
  assert(n == size && memcmp(back, data, size) == 0);
  free(back);
  free(enc);
  return 0;
}
