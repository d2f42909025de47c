/* job_json.c: jobs to and from JSON. See job_json.h. */
#include "server/job_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/job_request.h"
#include "core/msg.h"
#include "core/timefmt.h"


static json_t* time_or_null(int64_t us) {
  if (us == 0) {
    return json_null();
  }
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format(us, ts);
  return json_string(ts);
}


static json_t* shape_json(const core_shape_t* s) {
  return json_pack("[I, I, I]", (json_int_t) s->d[0], (json_int_t) s->d[1],
                   (json_int_t) s->d[2]);
}


static json_t* artifacts_json(const srv_job_t* job) {
  json_t* arr = json_array();
  if (arr == NULL || job->artifact_bytes == 0) {
    return arr; /* the artifact exists once the final mask is written */
  }
  char url[128];
  snprintf(url, sizeof(url), "/v1/jobs/%s/artifacts/mask.mrc", job->id);
  json_array_append_new(
      arr, json_pack("{s:s, s:s, s:I}", "name", "mask.mrc", "url", url, "bytes",
                     (json_int_t) job->artifact_bytes));
  return arr;
}


static json_t* stats_json(const srv_job_t* job) {
  if (!job->has_stats) {
    return json_null();
  }
  if (job->label_counts_json != NULL) { /* a mask engine's: labels found */
    json_t* out = json_pack("{s:I, s:O}", "voxels",
                            (json_int_t) core_shape_voxels(&job->shape),
                            "label_counts", job->label_counts_json);
    if (out != NULL && job->engine_stats != NULL) {
      json_object_set(out, "engine", job->engine_stats);
    }
    return out;
  }
  json_t* counts = json_object();
  unsigned n = core_pattern_label_count(job->params.pattern);
  for (unsigned i = 0; i < n && i < 3; i++) {
    char key[12];
    snprintf(key, sizeof(key), "%u", i);
    json_object_set_new(counts, key,
                        json_integer((json_int_t) job->label_counts[i]));
  }
  return json_pack("{s:I, s:o}", "voxels",
                   (json_int_t) core_shape_voxels(&job->shape), "label_counts",
                   counts);
}


static bool is_sim(const srv_job_t* job) {
  return strcmp(job->params.engine, "sim") == 0;
}


/* The params object. A sim job's has the five fields it always had (sim
 * stays byte for byte what it was on the wire); other jobs' also name
 * their engine, preview_downsample and engine_params. */
static json_t* params_json(const srv_job_t* job) {
  const core_job_params_t* p = &job->params;
  json_t* out = json_pack(
      "{s:f, s:I, s:f, s:I, s:s}", "preview_hz", p->preview_hz, "preview_scale",
      (json_int_t) p->preview_scale, "duration_s", p->duration_s, "seed",
      (json_int_t) p->seed, "pattern", core_pattern_name(p->pattern));
  if (out == NULL || is_sim(job)) {
    return out;
  }
  json_object_set_new(out, "engine", json_string(p->engine));
  json_object_set_new(out, "preview_downsample",
                      json_string(core_downsample_name(p->preview_downsample)));
  if (job->engine_params != NULL) {
    json_object_set_new(out, "engine_params",
                        json_loads(job->engine_params, 0, NULL));
  }
  return out;
}


/* The job as JSON. Clients see only what is durable: while its terminal
 * record is being committed a job still shows the state it had before
 * (the record itself, `durable` false, has the new one). */
static json_t* job_json(const srv_job_t* job, bool durable) {
  bool hide_end = durable && job->is_ending;
  core_job_state_t state = hide_end ? job->state_before_end : job->state;
  json_t* errors = json_array();
  if (job->error_code[0] != '\0' && !hide_end) {
    json_array_append_new(
        errors, json_pack("{s:s, s:s, s:s?, s:b}", "code", job->error_code,
                          "message", job->error_message, "hint",
                          job->error_hint[0] != '\0' ? job->error_hint : NULL,
                          "retryable", job->error_retryable));
  }
  return json_pack(
      "{s:s, s:s, s:o, s:{s:o, s:[f,f,f], s:o},"
      " s:o, s:f, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
      "job_id", job->id, "state", core_job_state_name(state), "params",
      params_json(job), "volume", "shape", shape_json(&job->shape),
      "voxel_size", job->voxel_size[0], job->voxel_size[1], job->voxel_size[2],
      "path",
      job->volume_path != NULL ? json_string(job->volume_path) : json_null(),
      "preview_shape", shape_json(&job->preview_shape), "progress",
      job->progress, "previews_sent", (json_int_t) job->previews_sent,
      "artifacts", hide_end ? json_array() : artifacts_json(job), "stats",
      hide_end ? json_null() : stats_json(job), "errors", errors, "created_at",
      time_or_null(job->created_us), "updated_at",
      time_or_null(job->updated_us), "started_at",
      time_or_null(job->started_us), "finished_at",
      time_or_null(hide_end ? 0 : job->finished_us));
}


static void add_volume_id(json_t* obj, const srv_job_t* job);


json_t* srv_job_to_json(const srv_job_t* job) {
  json_t* out = job_json(job, true);
  add_volume_id(out, job);
  return out;
}


/* volume.volume_id: an uploaded volume's id, or null. */
static void add_volume_id(json_t* obj, const srv_job_t* job) {
  json_t* vol = json_object_get(obj, "volume");
  json_object_set_new(
      vol, "volume_id",
      job->volume_id[0] != '\0' ? json_string(job->volume_id) : json_null());
}


json_t* srv_job_to_record(const srv_job_t* job) {
  json_t* rec = job_json(job, false);
  if (rec == NULL) {
    return NULL;
  }
  add_volume_id(rec, job);
  json_object_set_new(
      rec, "internal",
      json_pack("{s:I, s:I, s:I, s:I}", "seq", (json_int_t) job->seq,
                "final_preview_seq", (json_int_t) job->final_preview_seq,
                "final_preview_us", (json_int_t) job->final_preview_us,
                "artifact_bytes", (json_int_t) job->artifact_bytes));
  return rec;
}


static int64_t json_time(const json_t* obj, const char* key) {
  const char* s = json_string_value(json_object_get(obj, key));
  int64_t us = 0;
  if (s == NULL || core_timestamp_parse(s, &us) != 0) {
    return 0;
  }
  return us;
}


static int json_shape(const json_t* arr, core_shape_t* out) {
  if (!json_is_array(arr) || json_array_size(arr) != 3) {
    return -1;
  }
  for (size_t i = 0; i < 3; i++) {
    const json_t* v = json_array_get(arr, i);
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > CORE_SHAPE_MAX_DIM) {
      return -1;
    }
    out->d[i] = (uint32_t) json_integer_value(v);
  }
  return 0;
}


static uint64_t json_u64(const json_t* obj, const char* key) {
  json_int_t v = json_integer_value(json_object_get(obj, key));
  return v > 0 ? (uint64_t) v : 0;
}


static void copy_string(char* dst, size_t cap, const json_t* v) {
  snprintf(dst, cap, "%s", json_string_value(v) ?: "");
}


int srv_job_from_record(srv_job_t* job,
                        const json_t* rec,
                        char* why,
                        size_t why_len) {
  const char* id = json_string_value(json_object_get(rec, "job_id"));
  const char* state = json_string_value(json_object_get(rec, "state"));
  const json_t* volume = json_object_get(rec, "volume");
  const json_t* internal = json_object_get(rec, "internal");
  core_job_request_t req;
  char err[128];
  if (id == NULL || !core_uuid_is_valid(id, strlen(id))) {
    snprintf(why, why_len, "no valid job_id");
    return -1;
  }
  memcpy(job->id, id, CORE_UUID_STR_LEN + 1);
  if (state == NULL || core_job_state_parse(state, &job->state) != 0) {
    snprintf(why, why_len, "unknown state '%s'", state ?: "(none)");
    return -1;
  }
  if (core_job_request_parse(json_object_get(rec, "params"), &req, err,
                             sizeof(err)) != 0) {
    snprintf(why, why_len, "bad params: %s", err);
    return -1;
  }
  if (!json_is_object(volume) || !json_is_object(internal) ||
      json_shape(json_object_get(volume, "shape"), &job->shape) != 0) {
    snprintf(why, why_len, "bad volume shape or internal fields");
    return -1;
  }
  job->params = req.params;
  if (job->params.engine[0] == '\0') {
    snprintf(job->params.engine, sizeof(job->params.engine), "sim");
  }
  if (req.engine_params[0] != '\0' &&
      (job->engine_params = strdup(req.engine_params)) == NULL) {
    snprintf(why, why_len, "out of memory");
    return -1;
  }
  const char* vid = json_string_value(json_object_get(volume, "volume_id"));
  if (vid != NULL && core_uuid_is_valid(vid, strlen(vid))) {
    memcpy(job->volume_id, vid, sizeof(job->volume_id));
  }
  job->preview_shape =
      core_shape_downsample(&job->shape, job->params.preview_scale);
  const json_t* vs = json_object_get(volume, "voxel_size");
  for (size_t i = 0; i < 3; i++) {
    double v = json_number_value(json_array_get(vs, i));
    job->voxel_size[i] = v > 0 ? v : 1.0;
  }
  const char* path = json_string_value(json_object_get(volume, "path"));
  if (path != NULL && (job->volume_path = strdup(path)) == NULL) {
    snprintf(why, why_len, "out of memory");
    return -1;
  }
  job->progress = json_number_value(json_object_get(rec, "progress"));
  job->previews_sent = json_u64(rec, "previews_sent");
  job->created_us = json_time(rec, "created_at");
  job->updated_us = json_time(rec, "updated_at");
  job->started_us = json_time(rec, "started_at");
  job->finished_us = json_time(rec, "finished_at");
  job->seq = json_u64(internal, "seq");
  job->final_preview_seq = json_u64(internal, "final_preview_seq");
  job->final_preview_us =
      json_integer_value(json_object_get(internal, "final_preview_us"));
  job->artifact_bytes = json_u64(internal, "artifact_bytes");
  const json_t* first = json_array_get(json_object_get(rec, "errors"), 0);
  if (first != NULL) {
    copy_string(job->error_code, sizeof(job->error_code),
                json_object_get(first, "code"));
    copy_string(job->error_message, sizeof(job->error_message),
                json_object_get(first, "message"));
    copy_string(job->error_hint, sizeof(job->error_hint),
                json_object_get(first, "hint"));
    const json_t* r = json_object_get(first, "retryable");
    job->error_retryable = r == NULL || json_is_true(r);
  }
  const json_t* stats = json_object_get(rec, "stats");
  const json_t* counts = json_object_get(stats, "label_counts");
  if (json_is_object(counts) && !is_sim(job)) {
    job->has_stats = true;
    job->label_counts_json = json_deep_copy(counts);
    const json_t* es = json_object_get(stats, "engine");
    job->engine_stats = json_is_object(es) ? json_deep_copy(es) : NULL;
  } else if (json_is_object(counts)) {
    job->has_stats = true;
    for (unsigned i = 0; i < 3; i++) {
      char key[12];
      snprintf(key, sizeof(key), "%u", i);
      job->label_counts[i] = json_u64(counts, key);
    }
  }
  return 0;
}


net_frame_t* srv_job_terminal_frame(const srv_job_t* job) {
  json_t* data = NULL;
  const char* type = NULL;
  switch (job->state) {
  case CORE_JOB_COMPLETED:
    type = "completed";
    data = json_pack("{s:s, s:o, s:o, s:I}", "state", "completed", "artifacts",
                     artifacts_json(job), "stats", stats_json(job),
                     "previews_sent", (json_int_t) job->previews_sent);
    break;
  case CORE_JOB_CANCELLED:
    type = "cancelled";
    data = json_pack("{s:s, s:f}", "state", "cancelled", "progress",
                     job->progress);
    break;
  case CORE_JOB_FAILED:
    type = "error";
    data = json_pack("{s:s, s:s, s:s?, s:b}", "code", job->error_code,
                     "message", job->error_message, "hint",
                     job->error_hint[0] != '\0' ? job->error_hint : NULL,
                     "retryable", job->error_retryable);
    break;
  case CORE_JOB_QUEUED:
  case CORE_JOB_RUNNING:
    return NULL;
  }
  size_t len = 0;
  char* text =
      core_msg_encode(type, job->id, job->seq, job->finished_us, data, &len);
  if (text == NULL) {
    return NULL;
  }
  net_frame_t* f = net_frame_ws_text(text, len);
  free(text);
  return f;
}


json_t* srv_job_connected_data(const srv_job_t* job) {
  return json_pack(
      "{s:s, s:f, s:I, s:{s:o, s:[f,f,f]}, s:o, s:o}", "state",
      core_job_state_name(job->is_ending ? job->state_before_end : job->state),
      "progress", job->progress, "last_seq", (json_int_t) job->seq, "volume",
      "shape", shape_json(&job->shape), "voxel_size", job->voxel_size[0],
      job->voxel_size[1], job->voxel_size[2], "preview_shape",
      shape_json(&job->preview_shape), "params", params_json(job));
}
