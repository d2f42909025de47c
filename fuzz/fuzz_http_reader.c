/* fuzz_http_reader.c: libFuzzer target for the HTTP/1.1 reader (our
 * http-parser glue): the input is fed whole, then again in chunks whose
 * sizes come from the input, and every complete message is inspected the
 * way the server does (URL, headers, handshake check). */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "net/http_reader.h"
#include "net/ws_handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


static int on_message(net_http_reader_t* r) {
  const char* why = NULL;
  (void) net_ws_handshake_check(r, &why);
  (void) net_http_header(r, "Host");
  (void) net_http_token_list_has(net_http_header(r, "Connection"), "upgrade");
  assert(strlen(net_http_url(r)) == r->url_len);
  return 0;
}


static void feed(const uint8_t* data, size_t size, size_t chunk) {
  net_http_reader_t r;
  net_http_reader_init(&r, HTTP_REQUEST, 8192, 65536, on_message, NULL);
  size_t off = 0;
  while (off < size) {
    size_t n = size - off < chunk ? size - off : chunk;
    size_t used = net_http_reader_feed(&r, data + off, n);
    assert(used <= n);
    if (r.error != NET_HTTP_OK || r.is_paused) {
      break;
    }
    off += n;
  }
  net_http_reader_free(&r);
}


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  feed(data, size, size > 0 ? size : 1);
  feed(data, size, size > 0 ? (size_t) data[0] % 17 + 1 : 1);
  return 0;
}
