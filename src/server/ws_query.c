/* ws_query.c: handshake options. See ws_query.h. */
#include "server/ws_query.h"

#include <stdlib.h>
#include <string.h>

#include "core/chunk.h"

/* Subprotocols offering an encoding; a client lists them in
 * Sec-WebSocket-Protocol and the server answers with the one it took. */
static const struct {
  const char* name;
  core_encoding_t enc;
  bool is_chunks;
} subprotocols[] = {
    {"cryomamba.v1", CORE_ENC_BASE64, false},
    {"cryomamba.v1.raw", CORE_ENC_RAW, false},
    {"cryomamba.v1.zstd", CORE_ENC_ZSTD, false},
    {"cryomamba.v1.chunks", CORE_ENC_BASE64, true},
};
#define N_SUBPROTOCOLS (sizeof(subprotocols) / sizeof(subprotocols[0]))


/* The first subprotocol of ours the client offers, or -1. */
static int pick_subprotocol(const char* offered) {
  if (offered == NULL) {
    return -1;
  }
  const char* p = offered;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ',') {
      p++;
    }
    size_t n = strcspn(p, ", \t");
    for (size_t i = 0; i < N_SUBPROTOCOLS; i++) {
      if (n == strlen(subprotocols[i].name) &&
          memcmp(p, subprotocols[i].name, n) == 0) {
        return (int) i;
      }
    }
    p += n;
  }
  return -1;
}


/* The value of query parameter `name` (not NUL-terminated: *len), or NULL. */
static const char* param(const char* url, const char* name, size_t* len) {
  size_t nl = strlen(name);
  const char* q = strchr(url, '?');
  while (q != NULL) {
    q++;
    if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
      const char* v = q + nl + 1;
      *len = strcspn(v, "&#");
      return v;
    }
    q = strchr(q, '&');
  }
  return NULL;
}


/* A decimal uint32 of 1..10 digits. */
static int parse_u32(const char* v, size_t n, uint32_t* out) {
  if (n == 0 || n > 10) {
    return -1;
  }
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') {
      return -1;
    }
    x = x * 10 + (uint64_t) (v[i] - '0');
  }
  if (x > UINT32_MAX) {
    return -1;
  }
  *out = (uint32_t) x;
  return 0;
}


int srv_ws_query_parse(const char* url,
                       const char* offered,
                       srv_ws_query_t* q,
                       const char** why) {
  memset(q, 0, sizeof(*q));
  q->enc = CORE_ENC_BASE64;
  q->level = -1;
  int sp = pick_subprotocol(offered);
  q->subprotocol = sp >= 0 ? subprotocols[sp].name : NULL;
  size_t n = 0;
  const char* v = param(url, "encoding", &n);
  if (v != NULL) {
    if (n == 6 && memcmp(v, "chunks", 6) == 0) {
      q->is_chunks = true;
    } else if (core_encoding_parse(v, n, &q->enc) != 0) {
      *why = "encoding must be base64, raw, zstd or chunks";
      return -1;
    }
  } else if (sp >= 0) {
    q->enc = subprotocols[sp].enc;
    q->is_chunks = subprotocols[sp].is_chunks;
  }
  v = param(url, "scale", &n);
  uint32_t scale = 0;
  if (v != NULL && (!q->is_chunks || parse_u32(v, n, &scale) != 0 ||
                    core_chunk_level_of_scale(scale) < 0)) {
    *why = "scale must be 1, 2, 4, 8 or 16, with encoding=chunks";
    return -1;
  }
  if (v != NULL) {
    q->level = core_chunk_level_of_scale(scale);
  }
  size_t en = 0;
  const char* e = param(url, "epoch", &en);
  v = param(url, "since", &n);
  if ((v != NULL || e != NULL) &&
      (!q->is_chunks || v == NULL || e == NULL || en == 0 ||
       en >= sizeof(q->epoch) || parse_u32(v, n, &q->since) != 0)) {
    *why =
        "since (a seq) and epoch (16 hex digits) go together, with "
        "encoding=chunks";
    return -1;
  }
  if (v != NULL) {
    q->has_since = true;
    memcpy(q->epoch, e, en);
    q->epoch[en] = '\0';
  }
  return 0;
}


int srv_ws_default_level(uint32_t preview_scale) {
  int level = 0;
  while (level + 1 < (int) CORE_CHUNK_LEVELS &&
         (2u << level) <= preview_scale) {
    level++;
  }
  return level;
}
