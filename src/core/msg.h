/* msg.h: the WebSocket message codec of protocol v1 (docs/protocol.md).
 * Server -> client: {"type","job_id","seq","timestamp","data"} envelopes;
 * previews are laid out as prefix + base64 payload + suffix so the server
 * can encode the payload straight into a shared frame. Client -> server:
 * {"type":"ping"}. Also the HTTP error envelope. Pure; any thread. */
#ifndef CORE_MSG_H
#define CORE_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

#define CORE_MSG_PREFIX_MAX 384

/* Serialises an envelope compactly. Steals `data` (may be NULL: {}).
 * `job_id` may be NULL for messages that belong to no job (pong, as in the
 * reference): then neither job_id nor seq is written. Returns a malloc'd
 * string the caller frees, length in *len; NULL on ENOMEM. */
char* core_msg_encode(const char* type,
                      const char* job_id,
                      uint64_t seq,
                      int64_t ts_us,
                      json_t* data,
                      size_t* len);

/* The byte layout of a preview message whose raw payload has `payload_len`
 * bytes: prefix (envelope up to the opening quote of "payload"), then
 * b64_len base64 characters, then suffix ("\"}}"). */
typedef struct {
  char prefix[CORE_MSG_PREFIX_MAX];
  size_t prefix_len;
  const char* suffix; /* static string */
  size_t suffix_len;
  size_t b64_len;
  size_t total_len; /* prefix_len + b64_len + suffix_len */
} core_preview_layout_t;

/* Fills `out` for a preview of `shape` (the preview's, already downsampled)
 * at integer `scale`, dtype uint8. Returns 0 or -ENAMETOOLONG. */
int core_msg_preview_layout(const char* job_id,
                            uint64_t seq,
                            int64_t ts_us,
                            const core_shape_t* shape,
                            uint32_t scale,
                            size_t payload_len,
                            core_preview_layout_t* out);

typedef enum {
  CORE_CLIENT_MSG_PING,    /* {"type":"ping"} */
  CORE_CLIENT_MSG_VIEW,    /* {"type":"view",...}: core_view_parse() */
  CORE_CLIENT_MSG_UNKNOWN, /* valid JSON object with another/no type */
  CORE_CLIENT_MSG_INVALID  /* not a JSON object */
} core_client_msg_t;

/* Classifies a text message sent by a client. */
core_client_msg_t core_msg_parse_client(const char* text, size_t len);

/* A decoded server message, as the client library sees it. */
typedef struct {
  char type[32];
  char job_id[40];
  uint64_t seq;
  int64_t ts_us;
  json_t* data; /* owned reference; release with core_msg_clear() */
} core_server_msg_t;

/* Parses and validates an envelope (object; string type <32 bytes; job_id a
 * UUID; seq a non-negative integer; timestamp in protocol format; data an
 * object). For type "pong" job_id, seq and data may be absent (then "",
 * 0 and NULL). Returns 0 or -EINVAL with a sentence in `err`. */
int core_msg_decode(const char* text,
                    size_t len,
                    core_server_msg_t* out,
                    char* err,
                    size_t err_len);

/* Releases out->data. Safe on a zeroed or already cleared message. */
void core_msg_clear(core_server_msg_t* msg);

/* A decoded preview: voxels in C order. */
typedef struct {
  core_shape_t shape;
  uint32_t scale[3];
  uint8_t* voxels; /* malloc'd, core_shape_voxels(shape) bytes; caller frees */
  size_t len;
} core_preview_t;

/* Validates only the geometry of a preview's data object (scale, shape,
 * dtype, agreement with `volume` when not NULL) and fills out->shape and
 * out->scale (out->voxels stays NULL). Returns 0 or -EINVAL with `err`. */
int core_msg_preview_geometry(const json_t* data,
                              const core_shape_t* volume,
                              core_preview_t* out,
                              char* err,
                              size_t err_len);

/* Validates a preview's data object (scale [s,s,s] ints >= 1; shape valid;
 * dtype "uint8"; payload base64 decoding to exactly prod(shape) bytes) and
 * decodes it. When `volume` is not NULL the shape must equal
 * ceil(volume / scale). Returns 0, -EINVAL (with `err`) or -ENOMEM. */
int core_msg_decode_preview(const json_t* data,
                            const core_shape_t* volume,
                            core_preview_t* out,
                            char* err,
                            size_t err_len);

/* The HTTP error envelope {"error":{"code","message","hint","retryable"}}:
 * a malloc'd compact JSON string (caller frees) or NULL on ENOMEM. `hint`
 * may be NULL (then the field is null). */
char* core_msg_error_json(const char* code,
                          const char* message,
                          const char* hint,
                          bool retryable,
                          size_t* len);

#endif
