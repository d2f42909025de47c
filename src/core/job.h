/* job.h: the job model: states and their one legal set of transitions,
 * simulated-inference parameters and their defaults and bounds. Pure. */
#ifndef CORE_JOB_H
#define CORE_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/shape.h"

typedef enum {
  CORE_JOB_QUEUED,
  CORE_JOB_RUNNING,
  CORE_JOB_COMPLETED,
  CORE_JOB_FAILED,
  CORE_JOB_CANCELLED
} core_job_state_t;

typedef enum {
  CORE_PATTERN_RANDOM, /* i.i.d. 0/1 voxels, redrawn every preview */
  CORE_PATTERN_BLOBS /* membranes (1) and particles (2), revealed by windows */
} core_pattern_t;

#define CORE_PREVIEW_HZ_MIN 0.1
#define CORE_PREVIEW_HZ_MAX 30.0
#define CORE_PREVIEW_HZ_DEFAULT 1.0
#define CORE_DURATION_S_DEFAULT 30.0
#define CORE_DURATION_S_MAX 86400.0
#define CORE_DEFAULT_DIM 64u
/* Engine names: 1..31 of [a-z0-9_-], starting with a letter or digit. */
#define CORE_ENGINE_NAME_MAX 31
/* params.engine_params, serialised compactly, at most this many bytes. */
#define CORE_ENGINE_PARAMS_MAX 4096

/* How previews of an engine's mask are made from it (nearest-origin: the
 * label of each block's first voxel; max: the largest label in the block,
 * so thin structures survive downsampling). */
typedef enum {
  CORE_DOWNSAMPLE_NEAREST,
  CORE_DOWNSAMPLE_MAX
} core_downsample_t;

typedef struct {
  double preview_hz;      /* CORE_PREVIEW_HZ_MIN..MAX */
  uint32_t preview_scale; /* 1..CORE_SCALE_MAX */
  double duration_s;      /* 0..CORE_DURATION_S_MAX simulated inference time */
  uint64_t seed;
  core_pattern_t pattern;
  char engine[CORE_ENGINE_NAME_MAX + 1]; /* "" until the server picks one */
  core_downsample_t preview_downsample;
} core_job_params_t;

/* "queued", "running", "completed", "failed", "cancelled". */
const char* core_job_state_name(core_job_state_t s);

/* Inverse of core_job_state_name(). Returns 0 or -EINVAL. */
int core_job_state_parse(const char* name, core_job_state_t* out);

/* True for completed, failed and cancelled. */
bool core_job_state_is_terminal(core_job_state_t s);

/* True when `from -> to` is an edge of queued -> running -> completed |
 * failed | cancelled (queued may also go to cancelled or failed). */
bool core_job_transition_is_valid(core_job_state_t from, core_job_state_t to);

/* "random" or "blobs"; parse returns 0 or -EINVAL. */
const char* core_pattern_name(core_pattern_t p);
int core_pattern_parse(const char* name, core_pattern_t* out);

/* "nearest" or "max"; parse returns 0 or -EINVAL. */
const char* core_downsample_name(core_downsample_t d);
int core_downsample_parse(const char* name, core_downsample_t* out);

/* True when `name` is a well-formed engine name (see CORE_ENGINE_NAME_MAX). */
bool core_engine_name_is_valid(const char* name, size_t len);

/* Fills the defaults: 1 Hz, scale 1, 30 s, seed 0, random, no engine yet,
 * nearest. */
void core_job_params_default(core_job_params_t* p);

/* Number of distinct labels the pattern produces (2 for random: 0,1; 3 for
 * blobs: 0,1,2). */
unsigned core_pattern_label_count(core_pattern_t p);

#endif
