/* engine_cfg.c: the operator's engine settings. See engine_cfg.h. The
 * strings allocated here live as long as the process (the configuration is
 * never freed). */
#include "server/engine_cfg.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fail.h"
#include "core/job.h"


void srv_engine_cfg_default(srv_engine_cfg_t* c) {
  memset(c, 0, sizeof(*c));
  snprintf(c->builtin, sizeof(c->builtin), "all");
  c->kill_grace_s = 10.0;
  c->max_line_bytes = 16u << 10;
  c->max_lines_per_s = 1000;
  c->log_bytes = 1u << 20;
}


/* The slot for `name`: the one declared with it, else a new one. */
static srv_exec_engine_cfg_t* slot_for(srv_engine_cfg_t* c,
                                       const char* name,
                                       char* err,
                                       size_t err_len) {
  for (unsigned i = 0; i < c->exec_count; i++) {
    if (strcmp(c->exec[i].name, name) == 0) {
      free(c->exec[i].command);
      free(c->exec[i].params_json);
      memset(&c->exec[i], 0, sizeof(c->exec[i]));
      snprintf(c->exec[i].name, sizeof(c->exec[i].name), "%s", name);
      return &c->exec[i];
    }
  }
  if (c->exec_count == SRV_EXEC_ENGINES_MAX) {
    core_fail(err, err_len, "at most %d exec engines", SRV_EXEC_ENGINES_MAX);
    return NULL;
  }
  srv_exec_engine_cfg_t* e = &c->exec[c->exec_count++];
  memset(e, 0, sizeof(*e));
  snprintf(e->name, sizeof(e->name), "%s", name);
  return e;
}


static int check_name(const char* name, size_t len, char* err, size_t err_len) {
  if (!core_engine_name_is_valid(name, len)) {
    return core_fail(err, err_len,
                     "engine name '%.*s' must be 1 to %d of a-z, 0-9, '_', "
                     "'-' (starting with a letter or digit)",
                     (int) len, name, CORE_ENGINE_NAME_MAX);
  }
  return 0;
}


int srv_engine_cfg_add(srv_engine_cfg_t* c,
                       const char* spec,
                       char* err,
                       size_t err_len) {
  const char* eq = strchr(spec, '=');
  if (eq == NULL || eq[1] == '\0') {
    return core_fail(err, err_len, "--engine wants NAME=COMMAND, not '%s'",
                     spec);
  }
  size_t len = (size_t) (eq - spec);
  if (check_name(spec, len, err, err_len) != 0) {
    return -1;
  }
  char name[CORE_ENGINE_NAME_MAX + 1];
  memcpy(name, spec, len);
  name[len] = '\0';
  char* command = strdup(eq + 1);
  srv_exec_engine_cfg_t* e =
      command != NULL ? slot_for(c, name, err, err_len) : NULL;
  if (e == NULL) {
    free(command);
    return command == NULL ? core_fail(err, err_len, "out of memory") : -1;
  }
  e->command = command;
  snprintf(e->description, sizeof(e->description), "exec engine");
  return 0;
}


static int load_one(srv_engine_cfg_t* c,
                    const json_t* o,
                    size_t i,
                    char* err,
                    size_t err_len) {
  const char* name = json_string_value(json_object_get(o, "name"));
  const char* command = json_string_value(json_object_get(o, "command"));
  const json_t* wall = json_object_get(o, "wall_time_s");
  const json_t* needs = json_object_get(o, "needs_volume");
  const json_t* desc = json_object_get(o, "description");
  const json_t* params = json_object_get(o, "params");
  if (!json_is_object(o) || name == NULL || command == NULL ||
      command[0] == '\0') {
    return core_fail(err, err_len,
                     "engines[%zu] must be an object with string fields "
                     "\"name\" and \"command\"",
                     i);
  }
  if (check_name(name, strlen(name), err, err_len) != 0) {
    return -1;
  }
  if ((wall != NULL &&
       (!json_is_number(wall) ||
        !(json_number_value(wall) >= 0 && json_number_value(wall) <= 1e7))) ||
      (needs != NULL && !json_is_boolean(needs)) ||
      (desc != NULL && !json_is_string(desc)) ||
      (params != NULL && !json_is_object(params))) {
    return core_fail(err, err_len,
                     "engines[%zu] (%s): wall_time_s must be seconds "
                     "0..1e7, needs_volume a boolean, description a string, "
                     "params an object",
                     i, name);
  }
  char* cmd = strdup(command);
  char* pj = params != NULL ? json_dumps(params, JSON_COMPACT) : NULL;
  srv_exec_engine_cfg_t* e = cmd != NULL && (params == NULL || pj != NULL)
                                 ? slot_for(c, name, err, err_len)
                                 : NULL;
  if (e == NULL) {
    free(cmd);
    free(pj);
    return cmd == NULL ? core_fail(err, err_len, "out of memory") : -1;
  }
  e->command = cmd;
  e->params_json = pj;
  e->wall_time_s = wall != NULL ? json_number_value(wall) : 0;
  e->needs_volume = json_is_true(needs);
  snprintf(e->description, sizeof(e->description), "%s",
           desc != NULL ? json_string_value(desc) : "exec engine");
  return 0;
}


int srv_engine_cfg_load_file(srv_engine_cfg_t* c,
                             const char* path,
                             char* err,
                             size_t err_len) {
  json_error_t jerr;
  json_t* root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    return core_fail(err, err_len, "engines file %s: %s (line %d)", path,
                     jerr.text, jerr.line);
  }
  const json_t* list = json_object_get(root, "engines");
  int rc = 0;
  if (!json_is_array(list)) {
    rc = core_fail(err, err_len, "engines file %s: wants {\"engines\": [...]}",
                   path);
  }
  for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
    rc = load_one(c, json_array_get(list, i), i, err, err_len);
  }
  json_decref(root);
  return rc;
}


static bool is_device_name(const char* s, size_t len) {
  if (len == 0 || len > SRV_DEVICE_NAME_MAX) {
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
          (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_' || ch == ':')) {
      return false;
    }
  }
  return true;
}


int srv_engine_cfg_set_devices(srv_engine_cfg_t* c, const char* spec) {
  char* end = NULL;
  errno = 0;
  unsigned long n = strtoul(spec, &end, 10);
  if (spec[0] >= '0' && spec[0] <= '9' && *end == '\0' && errno == 0) {
    if (n > SRV_DEVICES_MAX) {
      return -1;
    }
    for (unsigned long i = 0; i < n; i++) {
      snprintf(c->devices[i], sizeof(c->devices[i]), "%lu", i);
    }
    c->device_count = (unsigned) n;
    return 0;
  }
  unsigned count = 0;
  for (const char* p = spec;;) {
    size_t len = strcspn(p, ",");
    if (!is_device_name(p, len) || count == SRV_DEVICES_MAX) {
      return -1;
    }
    for (unsigned i = 0; i < count; i++) {
      if (strlen(c->devices[i]) == len && memcmp(c->devices[i], p, len) == 0) {
        return -1; /* one job per device: a name twice would be two */
      }
    }
    memcpy(c->devices[count], p, len);
    c->devices[count][len] = '\0';
    count++;
    if (p[len] == '\0') {
      break;
    }
    p += len + 1;
  }
  c->device_count = count;
  return 0;
}
