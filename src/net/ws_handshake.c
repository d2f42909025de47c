/* ws_handshake.c: upgrade validation and Sec-WebSocket-Accept. See
 * ws_handshake.h. */
#include "net/ws_handshake.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#include "core/base64.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";


void net_ws_accept_for_key(const char* key, char out[NET_WS_ACCEPT_LEN + 1]) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  unsigned int digest_len = 0;
  if (md == NULL || EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1 ||
      EVP_DigestUpdate(md, key, strlen(key)) != 1 ||
      EVP_DigestUpdate(md, ws_guid, sizeof(ws_guid) - 1) != 1 ||
      EVP_DigestFinal_ex(md, digest, &digest_len) != 1) {
    /* Only fails on allocation failure inside OpenSSL. */
    EVP_MD_CTX_free(md);
    out[0] = '\0';
    return;
  }
  EVP_MD_CTX_free(md);
  core_base64_encode(digest, SHA_DIGEST_LENGTH, out);
}


bool net_ws_key_is_valid(const char* key) {
  if (key == NULL || strlen(key) != NET_WS_KEY_LEN) {
    return false;
  }
  uint8_t raw[18];
  size_t raw_len = 0;
  return core_base64_decode(key, NET_WS_KEY_LEN, raw, &raw_len) == 0 &&
         raw_len == 16;
}


net_ws_hs_result_t net_ws_handshake_check(const net_http_reader_t* r,
                                          const char** why) {
  const char* upgrade = net_http_header(r, "Upgrade");
  if (!net_http_token_list_has(upgrade, "websocket")) {
    *why = "expected a WebSocket upgrade (Upgrade: websocket)";
    return NET_WS_HS_NOT_UPGRADE;
  }
  if (net_http_method(r) != HTTP_GET) {
    *why = "a WebSocket upgrade must use GET";
    return NET_WS_HS_BAD_REQUEST;
  }
  if (r->parser.http_major < 1 ||
      (r->parser.http_major == 1 && r->parser.http_minor < 1)) {
    *why = "a WebSocket upgrade needs HTTP/1.1";
    return NET_WS_HS_BAD_REQUEST;
  }
  if (net_http_header(r, "Host") == NULL) {
    *why = "the Host header is missing";
    return NET_WS_HS_BAD_REQUEST;
  }
  if (!net_http_token_list_has(net_http_header(r, "Connection"), "upgrade")) {
    *why = "the Connection header must contain 'upgrade'";
    return NET_WS_HS_BAD_REQUEST;
  }
  const char* version = net_http_header(r, "Sec-WebSocket-Version");
  if (version == NULL || strcmp(version, "13") != 0) {
    *why = "only WebSocket version 13 is supported";
    return NET_WS_HS_BAD_VERSION;
  }
  if (!net_ws_key_is_valid(net_http_header(r, "Sec-WebSocket-Key"))) {
    *why = "Sec-WebSocket-Key must be the base64 of 16 bytes";
    return NET_WS_HS_BAD_REQUEST;
  }
  return NET_WS_HS_OK;
}
