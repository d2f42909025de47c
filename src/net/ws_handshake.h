/* ws_handshake.h: RFC 6455 opening handshake, both sides: validating a
 * client's upgrade request and computing Sec-WebSocket-Accept (SHA-1 via
 * OpenSSL). Pure apart from the reader it inspects. */
#ifndef NET_WS_HANDSHAKE_H
#define NET_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http_reader.h"

#define NET_WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1, without NUL */
#define NET_WS_KEY_LEN 24    /* base64 of 16 bytes */

/* Computes the accept value for `key` into `out` (NUL-terminated). */
void net_ws_accept_for_key(const char* key, char out[NET_WS_ACCEPT_LEN + 1]);

/* True when `key` is the base64 of exactly 16 bytes. */
bool net_ws_key_is_valid(const char* key);

typedef enum {
  NET_WS_HS_OK = 0,
  NET_WS_HS_NOT_UPGRADE, /* not a WebSocket upgrade at all: 400 */
  NET_WS_HS_BAD_REQUEST, /* method, HTTP version, Host or key wrong: 400 */
  NET_WS_HS_BAD_VERSION  /* Sec-WebSocket-Version is not 13: 426 */
} net_ws_hs_result_t;

/* Checks the request held by `r` (a complete message): GET, HTTP/1.1 or
 * later, Host present, Upgrade: websocket, Connection containing upgrade, a
 * valid key, version 13. `why` gets a static sentence on failure. */
net_ws_hs_result_t net_ws_handshake_check(const net_http_reader_t* r,
                                          const char** why);

#endif
