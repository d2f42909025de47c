/* rest_parse.c: server answers into the public structs: the job object,
 * the volume object (docs/protocol.md 2.8) and the error envelope. Used by
 * rest.c and the uploads (upload_http_reply.c). Pure: no I/O, any thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "core/uuid.h"


static void copy_str(char* dst, size_t cap, const json_t* v) {
  const char* s = json_string_value(v);
  snprintf(dst, cap, "%s", s != NULL ? s : "");
}


static void get_triple_u32(const json_t* arr, uint32_t out[3]) {
  for (size_t i = 0; i < 3; i++) {
    json_t* v = json_array_get(arr, i);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
    out[i] = n > 0 && n <= UINT32_MAX ? (uint32_t) n : 0;
  }
}


static void get_triple_f64(const json_t* arr, double out[3]) {
  for (size_t i = 0; i < 3; i++) {
    out[i] = json_number_value(json_array_get(arr, i));
  }
}


static bool is_uuid(const json_t* v) {
  return json_is_string(v) &&
         core_uuid_is_valid(json_string_value(v), json_string_length(v));
}


bool client_parse_job(const json_t* obj, cm_job_t* job) {
  memset(job, 0, sizeof(*job));
  const json_t* id = json_object_get(obj, "job_id");
  if (!is_uuid(id)) {
    return false;
  }
  copy_str(job->job_id, sizeof(job->job_id), id);
  job->state =
      client_job_state_parse(json_string_value(json_object_get(obj, "state")));
  job->progress = json_number_value(json_object_get(obj, "progress"));
  const json_t* volume = json_object_get(obj, "volume");
  get_triple_u32(json_object_get(volume, "shape"), job->shape);
  get_triple_f64(json_object_get(volume, "voxel_size"), job->voxel_size);
  /* The volume's id, where the server names it (top level or in volume). */
  const json_t* vid = json_object_get(obj, "volume_id");
  if (!is_uuid(vid)) {
    vid = json_object_get(volume, "volume_id");
  }
  if (is_uuid(vid)) {
    copy_str(job->volume_id, sizeof(job->volume_id), vid);
  }
  get_triple_u32(json_object_get(obj, "preview_shape"), job->preview_shape);
  const json_t* params = json_object_get(obj, "params");
  job->preview_hz = json_number_value(json_object_get(params, "preview_hz"));
  json_int_t scale =
      json_integer_value(json_object_get(params, "preview_scale"));
  job->preview_scale = scale > 0 && scale <= 16 ? (uint32_t) scale : 0;
  job->duration_s = json_number_value(json_object_get(params, "duration_s"));
  job->seed = json_integer_value(json_object_get(params, "seed"));
  copy_str(job->pattern, sizeof(job->pattern),
           json_object_get(params, "pattern"));
  json_int_t sent = json_integer_value(json_object_get(obj, "previews_sent"));
  job->previews_sent = sent > 0 ? (uint64_t) sent : 0;
  const json_t* art = json_array_get(json_object_get(obj, "artifacts"), 0);
  json_int_t bytes = json_integer_value(json_object_get(art, "bytes"));
  job->artifact_bytes = bytes > 0 ? (uint64_t) bytes : 0;
  copy_str(job->created_at, sizeof(job->created_at),
           json_object_get(obj, "created_at"));
  copy_str(job->updated_at, sizeof(job->updated_at),
           json_object_get(obj, "updated_at"));
  const json_t* err = json_array_get(json_object_get(obj, "errors"), 0);
  copy_str(job->error_code, sizeof(job->error_code),
           json_object_get(err, "code"));
  copy_str(job->error_message, sizeof(job->error_message),
           json_object_get(err, "message"));
  return true;
}


bool client_parse_volume(const json_t* obj, cm_volume_t* vol) {
  memset(vol, 0, sizeof(*vol));
  const json_t* id = json_object_get(obj, "volume_id");
  const json_t* sha = json_object_get(obj, "sha256");
  if (!is_uuid(id) || !json_is_string(sha) || json_string_length(sha) != 64) {
    return false;
  }
  copy_str(vol->volume_id, sizeof(vol->volume_id), id);
  copy_str(vol->sha256, sizeof(vol->sha256), sha);
  get_triple_u32(json_object_get(obj, "shape"), vol->shape);
  get_triple_f64(json_object_get(obj, "voxel_size"), vol->voxel_size);
  get_triple_f64(json_object_get(obj, "origin"), vol->origin);
  vol->mode = (int32_t) json_integer_value(json_object_get(obj, "mode"));
  json_int_t size = json_integer_value(json_object_get(obj, "size_bytes"));
  vol->size_bytes = size > 0 ? (uint64_t) size : 0;
  copy_str(vol->filename, sizeof(vol->filename),
           json_object_get(obj, "filename"));
  copy_str(vol->created_at, sizeof(vol->created_at),
           json_object_get(obj, "created_at"));
  return true;
}


int client_parse_error(cm_reply_t* r, const json_t* root) {
  const json_t* e = json_object_get(root, "error");
  copy_str(r->error_code, sizeof(r->error_code), json_object_get(e, "code"));
  copy_str(r->error_message, sizeof(r->error_message),
           json_object_get(e, "message"));
  copy_str(r->error_hint, sizeof(r->error_hint), json_object_get(e, "hint"));
  r->is_retryable = json_is_true(json_object_get(e, "retryable"));
  if (r->error_code[0] == '\0') {
    snprintf(r->error_code, sizeof(r->error_code), "http_%d", r->http_status);
  }
  if (r->error_message[0] == '\0') {
    snprintf(r->error_message, sizeof(r->error_message),
             "the server answered HTTP %d", r->http_status);
  }
  switch (r->http_status) {
  case 401:
    return CM_EUNAUTHORIZED;
  case 404:
    return CM_ENOTFOUND;
  case 409:
    return CM_ECONFLICT;
  default:
    return CM_EHTTP;
  }
}


/* Fills reply->jobs or reply->volumes from a listing's array `key`. */
static int parse_list(cm_reply_t* r, const json_t* root, bool volumes) {
  const json_t* arr = json_object_get(root, volumes ? "volumes" : "jobs");
  if (!json_is_array(arr)) {
    return CM_EPROTO;
  }
  const json_t* cursor = json_object_get(root, "next_cursor");
  if (is_uuid(cursor)) {
    copy_str(r->next_cursor, sizeof(r->next_cursor), cursor);
  }
  json_int_t total = json_integer_value(json_object_get(root, "total"));
  r->total = total > 0 ? (size_t) total : 0;
  size_t n = json_array_size(arr);
  if (n == 0) {
    return 0;
  }
  size_t item = volumes ? sizeof(cm_volume_t) : sizeof(cm_job_t);
  void* items = calloc(n, item);
  if (items == NULL) {
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    bool ok = volumes ? client_parse_volume(json_array_get(arr, i),
                                            (cm_volume_t*) items + i)
                      : client_parse_job(json_array_get(arr, i),
                                         (cm_job_t*) items + i);
    if (!ok) {
      free(items);
      return CM_EPROTO;
    }
  }
  if (volumes) {
    r->volumes = items;
    r->volume_count = n;
  } else {
    r->jobs = items;
    r->job_count = n;
  }
  return 0;
}


int client_parse_listing(cm_reply_t* r, const json_t* root, bool volumes) {
  return json_is_object(root) ? parse_list(r, root, volumes) : CM_EPROTO;
}
