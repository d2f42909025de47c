/* jobs.c: job registry, job JSON, seq-numbered events and fan-out. See
 * jobs.h. Loop thread only. */
#include "server/jobs.h"

#include <assert.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/msg.h"
#include "core/timefmt.h"
#include "server/conn.h"
#include "server/engine.h"
#include "server/store.h"


srv_job_t* srv_job_find(srv_ctx_t* ctx, const char* id, size_t len) {
  if (len != CORE_UUID_STR_LEN) {
    return NULL;
  }
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->jobs) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    if (strncasecmp(job->id, id, len) == 0) {
      return job;
    }
  }
  return NULL;
}


static srv_job_t* job_alloc(srv_ctx_t* ctx) {
  srv_job_t* job = calloc(1, sizeof(*job));
  if (job == NULL) {
    return NULL;
  }
  job->ctx = ctx;
  core_list_init(&job->link);
  core_list_init(&job->subscribers);
  core_list_init(&job->preview_waiters);
  uv_timer_init(ctx->loop, &job->timer);
  uv_timer_init(ctx->loop, &job->render_timer);
  job->timer.data = job;
  job->render_timer.data = job;
  job->open_handles = 2;
  job->tick_fd = -1;
  return job;
}


/* Inserts keeping ctx->jobs sorted newest first (restores come unordered). */
static void job_insert(srv_ctx_t* ctx, srv_job_t* job) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->jobs) {
    srv_job_t* other = CORE_CONTAINER_OF(it, srv_job_t, link);
    if (other->created_us <= job->created_us) {
      /* Insert before `other`. */
      job->link.next = it;
      job->link.prev = it->prev;
      it->prev->next = &job->link;
      it->prev = &job->link;
      ctx->job_count++;
      return;
    }
  }
  core_list_push_back(&ctx->jobs, &job->link);
  ctx->job_count++;
}


int srv_job_create(srv_ctx_t* ctx,
                   const core_job_request_t* req,
                   const core_shape_t* shape,
                   const double voxel_size[3],
                   const char* volume_path,
                   srv_job_t** out) {
  srv_job_t* job = job_alloc(ctx);
  if (job == NULL) {
    return -ENOMEM;
  }
  uint8_t random16[16];
  if (RAND_bytes(random16, sizeof(random16)) != 1) {
    free(job);
    return -EIO;
  }
  core_uuid4_format(random16, job->id);
  if (volume_path != NULL) {
    job->volume_path = strdup(volume_path);
    if (job->volume_path == NULL) {
      free(job);
      return -ENOMEM;
    }
  }
  job->state = CORE_JOB_QUEUED;
  job->params = req->params;
  job->shape = *shape;
  job->preview_shape = core_shape_downsample(shape, req->params.preview_scale);
  memcpy(job->voxel_size, voxel_size, sizeof(job->voxel_size));
  job->created_us = job->updated_us = srv_now_us();
  job_insert(ctx, job);
  ctx->metrics.jobs_created_total++;
  srv_log(&ctx->log, SRV_LOG_INFO, "job.created", "s:job_id", job->id,
          "s:pattern", core_pattern_name(job->params.pattern), "i:z",
          (int64_t) shape->d[0], "i:y", (int64_t) shape->d[1], "i:x",
          (int64_t) shape->d[2], NULL);
  srv_job_persist(job);
  srv_jobs_schedule(ctx);
  *out = job;
  return 0;
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
    return -EINVAL;
  }
  for (size_t i = 0; i < 3; i++) {
    json_int_t v = json_integer_value(json_array_get(arr, i));
    if (v < 1 || v > CORE_SHAPE_MAX_DIM) {
      return -EINVAL;
    }
    out->d[i] = (uint32_t) v;
  }
  return 0;
}


/* The terminal message of a restored job, with its original seq and time,
 * so late joiners see what they would have seen before the restart. */
static void rebuild_terminal_frame(srv_job_t* job) {
  json_t* data = NULL;
  const char* type = NULL;
  switch (job->state) {
  case CORE_JOB_COMPLETED: {
    json_t* full = srv_job_to_json(job);
    type = "completed";
    data = json_pack("{s:s, s:o, s:O, s:I}", "state", "completed", "artifacts",
                     srv_job_artifacts_json(job), "stats",
                     json_object_get(full, "stats"), "previews_sent",
                     (json_int_t) job->previews_sent);
    json_decref(full);
    break;
  }
  case CORE_JOB_CANCELLED:
    type = "cancelled";
    data = json_pack("{s:s, s:f}", "state", "cancelled", "progress",
                     job->progress);
    break;
  case CORE_JOB_FAILED:
    type = "error";
    data = json_pack("{s:s, s:s, s:n, s:b}", "code", job->error_code, "message",
                     job->error_message, "hint", "retryable", 1);
    break;
  case CORE_JOB_QUEUED:
  case CORE_JOB_RUNNING:
    return;
  }
  size_t len = 0;
  char* text =
      core_msg_encode(type, job->id, job->seq, job->finished_us, data, &len);
  if (text != NULL) {
    job->terminal_frame = net_frame_ws_text(text, len);
    free(text);
  }
}


int srv_job_restore(srv_ctx_t* ctx, const json_t* rec) {
  const char* id = json_string_value(json_object_get(rec, "job_id"));
  const char* state = json_string_value(json_object_get(rec, "state"));
  const json_t* params = json_object_get(rec, "params");
  const json_t* volume = json_object_get(rec, "volume");
  const json_t* internal = json_object_get(rec, "internal");
  core_job_request_t req;
  char err[128];
  srv_job_t* job = NULL;
  if (id == NULL || !core_uuid_is_valid(id, strlen(id)) || state == NULL ||
      core_job_request_parse(params, &req, err, sizeof(err)) != 0 ||
      !json_is_object(volume) || !json_is_object(internal) ||
      srv_job_find(ctx, id, strlen(id)) != NULL ||
      (job = job_alloc(ctx)) == NULL) {
    return -EINVAL;
  }
  if (core_job_state_parse(state, &job->state) != 0 ||
      json_shape(json_object_get(volume, "shape"), &job->shape) != 0) {
    free(job);
    return -EINVAL;
  }
  memcpy(job->id, id, CORE_UUID_STR_LEN + 1);
  job->params = req.params;
  job->preview_shape =
      core_shape_downsample(&job->shape, job->params.preview_scale);
  const json_t* vs = json_object_get(volume, "voxel_size");
  for (size_t i = 0; i < 3; i++) {
    double v = json_number_value(json_array_get(vs, i));
    job->voxel_size[i] = v > 0 ? v : 1.0;
  }
  const char* path = json_string_value(json_object_get(volume, "path"));
  if (path != NULL) {
    job->volume_path = strdup(path);
  }
  job->progress = json_number_value(json_object_get(rec, "progress"));
  job->previews_sent =
      (uint64_t) json_integer_value(json_object_get(rec, "previews_sent"));
  job->created_us = json_time(rec, "created_at");
  job->updated_us = json_time(rec, "updated_at");
  job->started_us = json_time(rec, "started_at");
  job->finished_us = json_time(rec, "finished_at");
  job->seq = (uint64_t) json_integer_value(json_object_get(internal, "seq"));
  job->final_preview_seq = (uint64_t) json_integer_value(
      json_object_get(internal, "final_preview_seq"));
  job->final_preview_us =
      json_integer_value(json_object_get(internal, "final_preview_us"));
  job->artifact_bytes = (uint64_t) json_integer_value(
      json_object_get(internal, "artifact_bytes"));
  const json_t* errors = json_object_get(rec, "errors");
  const json_t* first = json_array_get(errors, 0);
  if (first != NULL) {
    snprintf(job->error_code, sizeof(job->error_code), "%s",
             json_string_value(json_object_get(first, "code")) ?: "");
    snprintf(job->error_message, sizeof(job->error_message), "%s",
             json_string_value(json_object_get(first, "message")) ?: "");
  }
  const json_t* counts =
      json_object_get(json_object_get(rec, "stats"), "label_counts");
  if (json_is_object(counts)) {
    job->has_stats = true;
    for (unsigned i = 0; i < 3; i++) {
      char key[12];
      snprintf(key, sizeof(key), "%u", i);
      job->label_counts[i] =
          (uint64_t) json_integer_value(json_object_get(counts, key));
    }
  }
  job_insert(ctx, job);
  if (job->state == CORE_JOB_RUNNING) {
    /* The server stopped while it ran: say so instead of pretending. The
     * slot is counted so that finishing releases it evenly. */
    ctx->running_count++;
    srv_job_finish(
        job, CORE_JOB_FAILED,
        json_pack("{s:s, s:s, s:s, s:b}", "code", "interrupted", "message",
                  "the server stopped while this job was running", "hint",
                  "submit the job again", "retryable", 1));
  } else if (core_job_state_is_terminal(job->state)) {
    rebuild_terminal_frame(job);
  }
  return 0;
}


int srv_job_cancel(srv_job_t* job) {
  if (core_job_state_is_terminal(job->state)) {
    return -EALREADY;
  }
  srv_engine_stop(job);
  srv_job_finish(
      job, CORE_JOB_CANCELLED,
      json_pack("{s:s, s:f}", "state", "cancelled", "progress", job->progress));
  return 0;
}


void srv_job_set_running(srv_job_t* job) {
  assert(core_job_transition_is_valid(job->state, CORE_JOB_RUNNING));
  core_job_state_t previous = job->state;
  job->state = CORE_JOB_RUNNING;
  job->started_us = job->updated_us = srv_now_us();
  job->ctx->running_count++;
  srv_job_publish(job, "state",
                  json_pack("{s:s, s:s}", "state", "running", "previous",
                            core_job_state_name(previous)),
                  NET_WQ_ESSENTIAL);
  srv_log(&job->ctx->log, SRV_LOG_INFO, "job.running", "s:job_id", job->id,
          NULL);
  srv_job_persist(job);
}


void srv_job_finish(srv_job_t* job, core_job_state_t state, json_t* data) {
  assert(core_job_transition_is_valid(job->state, state));
  srv_ctx_t* ctx = job->ctx;
  bool was_running = job->state == CORE_JOB_RUNNING;
  srv_engine_stop(job);
  job->state = state;
  job->finished_us = job->updated_us = srv_now_us();
  if (state == CORE_JOB_FAILED && data != NULL) {
    snprintf(job->error_code, sizeof(job->error_code), "%s",
             json_string_value(json_object_get(data, "code")) ?: "failed");
    snprintf(job->error_message, sizeof(job->error_message), "%s",
             json_string_value(json_object_get(data, "message")) ?: "");
  }
  const char* type = state == CORE_JOB_COMPLETED   ? "completed"
                     : state == CORE_JOB_CANCELLED ? "cancelled"
                                                   : "error";
  net_frame_t* frame = srv_job_event_frame(job, type, data);
  if (frame != NULL) {
    srv_job_broadcast(job, frame, NET_WQ_ESSENTIAL);
    net_frame_unref(job->terminal_frame);
    job->terminal_frame = frame; /* the job keeps it for late joiners */
  }
  if (was_running) {
    ctx->running_count--;
  }
  srv_log(&ctx->log, SRV_LOG_INFO, "job.finished", "s:job_id", job->id,
          "s:state", core_job_state_name(state), "i:previews",
          (int64_t) job->previews_sent, NULL);
  srv_job_persist(job);
  srv_jobs_schedule(ctx);
}


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


json_t* srv_job_artifacts_json(const srv_job_t* job) {
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
  json_t* counts = json_object();
  unsigned n = core_pattern_label_count(job->params.pattern);
  for (unsigned i = 0; i < n; i++) {
    char key[12];
    snprintf(key, sizeof(key), "%u", i);
    json_object_set_new(counts, key,
                        json_integer((json_int_t) job->label_counts[i]));
  }
  return json_pack("{s:I, s:o}", "voxels",
                   (json_int_t) core_shape_voxels(&job->shape), "label_counts",
                   counts);
}


json_t* srv_job_to_json(const srv_job_t* job) {
  const core_job_params_t* p = &job->params;
  json_t* errors = json_array();
  if (job->error_code[0] != '\0') {
    json_array_append_new(
        errors, json_pack("{s:s, s:s}", "code", job->error_code, "message",
                          job->error_message));
  }
  return json_pack(
      "{s:s, s:s, s:{s:f, s:I, s:f, s:I, s:s}, s:{s:o, s:[f,f,f], s:o},"
      " s:o, s:f, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
      "job_id", job->id, "state", core_job_state_name(job->state), "params",
      "preview_hz", p->preview_hz, "preview_scale",
      (json_int_t) p->preview_scale, "duration_s", p->duration_s, "seed",
      (json_int_t) p->seed, "pattern", core_pattern_name(p->pattern), "volume",
      "shape", shape_json(&job->shape), "voxel_size", job->voxel_size[0],
      job->voxel_size[1], job->voxel_size[2], "path",
      job->volume_path != NULL ? json_string(job->volume_path) : json_null(),
      "preview_shape", shape_json(&job->preview_shape), "progress",
      job->progress, "previews_sent", (json_int_t) job->previews_sent,
      "artifacts", srv_job_artifacts_json(job), "stats", stats_json(job),
      "errors", errors, "created_at", time_or_null(job->created_us),
      "updated_at", time_or_null(job->updated_us), "started_at",
      time_or_null(job->started_us), "finished_at",
      time_or_null(job->finished_us));
}


json_t* srv_job_to_record(const srv_job_t* job) {
  json_t* rec = srv_job_to_json(job);
  if (rec == NULL) {
    return NULL;
  }
  json_object_set_new(
      rec, "internal",
      json_pack("{s:I, s:I, s:I, s:I}", "seq", (json_int_t) job->seq,
                "final_preview_seq", (json_int_t) job->final_preview_seq,
                "final_preview_us", (json_int_t) job->final_preview_us,
                "artifact_bytes", (json_int_t) job->artifact_bytes));
  return rec;
}


net_frame_t* srv_job_event_frame(srv_job_t* job,
                                 const char* type,
                                 json_t* data) {
  size_t len = 0;
  char* text =
      core_msg_encode(type, job->id, ++job->seq, srv_now_us(), data, &len);
  if (text == NULL) {
    return NULL;
  }
  net_frame_t* frame = net_frame_ws_text(text, len);
  free(text);
  job->ctx->metrics.events_published++;
  return frame;
}


void srv_job_broadcast(srv_job_t* job, net_frame_t* frame, net_wq_class_t cls) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &job->subscribers) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, sub_link);
    srv_conn_send(conn, frame, cls);
  }
}


net_frame_t* srv_job_preview_for(const srv_job_t* job, core_encoding_t enc) {
  /* zstd is produced only while zstd subscribers exist; a newcomer gets the
   * raw frame until the next preview (both are binary, same envelope). */
  if (job->latest[enc] != NULL) {
    return job->latest[enc];
  }
  return enc == CORE_ENC_ZSTD ? job->latest[CORE_ENC_RAW] : NULL;
}


void srv_job_broadcast_preview(srv_job_t* job) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &job->subscribers) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, sub_link);
    net_frame_t* f = srv_job_preview_for(job, conn->encoding);
    if (f != NULL) {
      srv_conn_send(conn, f, NET_WQ_LATEST_PREVIEW);
    }
  }
}


void srv_job_publish(srv_job_t* job,
                     const char* type,
                     json_t* data,
                     net_wq_class_t cls) {
  net_frame_t* frame = srv_job_event_frame(job, type, data);
  if (frame == NULL) {
    return;
  }
  srv_job_broadcast(job, frame, cls);
  net_frame_unref(frame);
}


void srv_jobs_schedule(srv_ctx_t* ctx) {
  if (ctx->is_stopping) {
    return;
  }
  /* The list is newest first; walk backwards for the oldest queued. */
  for (core_list_t* it = ctx->jobs.prev;
       it != &ctx->jobs && ctx->running_count < ctx->cfg.max_running;
       it = it->prev) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    if (job->state == CORE_JOB_QUEUED) {
      srv_engine_start(job);
    }
  }
}


void srv_job_persist(srv_job_t* job) {
  if (job->ctx->store == NULL) {
    return;
  }
  json_t* rec = srv_job_to_record(job);
  if (rec != NULL) {
    srv_store_save(job->ctx->store, job->id, rec);
    json_decref(rec);
  }
}


static uint64_t preview_bytes(const srv_job_t* job) {
  uint64_t n = 0;
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    n += job->latest[e] != NULL ? job->latest[e]->len : 0;
  }
  return n;
}


/* Only a completed job's final preview can be rendered again exactly. */
static bool is_evictable(const srv_job_t* job) {
  return job->state == CORE_JOB_COMPLETED && job->subscriber_count == 0 &&
         core_list_is_empty(&job->preview_waiters) &&
         job->final_preview_seq != 0 && job->latest[CORE_ENC_BASE64] != NULL;
}


void srv_jobs_trim_previews(srv_ctx_t* ctx) {
  uint64_t held = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->jobs) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    if (is_evictable(job)) {
      held += preview_bytes(job);
    }
  }
  /* Oldest first: the list is newest first, so walk it backwards. */
  for (it = ctx->jobs.prev;
       it != &ctx->jobs && held > ctx->cfg.preview_cache_bytes; it = it->prev) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    if (!is_evictable(job)) {
      continue;
    }
    held -= preview_bytes(job);
    for (int e = 0; e < CORE_ENC_COUNT; e++) {
      net_frame_unref(job->latest[e]);
      job->latest[e] = NULL;
    }
    ctx->metrics.previews_evicted++;
  }
}


static void on_job_timer_closed(uv_handle_t* handle) {
  srv_job_t* job = handle->data;
  if (--job->open_handles > 0) {
    return;
  }
  free(job->volume_path);
  free(job);
}


void srv_jobs_free_all(srv_ctx_t* ctx) {
  while (!core_list_is_empty(&ctx->jobs)) {
    core_list_t* node = core_list_front(&ctx->jobs);
    core_list_remove(node);
    srv_job_t* job = CORE_CONTAINER_OF(node, srv_job_t, link);
    for (int e = 0; e < CORE_ENC_COUNT; e++) {
      net_frame_unref(job->latest[e]);
      job->latest[e] = NULL;
    }
    net_frame_unref(job->terminal_frame);
    job->terminal_frame = NULL;
    uv_close((uv_handle_t*) &job->timer, on_job_timer_closed);
    uv_close((uv_handle_t*) &job->render_timer, on_job_timer_closed);
  }
  ctx->job_count = 0;
}


int srv_job_artifact_path(const srv_job_t* job, char* out, size_t cap) {
  int n = snprintf(out, cap, "%s/artifacts/%s-mask.mrc",
                   job->ctx->cfg.state_dir, job->id);
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}
