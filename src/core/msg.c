/* msg.c: protocol v1 message codec over jansson. Encoding is compact JSON
 * in a fixed key order; preview messages are laid out by hand (prefix +
 * base64 + suffix) so the server can base64 straight into a shared frame.
 * Decoding is strict and checks sizes before allocating, since the text may
 * come from anyone. Pure; any thread. */
#include "core/msg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fail.h"
#include "core/base64.h"
#include "core/timefmt.h"
#include "core/uuid.h"

static const char preview_suffix[] = "\"}}";


static char* dump(json_t* obj, size_t* len) {
  char* s =
      obj != NULL ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(obj);
  if (s != NULL && len != NULL) {
    *len = strlen(s);
  }
  return s;
}


char* core_msg_encode(const char* type,
                      const char* job_id,
                      uint64_t seq,
                      int64_t ts_us,
                      json_t* data,
                      size_t* len) {
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(ts_us, ts);
  if (data == NULL) {
    data = json_object();
  }
  json_t* obj = json_object();
  if (obj == NULL || data == NULL) {
    json_decref(obj);
    json_decref(data);
    return NULL;
  }
  int rc = json_object_set_new(obj, "type", json_string(type));
  if (job_id != NULL) {
    rc |= json_object_set_new(obj, "job_id", json_string(job_id));
    rc |= json_object_set_new(obj, "seq", json_integer((json_int_t) seq));
  }
  rc |= json_object_set_new(obj, "timestamp", json_string(ts));
  rc |= json_object_set_new(obj, "data", data);
  if (rc != 0) {
    json_decref(obj);
    return NULL;
  }
  return dump(obj, len);
}


/* Copies `s` into `out` as the inside of a JSON string; returns the length
 * written or -1 when it does not fit in `cap`. */
static int json_escape(const char* s, char* out, size_t cap) {
  size_t n = 0;
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char) *s;
    char buf[7];
    size_t k;
    if (c == '"' || c == '\\') {
      buf[0] = '\\';
      buf[1] = (char) c;
      k = 2;
    } else if (c < 0x20) {
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      k = 6;
    } else {
      buf[0] = (char) c;
      k = 1;
    }
    if (n + k >= cap) {
      return -1;
    }
    memcpy(out + n, buf, k);
    n += k;
  }
  out[n] = '\0';
  return (int) n;
}


int core_msg_preview_layout(const char* job_id,
                            uint64_t seq,
                            int64_t ts_us,
                            const core_shape_t* shape,
                            uint32_t scale,
                            size_t payload_len,
                            core_preview_layout_t* out) {
  char id[CORE_MSG_PREFIX_MAX];
  if (json_escape(job_id, id, sizeof(id)) < 0) {
    return -ENAMETOOLONG;
  }
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(ts_us, ts);
  int n = snprintf(out->prefix, sizeof(out->prefix),
                   "{\"type\":\"preview\",\"job_id\":\"%s\",\"seq\":%llu,"
                   "\"timestamp\":\"%s\",\"data\":{\"scale\":[%u,%u,%u],"
                   "\"shape\":[%u,%u,%u],\"dtype\":\"uint8\",\"payload\":\"",
                   id, (unsigned long long) seq, ts, scale, scale, scale,
                   shape->d[0], shape->d[1], shape->d[2]);
  if (n < 0 || (size_t) n >= sizeof(out->prefix)) {
    return -ENAMETOOLONG;
  }
  out->prefix_len = (size_t) n;
  out->suffix = preview_suffix;
  out->suffix_len = sizeof(preview_suffix) - 1;
  out->b64_len = core_base64_encoded_len(payload_len);
  out->total_len = out->prefix_len + out->b64_len + out->suffix_len;
  return 0;
}


core_client_msg_t core_msg_parse_client(const char* text, size_t len) {
  json_error_t jerr;
  json_t* root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(root)) {
    json_decref(root);
    return CORE_CLIENT_MSG_INVALID;
  }
  const char* type = json_string_value(json_object_get(root, "type"));
  core_client_msg_t kind = CORE_CLIENT_MSG_UNKNOWN;
  if (type != NULL && strcmp(type, "ping") == 0) {
    kind = CORE_CLIENT_MSG_PING;
  } else if (type != NULL && strcmp(type, "view") == 0) {
    kind = CORE_CLIENT_MSG_VIEW;
  }
  json_decref(root);
  return kind;
}


/* pong answers a client ping and belongs to no job: the reference sends
 * {"type":"pong","timestamp":..} only, so job_id, seq and data are optional
 * there and required everywhere else. */
static int decode_fields(json_t* root,
                         core_server_msg_t* out,
                         char* err,
                         size_t err_len) {
  if (!json_is_object(root)) {
    return core_fail(err, err_len, "message is not a JSON object");
  }
  json_t* v = json_object_get(root, "type");
  if (!json_is_string(v) || json_string_length(v) == 0 ||
      json_string_length(v) >= sizeof(out->type) ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    return core_fail(err, err_len, "type must be a short non-empty string");
  }
  memcpy(out->type, json_string_value(v), json_string_length(v) + 1);
  bool is_pong = strcmp(out->type, "pong") == 0;

  v = json_object_get(root, "job_id");
  if (v != NULL || !is_pong) {
    if (!json_is_string(v) ||
        !core_uuid_is_valid(json_string_value(v), json_string_length(v))) {
      return core_fail(err, err_len, "job_id must be a UUID string");
    }
    memcpy(out->job_id, json_string_value(v), CORE_UUID_STR_LEN + 1);
  }
  v = json_object_get(root, "seq");
  if (v != NULL || !is_pong) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      return core_fail(err, err_len, "seq must be a non-negative integer");
    }
    out->seq = (uint64_t) json_integer_value(v);
  }
  v = json_object_get(root, "timestamp");
  if (!json_is_string(v) || json_string_length(v) != CORE_TIMESTAMP_LEN ||
      core_timestamp_parse(json_string_value(v), &out->ts_us) != 0) {
    return core_fail(err, err_len,
                     "timestamp must be UTC with microseconds, like "
                     "2026-11-28T20:00:00.123456Z");
  }
  v = json_object_get(root, "data");
  if (v != NULL || !is_pong) {
    if (!json_is_object(v)) {
      return core_fail(err, err_len, "data must be an object");
    }
    out->data = json_incref(v);
  }
  return 0;
}


int core_msg_decode(const char* text,
                    size_t len,
                    core_server_msg_t* out,
                    char* err,
                    size_t err_len) {
  memset(out, 0, sizeof(*out));
  if (err_len > 0) {
    err[0] = '\0';
  }
  json_error_t jerr;
  json_t* root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    return core_fail(err, err_len, "invalid JSON: %s", jerr.text);
  }
  int rc = decode_fields(root, out, err, err_len);
  json_decref(root);
  if (rc != 0) {
    core_msg_clear(out);
  }
  return rc;
}


void core_msg_clear(core_server_msg_t* msg) {
  json_decref(msg->data);
  msg->data = NULL;
}


/* Reads an array of exactly 3 integers in lo..hi into out. */
static bool get_triple(const json_t* data,
                       const char* key,
                       json_int_t lo,
                       json_int_t hi,
                       uint32_t out[3]) {
  const json_t* v = json_object_get(data, key);
  if (!json_is_array(v) || json_array_size(v) != 3) {
    return false;
  }
  for (size_t i = 0; i < 3; i++) {
    const json_t* d = json_array_get(v, i);
    if (!json_is_integer(d) || json_integer_value(d) < lo ||
        json_integer_value(d) > hi) {
      return false;
    }
    out[i] = (uint32_t) json_integer_value(d);
  }
  return true;
}


int core_msg_preview_geometry(const json_t* data,
                              const core_shape_t* volume,
                              core_preview_t* out,
                              char* err,
                              size_t err_len) {
  memset(out, 0, sizeof(*out));
  if (err_len > 0) {
    err[0] = '\0';
  }
  if (!json_is_object(data)) {
    return core_fail(err, err_len, "preview data must be an object");
  }
  if (!get_triple(data, "scale", 1, CORE_SCALE_MAX, out->scale)) {
    return core_fail(err, err_len,
                     "data.scale must be 3 integers between 1 and %u",
                     CORE_SCALE_MAX);
  }
  if (!get_triple(data, "shape", 1, CORE_SHAPE_MAX_DIM, out->shape.d)) {
    return core_fail(err, err_len,
                     "data.shape must be 3 integers between 1 and %u",
                     CORE_SHAPE_MAX_DIM);
  }
  const char* dtype = json_string_value(json_object_get(data, "dtype"));
  if (dtype == NULL || strcmp(dtype, "uint8") != 0) {
    return core_fail(err, err_len, "data.dtype must be \"uint8\"");
  }
  if (volume != NULL) {
    for (int i = 0; i < 3; i++) {
      uint32_t s = out->scale[i];
      uint32_t want = volume->d[i] / s + (volume->d[i] % s != 0);
      if (out->shape.d[i] != want) {
        return core_fail(err, err_len,
                         "data.shape[%d] is %u but a volume of %u at scale %u "
                         "gives %u",
                         i, out->shape.d[i], volume->d[i], s, want);
      }
    }
  }
  return 0;
}


int core_msg_decode_preview(const json_t* data,
                            const core_shape_t* volume,
                            core_preview_t* out,
                            char* err,
                            size_t err_len) {
  int rc = core_msg_preview_geometry(data, volume, out, err, err_len);
  if (rc != 0) {
    return rc;
  }
  const json_t* payload = json_object_get(data, "payload");
  if (!json_is_string(payload)) {
    return core_fail(err, err_len, "data.payload must be a base64 string");
  }
  /* Compare lengths first: a hostile shape must not make us allocate. */
  uint64_t voxels = core_shape_voxels(&out->shape);
  size_t b64_len = json_string_length(payload);
  if (voxels > SIZE_MAX / 2 || b64_len != core_base64_encoded_len(voxels)) {
    return core_fail(err, err_len,
                     "data.payload has %zu base64 characters; shape needs %llu",
                     b64_len,
                     (unsigned long long) core_base64_encoded_len(voxels));
  }
  uint8_t* buf = malloc(core_base64_decoded_max(b64_len));
  if (buf == NULL) {
    return -ENOMEM;
  }
  size_t n = 0;
  if (core_base64_decode(json_string_value(payload), b64_len, buf, &n) != 0 ||
      n != voxels) {
    free(buf);
    return core_fail(err, err_len,
                     "data.payload is not valid base64 of the shape");
  }
  out->voxels = buf;
  out->len = n;
  return 0;
}


/* A JSON string for text that may hold invalid UTF-8 (a message quoting a
 * client's bytes): such bytes become '?' rather than failing the envelope. */
static json_t* text_value(const char* s) {
  json_t* v = json_string(s);
  if (v != NULL || s == NULL) {
    return v;
  }
  size_t n = strlen(s);
  char* copy = malloc(n + 1);
  if (copy == NULL) {
    return NULL;
  }
  for (size_t i = 0; i <= n; i++) {
    copy[i] = (unsigned char) s[i] >= 0x80 ? '?' : s[i];
  }
  v = json_string(copy);
  free(copy);
  return v;
}


char* core_msg_error_json(const char* code,
                          const char* message,
                          const char* hint,
                          bool retryable,
                          size_t* len) {
  json_t* e = json_object();
  json_t* root = json_object();
  if (e == NULL || root == NULL) {
    json_decref(e);
    json_decref(root);
    return NULL;
  }
  int rc = json_object_set_new(e, "code", json_string(code));
  rc |= json_object_set_new(e, "message", text_value(message));
  rc |= json_object_set_new(e, "hint",
                            hint != NULL ? text_value(hint) : json_null());
  rc |= json_object_set_new(e, "retryable", json_boolean(retryable));
  rc |= json_object_set_new(root, "error", e);
  if (rc != 0) {
    json_decref(root);
    return NULL;
  }
  return dump(root, len);
}
