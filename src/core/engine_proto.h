/* engine_proto.h: version 1 of the exec engine protocol's stdout side
 * (docs/engines.md): one JSON object per line, {"type": "progress" |
 * "message" | "region" | "stats", ...}. Parses one line into a message;
 * anything else is a protocol violation with a sentence saying why. Pure. */
#ifndef CORE_ENGINE_PROTO_H
#define CORE_ENGINE_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_ENGINE_PROTOCOL_VERSION 1
#define CORE_ENGINE_MESSAGE_MAX 255 /* bytes of a message kept */
#define CORE_ENGINE_STATS_MAX 4096  /* bytes of a stats object, compact */

typedef enum {
  CORE_ENGINE_MSG_PROGRESS, /* progress (0..1), message optional */
  CORE_ENGINE_MSG_MESSAGE,  /* message */
  CORE_ENGINE_MSG_REGION,   /* box written; progress optional */
  CORE_ENGINE_MSG_STATS     /* stats (an object) */
} core_engine_msg_type_t;

typedef struct {
  core_engine_msg_type_t type;
  bool has_progress;
  double progress;
  bool has_message;
  char message[CORE_ENGINE_MESSAGE_MAX + 1]; /* truncated, NUL-free */
  uint32_t box[6];                           /* z0, y0, x0, z1, y1, x1 */
  json_t* stats; /* owned by the caller once parsed (json_decref) */
} core_engine_msg_t;

/* Parses one line (without its newline; `len` bytes, not NUL-terminated).
 * Returns 0 with *out filled, or -EINVAL with a sentence in `err`. An
 * empty (or all-blank) line is -ENODATA: nothing to do, no violation. */
int core_engine_msg_parse(const char* line,
                          size_t len,
                          core_engine_msg_t* out,
                          char* err,
                          size_t err_len);

#endif
