/* seg_params_json.h: the classic segmenter's parameters (core_seg_params_t)
 * as JSON: a job's params.engine_params read onto them, the description
 * GET /v1/server/info lists, and the effective values a job reports. The
 * names are the struct's fields. Pure. */
#ifndef CORE_SEG_PARAMS_JSON_H
#define CORE_SEG_PARAMS_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "core/seg_classic.h"

/* Sets *p to the defaults, then applies `obj` (NULL or an object: each key
 * a field of core_seg_params_t, a number for the float fields, an integer
 * for the counts and lengths, a boolean for dense_is_bright), then checks
 * the result (core_seg_params_check). Returns 0, or -EINVAL with a sentence
 * naming the first bad key in `err` (an unknown key, a wrong type, a value
 * out of range). */
int core_seg_params_from_json(const json_t* obj,
                              core_seg_params_t* p,
                              char* err,
                              size_t err_len);

/* Parses `text` (a JSON object, or NULL/"" for none) like
 * core_seg_params_from_json. */
int core_seg_params_from_text(const char* text,
                              core_seg_params_t* p,
                              char* err,
                              size_t err_len);

/* {"name": {"type", "default", "minimum", "maximum", "description"}, ...}
 * for every field: what info says the engine's engine_params take. NULL on
 * ENOMEM. */
json_t* core_seg_params_describe(void);

/* {"name": value, ...}: the values in `p`. NULL on ENOMEM. */
json_t* core_seg_params_to_json(const core_seg_params_t* p);

#endif
