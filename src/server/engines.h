/* engines.h: the engine registry. Names the engines a job may ask for
 * (params.engine): the built-ins (sim, classic) and the exec
 * engines the operator declared (--engine NAME=COMMAND, --engines-file),
 * with what GET /v1/server/info says about them. Built at start-up, read
 * only afterwards. Loop thread only. */
#ifndef SRV_ENGINES_H
#define SRV_ENGINES_H

#include <jansson.h>
#include <stdbool.h>

#include "core/job_request.h"
#include "server/job.h"

#define SRV_ENGINES_MAX 32

struct srv_engines_s {
  srv_engine_t list[SRV_ENGINES_MAX]; /* built-ins first, then exec */
  unsigned count;
  srv_engine_t gone; /* stands in for an engine a stored job names that this
                        server no longer has (see srv_engines_for_record) */
};
typedef struct srv_engines_s srv_engines_t;

/* Fills the registry from cfg: the built-ins (enabled as
 * cfg->builtin_engines says) and cfg's exec engines. Returns 0, or -1 with
 * a sentence in `err` (a duplicate name, a built-in's name taken). */
int srv_engines_init(srv_engines_t* reg,
                     const srv_config_t* cfg,
                     char* err,
                     size_t err_len);

/* Frees what the registry owns (the params descriptions). */
void srv_engines_free(srv_engines_t* reg);

/* The engine called `name` (enabled or not), or NULL. */
const srv_engine_t* srv_engines_find(const srv_engines_t* reg,
                                     const char* name);

/* The engine a stored job record names (NULL or absent: sim, the only one
 * before engines existed); one this server does not have resolves to
 * reg->gone, which fails the job if it is still queued and rebuilds a
 * completed job's preview from its artifact. */
const srv_engine_t* srv_engines_for_record(const srv_engines_t* reg,
                                           const char* name);

/* Picks and checks the engine of a new job: params->engine, or when empty
 * the default (classic for a job with a volume when it is enabled, else
 * sim), written back into params->engine; the engine checks
 * `engine_params` (compact JSON or ""). Returns NULL with an error code
 * (unknown_engine, engine_not_enabled, engine_needs_volume, invalid_field)
 * and a sentence in `why`. */
const srv_engine_t* srv_engines_resolve(const srv_engines_t* reg,
                                        core_job_params_t* params,
                                        bool has_volume,
                                        const char* engine_params,
                                        const char** code,
                                        char* why,
                                        size_t why_len);

/* The `engines` array of GET /v1/server/info (enabled engines only). */
json_t* srv_engines_info(const srv_engines_t* reg);

#endif
