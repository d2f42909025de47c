/* job.c: job states, their transition table, and simulated-inference
 * parameters, engine names and preview downsampling. Pure. */
#include "core/job.h"

#include <errno.h>
#include <string.h>


const char* core_job_state_name(core_job_state_t s) {
  switch (s) {
  case CORE_JOB_QUEUED:
    return "queued";
  case CORE_JOB_RUNNING:
    return "running";
  case CORE_JOB_COMPLETED:
    return "completed";
  case CORE_JOB_FAILED:
    return "failed";
  case CORE_JOB_CANCELLED:
    return "cancelled";
  }
  return "unknown";
}


int core_job_state_parse(const char* name, core_job_state_t* out) {
  static const core_job_state_t all[] = {CORE_JOB_QUEUED, CORE_JOB_RUNNING,
                                         CORE_JOB_COMPLETED, CORE_JOB_FAILED,
                                         CORE_JOB_CANCELLED};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    if (strcmp(name, core_job_state_name(all[i])) == 0) {
      *out = all[i];
      return 0;
    }
  }
  return -EINVAL;
}


bool core_job_state_is_terminal(core_job_state_t s) {
  switch (s) {
  case CORE_JOB_QUEUED:
  case CORE_JOB_RUNNING:
    return false;
  case CORE_JOB_COMPLETED:
  case CORE_JOB_FAILED:
  case CORE_JOB_CANCELLED:
    return true;
  }
  return false;
}


bool core_job_transition_is_valid(core_job_state_t from, core_job_state_t to) {
  switch (from) {
  case CORE_JOB_QUEUED:
    return to == CORE_JOB_RUNNING || to == CORE_JOB_CANCELLED ||
           to == CORE_JOB_FAILED;
  case CORE_JOB_RUNNING:
    return to == CORE_JOB_COMPLETED || to == CORE_JOB_FAILED ||
           to == CORE_JOB_CANCELLED;
  case CORE_JOB_COMPLETED:
  case CORE_JOB_FAILED:
  case CORE_JOB_CANCELLED:
    return false;
  }
  return false;
}


const char* core_pattern_name(core_pattern_t p) {
  switch (p) {
  case CORE_PATTERN_RANDOM:
    return "random";
  case CORE_PATTERN_BLOBS:
    return "blobs";
  }
  return "unknown";
}


int core_pattern_parse(const char* name, core_pattern_t* out) {
  if (strcmp(name, "random") == 0) {
    *out = CORE_PATTERN_RANDOM;
    return 0;
  }
  if (strcmp(name, "blobs") == 0) {
    *out = CORE_PATTERN_BLOBS;
    return 0;
  }
  return -EINVAL;
}


void core_job_params_default(core_job_params_t* p) {
  p->preview_hz = CORE_PREVIEW_HZ_DEFAULT;
  p->preview_scale = 1;
  p->duration_s = CORE_DURATION_S_DEFAULT;
  p->seed = 0;
  p->pattern = CORE_PATTERN_RANDOM;
  p->engine[0] = '\0';
  p->preview_downsample = CORE_DOWNSAMPLE_NEAREST;
}


const char* core_downsample_name(core_downsample_t d) {
  switch (d) {
  case CORE_DOWNSAMPLE_NEAREST:
    return "nearest";
  case CORE_DOWNSAMPLE_MAX:
    return "max";
  }
  return "unknown";
}


int core_downsample_parse(const char* name, core_downsample_t* out) {
  if (strcmp(name, "nearest") == 0) {
    *out = CORE_DOWNSAMPLE_NEAREST;
    return 0;
  }
  if (strcmp(name, "max") == 0) {
    *out = CORE_DOWNSAMPLE_MAX;
    return 0;
  }
  return -EINVAL;
}


bool core_engine_name_is_valid(const char* name, size_t len) {
  if (len == 0 || len > CORE_ENGINE_NAME_MAX) {
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '_' || c == '-'));
    if (!ok) {
      return false;
    }
  }
  return true;
}


unsigned core_pattern_label_count(core_pattern_t p) {
  switch (p) {
  case CORE_PATTERN_RANDOM:
    return 2;
  case CORE_PATTERN_BLOBS:
    return 3;
  }
  return 0;
}
