/* fuzz_job_request.c: libFuzzer target for core_job_request_parse() over
 * whatever JSON the input holds (bodies that jansson refuses are skipped).
 * Accepted requests must respect every documented bound. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "core/job_request.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json_error_t jerr;
  json_t* body = json_loadb((const char*) data, size, JSON_DECODE_ANY, &jerr);
  if (body == NULL) {
    return 0;
  }
  core_job_request_t req;
  char err[128];
  int rc = core_job_request_parse(body, &req, err, sizeof(err));
  json_decref(body);
  assert(memchr(err, '\0', sizeof(err)) != NULL);
  if (rc != 0) {
    assert(err[0] != '\0');
    return 0;
  }
  assert(core_shape_is_valid(&req.shape));
  for (int a = 0; a < 3; a++) {
    assert(req.voxel_size[a] > 0);
  }
  const core_job_params_t* p = &req.params;
  assert(p->preview_hz >= CORE_PREVIEW_HZ_MIN &&
         p->preview_hz <= CORE_PREVIEW_HZ_MAX);
  assert(p->preview_scale >= 1 && p->preview_scale <= CORE_SCALE_MAX);
  assert(p->duration_s >= 0 && p->duration_s <= CORE_DURATION_S_MAX);
  assert(p->pattern == CORE_PATTERN_RANDOM || p->pattern == CORE_PATTERN_BLOBS);
  if (req.has_volume_path) {
    size_t len = strlen(req.volume_path);
    assert(len > 0 && len < CORE_VOLUME_PATH_MAX);
    assert(req.volume_path[0] != '/');
    assert(!req.has_shape);
  }
  return 0;
}
