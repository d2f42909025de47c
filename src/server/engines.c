/* engines.c: the engine registry. See engines.h. A new built-in engine is
 * one entry of builtins[] below (its ops, whether it needs a volume,
 * whether it makes max-downsampled previews, its params for info). Loop
 * thread only (start-up for init). */
#include "server/engines.h"

#include <stdio.h>
#include <string.h>

#include "core/fail.h"
#include "server/engine.h"
#include "server/engine_classic.h"
#include "server/engine_exec.h"
#include "server/mask_run.h"

/* The params every mask engine (all but sim) takes. */
static const char mask_params[] =
    "{\"preview_downsample\":{\"type\":\"string\",\"enum\":[\"nearest\","
    "\"max\"],\"default\":\"nearest\",\"description\":\"how previews are "
    "made from the mask: the label of each block's first voxel, or its "
    "largest label (thin structures survive)\"},"
    "\"engine_params\":{\"type\":\"object\",\"description\":\"handed to the "
    "engine as is\"}}";

static const char sim_params[] =
    "{\"pattern\":{\"type\":\"string\",\"enum\":[\"random\",\"blobs\"],"
    "\"default\":\"random\"},"
    "\"seed\":{\"type\":\"integer\",\"minimum\":0,\"default\":0},"
    "\"duration_s\":{\"type\":\"number\",\"minimum\":0,\"maximum\":86400,"
    "\"default\":30,\"description\":\"simulated inference time\"},"
    "\"preview_downsample\":{\"type\":\"string\",\"enum\":[\"nearest\"],"
    "\"default\":\"nearest\"}}";

typedef struct {
  const char* name;
  const srv_engine_ops_t* ops;
  const char* description;
  bool needs_volume;
  bool supports_max;
  const char* params;           /* JSON text, or NULL: params_info() */
  json_t* (*params_info)(void); /* a new object */
  int (*check_params)(const char* engine_params, char* why, size_t why_len);
} builtin_t;

static const builtin_t builtins[] = {
    {"sim", &srv_sim_engine,
     "simulated inference: seeded masks at a steady rate, no volume read "
     "(tests, demos)",
     false, false, sim_params, NULL, NULL},
    {"classic", &srv_classic_engine,
     "CPU segmentation of the volume, window by window: membranes (label 1) "
     "and dense particles (label 2); the default for jobs with a volume",
     true, true, NULL, srv_classic_params_info, srv_classic_check_params},
};

/* The ops of reg->gone: a queued job fails, a completed one's preview is
 * rebuilt from its artifact like any mask engine's. */
static void gone_start(srv_job_t* job) {
  char message[160];
  snprintf(message, sizeof(message),
           "this job's engine '%s' is not configured on this server any more",
           job->params.engine);
  srv_job_set_running(job);
  srv_job_finish(job, CORE_JOB_FAILED,
                 json_pack("{s:s, s:s, s:s, s:b}", "code", "engine_unavailable",
                           "message", message, "hint",
                           "GET /v1/server/info lists the engines; submit "
                           "the job again with one of them",
                           "retryable", 0));
}


static void gone_stop(srv_job_t* job) {
  (void) job;
}


static const srv_engine_ops_t gone_ops = {
    .start = gone_start,
    .stop = gone_stop,
    .rebuild_preview = srv_mask_rebuild_preview,
};


/* True when `name` is in the comma-separated `list` (or list is "all"). */
static bool listed(const char* list, const char* name) {
  if (strcmp(list, "all") == 0) {
    return true;
  }
  size_t len = strlen(name);
  for (const char* p = list; *p != '\0';) {
    size_t n = strcspn(p, ",");
    if (n == len && memcmp(p, name, n) == 0) {
      return true;
    }
    p += n;
    if (*p == ',') {
      p++;
    }
  }
  return false;
}


/* Adds engine `name` with its params description: `params` (JSON text)
 * or, when NULL, `params_obj` (stolen). */
static int add(srv_engines_t* reg,
               const char* name,
               const char* params,
               json_t* params_obj,
               char* err,
               size_t err_len,
               srv_engine_t** out) {
  if (srv_engines_find(reg, name) != NULL) {
    json_decref(params_obj);
    return core_fail(err, err_len,
                     "engine name '%s' is taken (by a built-in or twice)",
                     name);
  }
  if (reg->count == SRV_ENGINES_MAX) {
    json_decref(params_obj);
    return core_fail(err, err_len, "at most %d engines", SRV_ENGINES_MAX);
  }
  srv_engine_t* e = &reg->list[reg->count];
  memset(e, 0, sizeof(*e));
  snprintf(e->name, sizeof(e->name), "%s", name);
  json_error_t jerr;
  snprintf(jerr.text, sizeof(jerr.text), "out of memory");
  e->params = params != NULL ? json_loads(params, 0, &jerr) : params_obj;
  if (e->params == NULL) {
    return core_fail(err, err_len, "engine %s: params: %s", name, jerr.text);
  }
  reg->count++;
  *out = e;
  return 0;
}


int srv_engines_init(srv_engines_t* reg,
                     const srv_config_t* cfg,
                     char* err,
                     size_t err_len) {
  memset(reg, 0, sizeof(*reg));
  const srv_engine_cfg_t* c = &cfg->engines;
  for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
    const builtin_t* b = &builtins[i];
    srv_engine_t* e = NULL;
    if (add(reg, b->name, b->params,
            b->params != NULL ? NULL : b->params_info(), err, err_len,
            &e) != 0) {
      return -1;
    }
    e->kind = "builtin";
    e->ops = b->ops;
    snprintf(e->description, sizeof(e->description), "%s", b->description);
    e->is_enabled = listed(c->builtin, b->name);
    e->needs_volume = b->needs_volume;
    e->supports_max = b->supports_max;
    e->check_params = b->check_params;
  }
  for (unsigned i = 0; i < c->exec_count; i++) {
    const srv_exec_engine_cfg_t* x = &c->exec[i];
    srv_engine_t* e = NULL;
    if (add(reg, x->name, mask_params, NULL, err, err_len, &e) != 0) {
      return -1;
    }
    if (x->params_json != NULL) {
      json_t* own = json_loads(x->params_json, 0, NULL);
      json_object_update(e->params, own); /* the operator's say more */
      json_decref(own);
    }
    e->kind = "exec";
    e->ops = &srv_exec_engine;
    snprintf(e->description, sizeof(e->description), "%s", x->description);
    e->is_enabled = true;
    e->needs_volume = x->needs_volume;
    e->supports_max = true;
    e->uses_devices = c->device_count > 0;
    e->data = x;
  }
  reg->gone = (srv_engine_t){.kind = "gone", .ops = &gone_ops};
  return 0;
}


void srv_engines_free(srv_engines_t* reg) {
  for (unsigned i = 0; i < reg->count; i++) {
    json_decref(reg->list[i].params);
    reg->list[i].params = NULL;
  }
  reg->count = 0;
}


const srv_engine_t* srv_engines_find(const srv_engines_t* reg,
                                     const char* name) {
  for (unsigned i = 0; i < reg->count; i++) {
    if (strcmp(reg->list[i].name, name) == 0) {
      return &reg->list[i];
    }
  }
  return NULL;
}


const srv_engine_t* srv_engines_for_record(const srv_engines_t* reg,
                                           const char* name) {
  const srv_engine_t* e =
      srv_engines_find(reg, name != NULL && name[0] != '\0' ? name : "sim");
  return e != NULL ? e : &reg->gone;
}


const srv_engine_t* srv_engines_resolve(const srv_engines_t* reg,
                                        core_job_params_t* params,
                                        bool has_volume,
                                        const char* engine_params,
                                        const char** code,
                                        char* why,
                                        size_t why_len) {
  if (params->engine[0] == '\0') {
    /* A volume is segmented for real when the operator left classic on;
     * shape-only jobs (and the reference's clients) keep the simulator. */
    const srv_engine_t* classic = srv_engines_find(reg, "classic");
    bool real = has_volume && classic != NULL && classic->is_enabled;
    snprintf(params->engine, sizeof(params->engine), "%s",
             real ? "classic" : "sim");
  }
  const srv_engine_t* e = srv_engines_find(reg, params->engine);
  if (e == NULL) {
    char names[SRV_ENGINES_MAX * (CORE_ENGINE_NAME_MAX + 2)] = "";
    for (unsigned i = 0; i < reg->count; i++) {
      if (reg->list[i].is_enabled) {
        strcat(names, names[0] != '\0' ? ", " : "");
        strcat(names, reg->list[i].name);
      }
    }
    *code = "unknown_engine";
    snprintf(why, why_len,
             "params.engine '%s' is not an engine of this server (it has: %s)",
             params->engine, names);
    return NULL;
  }
  if (!e->is_enabled) {
    *code = "engine_not_enabled";
    snprintf(why, why_len,
             "the built-in engine '%s' is not enabled on this server "
             "(--builtin-engines)",
             e->name);
    return NULL;
  }
  if (e->needs_volume && !has_volume) {
    *code = "engine_needs_volume";
    snprintf(why, why_len,
             "engine '%s' segments a volume: give volume_id or volume_path, "
             "not only a shape",
             e->name);
    return NULL;
  }
  if (params->preview_downsample == CORE_DOWNSAMPLE_MAX && !e->supports_max) {
    *code = "invalid_field";
    snprintf(why, why_len,
             "params.preview_downsample \"max\" is not offered by engine '%s' "
             "(its previews are nearest-origin)",
             e->name);
    return NULL;
  }
  if (e->check_params != NULL &&
      e->check_params(engine_params != NULL ? engine_params : "", why,
                      why_len) != 0) {
    *code = "invalid_field";
    return NULL;
  }
  return e;
}


json_t* srv_engines_info(const srv_engines_t* reg) {
  json_t* arr = json_array();
  for (unsigned i = 0; arr != NULL && i < reg->count; i++) {
    const srv_engine_t* e = &reg->list[i];
    if (!e->is_enabled) {
      continue;
    }
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:s, s:b, s:b, s:O}", "name", e->name,
                       "kind", e->kind, "description", e->description,
                       "needs_volume", e->needs_volume, "uses_devices",
                       e->uses_devices, "params", e->params));
  }
  return arr;
}
