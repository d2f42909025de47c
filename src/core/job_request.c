/* job_request.c: validation of the POST /v1/jobs body. Every rejection names
 * the offending field as the client spelled it ("params.seed" or "seed"), so
 * the HTTP error message can be shown to a user as is. JSON null counts as
 * absent, like the reference server's optional fields. */
#include "core/job_request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/fail.h"
#include "core/uuid.h"

/* Params may sit under "params" or at the top level; `prefix` is how the
 * field is named in error messages. */
typedef struct {
  const json_t* obj;
  const char* prefix;
} param_src_t;


/* The value of `key` in `obj`, NULL when absent or JSON null. */
static const json_t* get(const json_t* obj, const char* key) {
  const json_t* v = json_object_get(obj, key);
  return json_is_null(v) ? NULL : v;
}


static int parse_shape(const json_t* v,
                       core_shape_t* out,
                       char* err,
                       size_t err_len) {
  if (!json_is_array(v) || json_array_size(v) != 3) {
    goto bad;
  }
  for (size_t i = 0; i < 3; i++) {
    const json_t* d = json_array_get(v, i);
    if (!json_is_integer(d)) {
      goto bad;
    }
    json_int_t n = json_integer_value(d);
    if (n < 1 || n > CORE_SHAPE_MAX_DIM) {
      goto bad;
    }
    out->d[i] = (uint32_t) n;
  }
  return 0;
bad:
  return core_fail(err, err_len,
                   "volume.shape must be an array of 3 integers [z, y, x] "
                   "between 1 and %u",
                   CORE_SHAPE_MAX_DIM);
}


static bool is_positive_number(const json_t* v) {
  if (!json_is_number(v)) {
    return false;
  }
  double d = json_number_value(v);
  return isfinite(d) && d > 0;
}


static int parse_voxel_size(const json_t* v,
                            double out[3],
                            char* err,
                            size_t err_len) {
  if (is_positive_number(v)) {
    out[0] = out[1] = out[2] = json_number_value(v);
    return 0;
  }
  if (json_is_array(v) && json_array_size(v) == 3) {
    for (size_t i = 0; i < 3; i++) {
      const json_t* d = json_array_get(v, i);
      if (!is_positive_number(d)) {
        goto bad;
      }
      out[i] = json_number_value(d);
    }
    return 0;
  }
bad:
  return core_fail(err, err_len,
                   "volume.voxel_size must be a positive number or an array of "
                   "3 positive numbers [z, y, x]");
}


/* Form checks only: the server still resolves the path under its data root
 * and refuses anything that escapes it (symlinks included). */
static int parse_path(const json_t* v,
                      const char* field,
                      char* out,
                      char* err,
                      size_t err_len) {
  if (!json_is_string(v)) {
    return core_fail(err, err_len, "%s must be a string", field);
  }
  const char* s = json_string_value(v);
  size_t len = json_string_length(v);
  if (len == 0 || len >= CORE_VOLUME_PATH_MAX) {
    return core_fail(err, err_len,
                     "%s must be a non-empty path shorter than %d bytes", field,
                     CORE_VOLUME_PATH_MAX);
  }
  if (strlen(s) != len) {
    return core_fail(err, err_len, "%s must not contain NUL characters", field);
  }
  if (s[0] == '/') {
    return core_fail(
        err, err_len,
        "%s must be relative to the server's data root, not absolute", field);
  }
  for (const char* c = s; *c != '\0';) {
    size_t n = strcspn(c, "/");
    if (n == 2 && c[0] == '.' && c[1] == '.') {
      return core_fail(err, err_len, "%s must not contain '..' components",
                       field);
    }
    c += n;
    if (*c == '/') {
      c++;
    }
  }
  memcpy(out, s, len + 1);
  return 0;
}


static int parse_volume(const json_t* body,
                        core_job_request_t* out,
                        char* err,
                        size_t err_len) {
  const json_t* vol = get(body, "volume");
  const json_t* top_path = get(body, "volume_path");
  const json_t* vol_path = NULL;
  int rc;

  if (vol != NULL) {
    if (!json_is_object(vol)) {
      return core_fail(err, err_len, "volume must be an object");
    }
    const json_t* shape = get(vol, "shape");
    if (shape != NULL) {
      if ((rc = parse_shape(shape, &out->shape, err, err_len)) != 0) {
        return rc;
      }
      out->has_shape = true;
    }
    const json_t* vs = get(vol, "voxel_size");
    if (vs != NULL) {
      if ((rc = parse_voxel_size(vs, out->voxel_size, err, err_len)) != 0) {
        return rc;
      }
      out->has_voxel_size = true;
    }
    vol_path = get(vol, "path");
  }
  if (top_path != NULL && vol_path != NULL) {
    return core_fail(err, err_len,
                     "give either volume_path or volume.path, not both");
  }
  if (top_path != NULL || vol_path != NULL) {
    const char* field = top_path != NULL ? "volume_path" : "volume.path";
    rc = parse_path(top_path != NULL ? top_path : vol_path, field,
                    out->volume_path, err, err_len);
    if (rc != 0) {
      return rc;
    }
    out->has_volume_path = true;
  }
  if (out->has_shape && out->has_volume_path) {
    return core_fail(err, err_len,
                     "give either volume.shape or a volume path, not both: the "
                     "shape of a file comes from its header");
  }
  const json_t* id = get(body, "volume_id");
  if (id != NULL) {
    const char* s = json_string_value(id);
    if (s == NULL || !core_uuid_is_valid(s, strlen(s))) {
      return core_fail(err, err_len,
                       "volume_id must be a volume's id (a UUID string)");
    }
    if (out->has_shape || out->has_volume_path) {
      return core_fail(err, err_len,
                       "give volume_id alone, without volume.shape or a "
                       "volume path: the shape comes from the volume");
    }
    memcpy(out->volume_id, s, sizeof(out->volume_id));
    out->has_volume_id = true;
  }
  return 0;
}


/* The value of param `key`: under "params" first, then the top level. */
static const json_t* find_param(const param_src_t src[2],
                                const char* key,
                                const char** prefix) {
  for (int i = 0; i < 2; i++) {
    if (src[i].obj == NULL) {
      continue;
    }
    const json_t* v = get(src[i].obj, key);
    if (v != NULL) {
      *prefix = src[i].prefix;
      return v;
    }
  }
  return NULL;
}


/* The engine-related params: which engine, how its previews are made, and
 * the object handed to it verbatim. */
static int parse_engine_params(const param_src_t src[2],
                               core_job_request_t* req,
                               char* err,
                               size_t err_len) {
  core_job_params_t* p = &req->params;
  const char* pre = "";
  const json_t* v;
  if ((v = find_param(src, "engine", &pre)) != NULL) {
    if (!json_is_string(v) ||
        !core_engine_name_is_valid(json_string_value(v),
                                   json_string_length(v))) {
      return core_fail(err, err_len,
                       "%sengine must be an engine's name (1 to %d of a-z, "
                       "0-9, '_', '-'; GET /v1/server/info lists them)",
                       pre, CORE_ENGINE_NAME_MAX);
    }
    memcpy(p->engine, json_string_value(v), json_string_length(v) + 1);
  }
  if ((v = find_param(src, "preview_downsample", &pre)) != NULL) {
    if (!json_is_string(v) ||
        core_downsample_parse(json_string_value(v), &p->preview_downsample) !=
            0) {
      return core_fail(err, err_len,
                       "%spreview_downsample must be \"nearest\" or \"max\"",
                       pre);
    }
  }
  if ((v = find_param(src, "engine_params", &pre)) != NULL) {
    if (!json_is_object(v)) {
      return core_fail(err, err_len, "%sengine_params must be an object", pre);
    }
    size_t need = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_SORT_KEYS);
    if (need == 0 || need > CORE_ENGINE_PARAMS_MAX) {
      return core_fail(err, err_len,
                       "%sengine_params must be at most %d bytes of JSON", pre,
                       CORE_ENGINE_PARAMS_MAX);
    }
    json_dumpb(v, req->engine_params, need, JSON_COMPACT | JSON_SORT_KEYS);
    req->engine_params[need] = '\0';
  }
  return 0;
}


static int parse_params(const json_t* body,
                        core_job_request_t* req,
                        char* err,
                        size_t err_len) {
  core_job_params_t* p = &req->params;
  const json_t* params = get(body, "params");
  if (params != NULL && !json_is_object(params)) {
    return core_fail(err, err_len, "params must be an object");
  }
  param_src_t src[2] = {{params, "params."}, {body, ""}};
  const char* pre = "";
  const json_t* v;

  if ((v = find_param(src, "preview_hz", &pre)) != NULL) {
    double hz = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(hz >= CORE_PREVIEW_HZ_MIN && hz <= CORE_PREVIEW_HZ_MAX)) {
      return core_fail(err, err_len,
                       "%spreview_hz must be a number between %g and %g", pre,
                       CORE_PREVIEW_HZ_MIN, CORE_PREVIEW_HZ_MAX);
    }
    p->preview_hz = hz;
  }
  if ((v = find_param(src, "preview_scale", &pre)) != NULL) {
    json_int_t s = json_is_integer(v) ? json_integer_value(v) : 0;
    if (s < 1 || s > CORE_SCALE_MAX) {
      return core_fail(err, err_len,
                       "%spreview_scale must be an integer between 1 and %u",
                       pre, CORE_SCALE_MAX);
    }
    p->preview_scale = (uint32_t) s;
  }
  if ((v = find_param(src, "duration_s", &pre)) != NULL) {
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d >= 0 && d <= CORE_DURATION_S_MAX)) {
      return core_fail(
          err, err_len,
          "%sduration_s must be a number of seconds between 0 and %g", pre,
          CORE_DURATION_S_MAX);
    }
    p->duration_s = d;
  }
  if ((v = find_param(src, "seed", &pre)) != NULL) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
      return core_fail(err, err_len, "%sseed must be a non-negative integer",
                       pre);
    }
    p->seed = (uint64_t) json_integer_value(v);
  }
  if ((v = find_param(src, "pattern", &pre)) != NULL) {
    if (!json_is_string(v) ||
        core_pattern_parse(json_string_value(v), &p->pattern) != 0) {
      return core_fail(err, err_len,
                       "%spattern must be \"random\" or \"blobs\"", pre);
    }
  }
  return parse_engine_params(src, req, err, err_len);
}


int core_job_request_parse(const json_t* body,
                           core_job_request_t* out,
                           char* err,
                           size_t err_len) {
  memset(out, 0, sizeof(*out));
  out->shape =
      (core_shape_t){{CORE_DEFAULT_DIM, CORE_DEFAULT_DIM, CORE_DEFAULT_DIM}};
  out->voxel_size[0] = out->voxel_size[1] = out->voxel_size[2] = 1.0;
  core_job_params_default(&out->params);
  if (err_len > 0) {
    err[0] = '\0';
  }
  if (body == NULL || json_is_null(body)) {
    return 0;
  }
  if (!json_is_object(body)) {
    return core_fail(err, err_len, "the request body must be a JSON object");
  }
  int rc = parse_volume(body, out, err, err_len);
  if (rc == 0) {
    rc = parse_params(body, out, err, err_len);
  }
  return rc;
}
