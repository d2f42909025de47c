/* job_request.h: parses and validates the body of POST /v1/jobs. Pure: a
 * volume_path is only checked for form here; the server resolves it. */
#ifndef CORE_JOB_REQUEST_H
#define CORE_JOB_REQUEST_H

#include <jansson.h>
#include <stdbool.h>

#include "core/job.h"
#include "core/shape.h"

#define CORE_VOLUME_PATH_MAX 1024

typedef struct {
  bool has_shape;       /* volume.shape given */
  bool has_voxel_size;  /* volume.voxel_size given */
  bool has_volume_path; /* volume_path (or volume.path) given */
  bool has_volume_id;   /* volume_id (an uploaded volume) given */
  char volume_id[37];   /* canonical UUID, when has_volume_id */
  core_shape_t shape;   /* default 64^3 when neither shape nor path given */
  double voxel_size[3]; /* Z, Y, X in Angstrom; default 1,1,1; each > 0 */
  char volume_path[CORE_VOLUME_PATH_MAX]; /* relative to the data root */
  core_job_params_t params;
  /* params.engine_params, serialised compactly (JSON_COMPACT |
   * JSON_SORT_KEYS), "" when absent: what an engine gets verbatim. */
  char engine_params[CORE_ENGINE_PARAMS_MAX + 1];
} core_job_request_t;

/* Parses `body` (may be NULL or an empty object: every default applies).
 * Accepted: {"volume":{"shape":[z,y,x],"voxel_size":[..] or number},
 * "volume_path":"x.mrc" or "volume_id":"<uuid>",
 * "params":{"preview_hz","preview_scale", "duration_s","seed","pattern",
 * "engine","preview_downsample","engine_params"}};
 * params may also sit at the top level. Unknown keys are ignored (forward
 * compatibility). Returns 0, or -EINVAL with a sentence naming the field in
 * `err` (always NUL-terminated). Giving both a shape and a path is an error. */
int core_job_request_parse(const json_t* body,
                           core_job_request_t* out,
                           char* err,
                           size_t err_len);

#endif
