/* chunk_view.c: view messages. See chunk_view.h. */
#include "core/chunk_view.h"

#include <jansson.h>
#include <math.h>

#include "core/fail.h"


int core_view_parse(const char* text,
                    size_t len,
                    const core_shape_t* vol,
                    core_view_t* v,
                    char* err,
                    size_t err_len) {
  static const char* const names[3] = {"z", "y", "x"};
  json_error_t jerr;
  json_t* root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(root)) {
    json_decref(root);
    return core_fail(err, err_len, "a view must be a JSON object");
  }
  int rc = 0;
  for (int a = 0; a < 3 && rc == 0; a++) {
    json_t* f = json_object_get(root, names[a]);
    v->has[a] = false;
    v->at[a] = 0;
    if (f == NULL || json_is_null(f)) {
      continue;
    }
    json_int_t i = json_is_integer(f) ? json_integer_value(f) : -1;
    if (i < 0 || i >= (json_int_t) vol->d[a]) {
      rc = core_fail(err, err_len,
                     "view.%s must be null or an integer plane index in "
                     "[0, %u)",
                     names[a], vol->d[a]);
      break;
    }
    v->has[a] = true;
    v->at[a] = (uint32_t) i;
  }
  json_t* zoom = json_object_get(root, "zoom");
  v->zoom = 1.0;
  if (rc == 0 && zoom != NULL && !json_is_null(zoom)) {
    double z = json_is_number(zoom) ? json_number_value(zoom) : -1.0;
    if (!(z > 0) || !isfinite(z)) {
      rc = core_fail(err, err_len, "view.zoom must be a positive number");
    } else {
      v->zoom = z;
    }
  }
  json_decref(root);
  return rc;
}


unsigned core_view_plane_level(double zoom, unsigned max_level) {
  unsigned l = 0;
  while (l < max_level && zoom * (double) (2u << l) <= 1.0) {
    l++;
  }
  return l;
}
