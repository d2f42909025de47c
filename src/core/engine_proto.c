/* engine_proto.c: parsing the lines an exec engine prints. See
 * engine_proto.h. Pure. */
#include "core/engine_proto.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "core/fail.h"


static bool is_blank(const char* s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
      return false;
    }
  }
  return true;
}


static int get_progress(const json_t* o,
                        core_engine_msg_t* out,
                        bool required,
                        char* err,
                        size_t err_len) {
  const json_t* v = json_object_get(o, "progress");
  if (v == NULL && !required) {
    return 0;
  }
  double p = json_is_number(v) ? json_number_value(v) : NAN;
  if (!(p >= 0 && p <= 1)) {
    return core_fail(err, err_len, "\"progress\" must be a number in [0, 1]");
  }
  out->has_progress = true;
  out->progress = p;
  return 0;
}


static int get_message(const json_t* o,
                       core_engine_msg_t* out,
                       bool required,
                       char* err,
                       size_t err_len) {
  const json_t* v = json_object_get(o, "message");
  if (v == NULL && !required) {
    return 0;
  }
  if (!json_is_string(v) ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    return core_fail(err, err_len,
                     "\"message\" must be a string without NUL characters");
  }
  size_t n = json_string_length(v);
  n = n > CORE_ENGINE_MESSAGE_MAX ? CORE_ENGINE_MESSAGE_MAX : n;
  /* Cut at a character boundary: never half a UTF-8 sequence. */
  const char* s = json_string_value(v);
  while (n > 0 && n < json_string_length(v) &&
         ((unsigned char) s[n] & 0xC0) == 0x80) {
    n--;
  }
  memcpy(out->message, s, n);
  out->message[n] = '\0';
  out->has_message = true;
  return 0;
}


static int get_box(const json_t* o,
                   core_engine_msg_t* out,
                   char* err,
                   size_t err_len) {
  const json_t* v = json_object_get(o, "box");
  if (!json_is_array(v) || json_array_size(v) != 6) {
    goto bad;
  }
  for (size_t i = 0; i < 6; i++) {
    const json_t* d = json_array_get(v, i);
    if (!json_is_integer(d) || json_integer_value(d) < 0 ||
        json_integer_value(d) > UINT32_MAX) {
      goto bad;
    }
    out->box[i] = (uint32_t) json_integer_value(d);
  }
  return 0;
bad:
  return core_fail(err, err_len,
                   "\"box\" must be [z0, y0, x0, z1, y1, x1], integers >= 0");
}


int core_engine_msg_parse(const char* line,
                          size_t len,
                          core_engine_msg_t* out,
                          char* err,
                          size_t err_len) {
  memset(out, 0, sizeof(*out));
  if (is_blank(line, len)) {
    return -ENODATA;
  }
  json_error_t jerr;
  json_t* o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(o)) {
    json_decref(o);
    return core_fail(err, err_len,
                     "a stdout line is not a JSON object (%s): every line "
                     "must be one protocol message",
                     o == NULL ? jerr.text : "another JSON value");
  }
  const char* type = json_string_value(json_object_get(o, "type"));
  int rc = 0;
  if (type == NULL) {
    rc = core_fail(err, err_len, "a stdout message has no \"type\"");
  } else if (strcmp(type, "progress") == 0) {
    out->type = CORE_ENGINE_MSG_PROGRESS;
    rc = get_progress(o, out, true, err, err_len);
    rc = rc != 0 ? rc : get_message(o, out, false, err, err_len);
  } else if (strcmp(type, "message") == 0) {
    out->type = CORE_ENGINE_MSG_MESSAGE;
    rc = get_message(o, out, true, err, err_len);
  } else if (strcmp(type, "region") == 0) {
    out->type = CORE_ENGINE_MSG_REGION;
    rc = get_box(o, out, err, err_len);
    rc = rc != 0 ? rc : get_progress(o, out, false, err, err_len);
  } else if (strcmp(type, "stats") == 0) {
    out->type = CORE_ENGINE_MSG_STATS;
    json_t* s = json_object_get(o, "stats");
    if (!json_is_object(s) ||
        json_dumpb(s, NULL, 0, JSON_COMPACT) > CORE_ENGINE_STATS_MAX) {
      rc = core_fail(err, err_len,
                     "\"stats\" must be an object of at most %d bytes",
                     CORE_ENGINE_STATS_MAX);
    } else {
      out->stats = json_incref(s);
    }
  } else {
    rc = core_fail(err, err_len,
                   "unknown message type \"%.40s\" (protocol %d has progress, "
                   "message, region, stats)",
                   type, CORE_ENGINE_PROTOCOL_VERSION);
  }
  json_decref(o);
  return rc;
}
