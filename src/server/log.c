/* log.c: JSON log lines via jansson, written with one fwrite so lines from
 * the loop and worker threads never interleave. See log.h. */
#include "server/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/timefmt.h"

static const char* level_names[] = {"debug", "info", "warn", "error"};


int srv_log_enabled(const srv_logger_t* lg, srv_log_level_t level) {
  return (int) level >= lg->min_level;
}


void srv_log(const srv_logger_t* lg,
             srv_log_level_t level,
             const char* event,
             ...) {
  if (!srv_log_enabled(lg, level)) {
    return;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format((int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000,
                        ts);
  json_t* line = json_object();
  if (line == NULL) {
    return;
  }
  json_object_set_new(line, "ts", json_string(ts));
  json_object_set_new(line, "level", json_string(level_names[level]));
  json_object_set_new(line, "event", json_string(event));
  va_list ap;
  va_start(ap, event);
  const char* key;
  while ((key = va_arg(ap, const char*)) != NULL) {
    if (strlen(key) < 3 || key[1] != ':') {
      break; /* a malformed call site; stop rather than misread varargs */
    }
    json_t* value = NULL;
    switch (key[0]) {
    case 's': {
      const char* s = va_arg(ap, const char*);
      value = s != NULL ? json_string(s) : json_null();
      if (value == NULL) {
        value = json_string("<invalid utf-8>");
      }
      break;
    }
    case 'i':
      value = json_integer((json_int_t) va_arg(ap, int64_t));
      break;
    case 'f':
      value = json_real(va_arg(ap, double));
      break;
    default:
      break;
    }
    if (value == NULL) {
      break;
    }
    json_object_set_new(line, key + 2, value);
  }
  va_end(ap);
  char* text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(line);
  if (text == NULL) {
    return;
  }
  size_t len = strlen(text);
  text[len] = '\n'; /* replaces the NUL; we write exactly len + 1 bytes */
  fwrite(text, 1, len + 1, stderr);
  fflush(stderr);
  free(text);
}
