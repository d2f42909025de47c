/* seg_params_json.c: core_seg_params_t as JSON. See seg_params_json.h. One
 * table names every field, its type, its range and what it means, so the
 * parser, the description for info and the report agree; the ranges are
 * core_seg_params_check()'s (a unit test holds them to it), which still has
 * the last word. Pure. */
#include "core/seg_params_json.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fail.h"

typedef enum {
  FIELD_FLOAT,
  FIELD_U32,
  FIELD_BOOL
} field_kind_t;

typedef struct {
  const char* name;
  field_kind_t kind;
  size_t offset; /* into core_seg_params_t */
  double min, max;
  const char* description;
} field_t;

#define F(name, kind, min, max, text)                                          \
  { #name, kind, offsetof(core_seg_params_t, name), min, max, text }

static const field_t fields[] = {
    F(sigma, FIELD_FLOAT, 0, 8, "Gaussian smoothing sd, voxels"),
    F(k_detect,
      FIELD_FLOAT,
      0,
      100,
      "structure is darker than this many noise sd"),
    F(edge_fraction,
      FIELD_FLOAT,
      0,
      1,
      "... and than this fraction of its local peak (membrane edges)"),
    F(peak_radius,
      FIELD_U32,
      0,
      16,
      "half edge of the cube the local peak is taken over, voxels"),
    F(sheet_radius,
      FIELD_U32,
      1,
      60,
      "deeper than this inside the structure is a particle, never a "
      "membrane, voxels"),
    F(k_curvature,
      FIELD_FLOAT,
      0,
      100,
      "particle centres curve down every way by more than this many "
      "curvature-noise sd"),
    F(blob_extent,
      FIELD_U32,
      0,
      4096,
      "a thin component this wide at most (bounding-box edge, voxels) is a "
      "particle"),
    F(k_support,
      FIELD_FLOAT,
      0,
      100,
      "particles extend while darker than this many noise sd ..."),
    F(grow_steps, FIELD_U32, 0, 64, "... by at most this many voxels"),
    F(min_voxels,
      FIELD_U32,
      0,
      4294967295.0,
      "components with fewer voxels are noise and dropped"),
    F(window,
      FIELD_U32,
      4,
      512,
      "edge of a window's core, voxels: windows are the unit of work and of "
      "preview growth; each worker's scratch grows with its cube"),
    F(dense_is_bright,
      FIELD_BOOL,
      0,
      1,
      "dense matter has high values (cryo-ET: false, dense is dark)"),
};

#define FIELD_COUNT (sizeof(fields) / sizeof(fields[0]))


static const field_t* find(const char* name) {
  for (size_t i = 0; i < FIELD_COUNT; i++) {
    if (strcmp(fields[i].name, name) == 0) {
      return &fields[i];
    }
  }
  return NULL;
}


static int set_field(const field_t* f,
                     const json_t* v,
                     core_seg_params_t* p,
                     char* err,
                     size_t err_len) {
  char* at = (char*) p + f->offset;
  switch (f->kind) {
  case FIELD_FLOAT: {
    /* jansson never yields NaN or infinities from JSON text. */
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d >= f->min && d <= f->max)) {
      return core_fail(err, err_len,
                       "engine_params.%s must be a number in [%g, %g]", f->name,
                       f->min, f->max);
    }
    float x = (float) d;
    memcpy(at, &x, sizeof(x));
    return 0;
  }
  case FIELD_U32: {
    json_int_t i = json_is_integer(v) ? json_integer_value(v) : -1;
    if (i < (json_int_t) f->min || (double) i > f->max) {
      return core_fail(err, err_len,
                       "engine_params.%s must be an integer in [%.0f, %.0f]",
                       f->name, f->min, f->max);
    }
    uint32_t u = (uint32_t) i;
    memcpy(at, &u, sizeof(u));
    return 0;
  }
  case FIELD_BOOL:
    if (!json_is_boolean(v)) {
      return core_fail(err, err_len, "engine_params.%s must be true or false",
                       f->name);
    }
    bool b = json_is_true(v);
    memcpy(at, &b, sizeof(b));
    return 0;
  }
  return core_fail(err, err_len, "engine_params.%s: unknown kind", f->name);
}


int core_seg_params_from_json(const json_t* obj,
                              core_seg_params_t* p,
                              char* err,
                              size_t err_len) {
  core_seg_params_default(p);
  if (obj == NULL) {
    return 0;
  }
  if (!json_is_object(obj)) {
    return core_fail(err, err_len, "engine_params must be an object");
  }
  const char* key;
  json_t* v;
  json_object_foreach((json_t*) obj, key, v) {
    const field_t* f = find(key);
    if (f == NULL) {
      /* Strict: a misspelt parameter would otherwise silently keep its
       * default and the user would wonder why nothing changed. */
      char names[512] = "";
      for (size_t i = 0; i < FIELD_COUNT; i++) {
        strncat(names, i > 0 ? ", " : "", sizeof(names) - strlen(names) - 1);
        strncat(names, fields[i].name, sizeof(names) - strlen(names) - 1);
      }
      return core_fail(err, err_len,
                       "engine_params.%.64s is not a parameter of classic "
                       "(it has: %s)",
                       key, names);
    }
    int rc = set_field(f, v, p, err, err_len);
    if (rc != 0) {
      return rc;
    }
  }
  char why[160];
  if (core_seg_params_check(p, why, sizeof(why)) != 0) {
    return core_fail(err, err_len, "engine_params: %s", why);
  }
  return 0;
}


int core_seg_params_from_text(const char* text,
                              core_seg_params_t* p,
                              char* err,
                              size_t err_len) {
  if (text == NULL || text[0] == '\0') {
    return core_seg_params_from_json(NULL, p, err, err_len);
  }
  json_error_t jerr;
  json_t* obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
  if (obj == NULL) {
    core_seg_params_default(p);
    return core_fail(err, err_len, "engine_params is not JSON: %s", jerr.text);
  }
  int rc = core_seg_params_from_json(obj, p, err, err_len);
  json_decref(obj);
  return rc;
}


static json_t* value_of(const field_t* f, const core_seg_params_t* p) {
  const char* at = (const char*) p + f->offset;
  switch (f->kind) {
  case FIELD_FLOAT: {
    float x;
    memcpy(&x, at, sizeof(x));
    /* The shortest decimal that reads back as the same float: 1.25, not
     * 1.2500000000000000. */
    char text[32] = "0";
    for (int digits = 1; digits <= 9; digits++) {
      snprintf(text, sizeof(text), "%.*g", digits, (double) x);
      if ((float) strtod(text, NULL) == x) {
        break;
      }
    }
    return json_real(strtod(text, NULL));
  }
  case FIELD_U32: {
    uint32_t u;
    memcpy(&u, at, sizeof(u));
    return json_integer((json_int_t) u);
  }
  case FIELD_BOOL: {
    bool b;
    memcpy(&b, at, sizeof(b));
    return json_boolean(b);
  }
  }
  return NULL;
}


json_t* core_seg_params_to_json(const core_seg_params_t* p) {
  json_t* out = json_object();
  for (size_t i = 0; out != NULL && i < FIELD_COUNT; i++) {
    json_t* v = value_of(&fields[i], p);
    if (v == NULL || json_object_set_new(out, fields[i].name, v) != 0) {
      json_decref(out);
      return NULL;
    }
  }
  return out;
}


json_t* core_seg_params_describe(void) {
  core_seg_params_t def;
  core_seg_params_default(&def);
  json_t* out = json_object();
  for (size_t i = 0; out != NULL && i < FIELD_COUNT; i++) {
    const field_t* f = &fields[i];
    json_t* d =
        f->kind == FIELD_BOOL
            ? json_pack("{s:s, s:o, s:s}", "type", "boolean", "default",
                        value_of(f, &def), "description", f->description)
            : json_pack("{s:s, s:o, s:f, s:f, s:s}", "type",
                        f->kind == FIELD_FLOAT ? "number" : "integer",
                        "default", value_of(f, &def), "minimum", f->min,
                        "maximum", f->max, "description", f->description);
    if (d != NULL && f->kind == FIELD_U32) {
      json_object_set_new(d, "minimum", json_integer((json_int_t) f->min));
      json_object_set_new(d, "maximum", json_integer((json_int_t) f->max));
    }
    if (d == NULL || json_object_set_new(out, f->name, d) != 0) {
      json_decref(out);
      return NULL;
    }
  }
  return out;
}
