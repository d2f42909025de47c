/* ws_query.h: what a WebSocket handshake asks for: the encoding (query
 * `encoding=` or a subprotocol; the query wins), and for the chunks
 * encoding its `scale`, `since` and `epoch` (docs/protocol.md §10, §11).
 * Pure parsing of the request's URL and header. */
#ifndef SRV_WS_QUERY_H
#define SRV_WS_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/preview_bin.h"

typedef struct {
  core_encoding_t enc; /* the preview encoding when !is_chunks */
  bool is_chunks;
  int level;      /* chunks: -1 when no scale was given */
  bool has_since; /* since and epoch were both given */
  uint32_t since;
  char epoch[17];
  const char* subprotocol; /* the one answered, or NULL (static string) */
} srv_ws_query_t;

/* Parses `url` and the offered subprotocols (NULL: none). Returns 0, or -1
 * with a sentence in `why` naming the bad field (400 invalid_field). */
int srv_ws_query_parse(const char* url,
                       const char* offered,
                       srv_ws_query_t* q,
                       const char** why);

/* The level a chunks subscriber gets without `scale`: that of the largest
 * power-of-two scale <= preview_scale, at most the top level. */
int srv_ws_default_level(uint32_t preview_scale);

#endif
