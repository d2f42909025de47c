/* job.h: what a job is (srv_job_t) and what an engine provides
 * (srv_engine_ops_t): the type only, shared by the registry (jobs.c), its
 * JSON (job_json.c) and the engines. Loop thread only. */
#ifndef SRV_JOB_H
#define SRV_JOB_H

#include <jansson.h>

#include "server/ctx.h"
#include "server/hub.h"

typedef struct srv_engine_s srv_engine_t;
struct srv_chunks_s;

typedef struct srv_job_s {
  core_list_t link; /* ctx->jobs, newest first */
  srv_ctx_t* ctx;
  char id[CORE_UUID_STR_LEN + 1];
  core_job_state_t state;
  core_job_params_t params;
  core_shape_t shape;
  core_shape_t preview_shape;
  double voxel_size[3];
  char* volume_path; /* malloc'd, NULL when the volume was given by shape */
  char volume_id[CORE_UUID_STR_LEN + 1]; /* an uploaded volume's, or "" */
  char* engine_params;        /* malloc'd compact JSON object, NULL when none */
  const srv_engine_t* engine; /* ctx's registry; never NULL once created */
  double progress;
  uint64_t seq; /* last job event's seq; events start at 1 */
  uint64_t previews_sent;
  int64_t created_us, updated_us, started_us, finished_us;
  char error_code[32];
  char error_message[1024];
  char error_hint[160];
  bool error_retryable;
  bool has_stats;
  uint64_t label_counts[3];  /* sim jobs */
  json_t* label_counts_json; /* mask engines: {"label": count}, owned */
  json_t* engine_stats;      /* mask engines: the engine's own, owned */
  uint64_t artifact_bytes;
  uint64_t final_preview_seq; /* kept to rebuild the preview after restart */
  int64_t final_preview_us;
  srv_topic_t topic;           /* previews, terminal message, sinks */
  struct srv_chunks_s* chunks; /* chunk table (chunks.h), made for the first
                                  chunks subscriber, freed with the job */
  void* run;          /* the engine's per-job state while it runs, else NULL */
  bool is_rebuilding; /* the final preview is being re-rendered */
  bool is_ending;     /* a terminal record is being committed: no more
                         transitions, the terminal message goes out after it,
                         and clients still see state_before_end */
  core_job_state_t state_before_end;
  bool is_deleting;   /* a delete is being committed */
  bool is_registered; /* in ctx->jobs and ctx->job_index */
  unsigned refs;      /* registry + engine run + pending store callbacks +
                         renders in flight; freed at 0 */
} srv_job_t;

/* What an engine provides (the registry, engines.c, names each one). */
struct srv_engine_ops_s {
  /* Runs a queued job: calls srv_job_set_running(), then posts progress,
   * previews and finally srv_job_finish(). */
  void (*start)(srv_job_t* job);
  /* Stops the job's engine work for good; idempotent. */
  void (*stop)(srv_job_t* job);
  /* Re-renders a completed job's final preview off the loop, then calls
   * srv_topic_set_preview() (quiet) and srv_topic_wake() on its topic. */
  void (*rebuild_preview)(srv_job_t* job);
  /* Optional (NULL: always): false while the queued job cannot start yet
   * (no free device slot); the scheduler leaves it queued, and the engine
   * calls srv_jobs_schedule() when that changes. */
  bool (*can_start)(const srv_job_t* job);
};

/* One engine of the registry: built in (sim, classic) or declared by the
 * operator (exec). Read-only once the server runs. */
struct srv_engine_s {
  char name[CORE_ENGINE_NAME_MAX + 1];
  const char* kind; /* "builtin" or "exec" */
  const srv_engine_ops_t* ops;
  char description[256];
  bool is_enabled;   /* built-ins the operator left out: false */
  bool needs_volume; /* refuses shape-only jobs */
  bool supports_max; /* preview_downsample "max" */
  bool uses_devices; /* each running job takes a device slot */
  json_t* params;    /* GET /v1/server/info: name -> description, owned */
  /* Optional: checks a new job's params.engine_params (compact JSON, or
   * "" when none): 0, or -EINVAL with a sentence in `why` (400). */
  int (*check_params)(const char* engine_params, char* why, size_t why_len);
  const void* data; /* the engine's own configuration (exec: its cfg) */
};

#endif
