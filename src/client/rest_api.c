/* rest_api.c: libcryomamba's REST calls (cryomamba.h), each one route of
 * protocol v1 with its arguments, async (answered on the client's loop) or
 * *_sync, over the request machinery of rest.c (rest_int.h). */
#include <string.h>

#include "client/rest_int.h"


void cm_job_spec_init(cm_job_spec_t* spec) {
  memset(spec, 0, sizeof(*spec));
  spec->duration_s = -1;
  spec->seed = -1;
}


int cm_health(cm_client_t* client, cm_reply_cb cb, void* user_data) {
  return client_rest_async(client, REST_HEALTH, &(rest_args_t){0}, cb,
                           user_data);
}


int cm_server_info(cm_client_t* client, cm_reply_cb cb, void* user_data) {
  return client_rest_async(client, REST_INFO, &(rest_args_t){0}, cb, user_data);
}


int cm_job_create(cm_client_t* client,
                  const cm_job_spec_t* spec,
                  cm_reply_cb cb,
                  void* user_data) {
  return client_rest_async(client, REST_CREATE, &(rest_args_t){.spec = spec},
                           cb, user_data);
}


int cm_job_get(cm_client_t* client,
               const char* job_id,
               cm_reply_cb cb,
               void* user_data) {
  return client_rest_async(client, REST_GET, &(rest_args_t){.id = job_id}, cb,
                           user_data);
}


int cm_job_list(cm_client_t* client, cm_reply_cb cb, void* user_data) {
  return client_rest_async(client, REST_LIST, &(rest_args_t){0}, cb, user_data);
}


int cm_job_cancel(cm_client_t* client,
                  const char* job_id,
                  cm_reply_cb cb,
                  void* user_data) {
  return client_rest_async(client, REST_CANCEL, &(rest_args_t){.id = job_id},
                           cb, user_data);
}


int cm_preview_get(cm_client_t* client,
                   const char* job_id,
                   cm_reply_cb cb,
                   void* user_data) {
  return client_rest_async(client, REST_PREVIEW, &(rest_args_t){.id = job_id},
                           cb, user_data);
}


int cm_artifact_download(cm_client_t* client,
                         const char* job_id,
                         const char* name,
                         const char* path,
                         cm_reply_cb cb,
                         void* user_data) {
  rest_args_t a = {.id = job_id, .name = name, .path = path};
  return client_rest_async(client, REST_DOWNLOAD, &a, cb, user_data);
}


int cm_volume_list(cm_client_t* client,
                   const char* cursor,
                   unsigned limit,
                   cm_reply_cb cb,
                   void* user_data) {
  rest_args_t a = {.cursor = cursor, .limit = limit};
  return client_rest_async(client, REST_VOL_LIST, &a, cb, user_data);
}


int cm_volume_get(cm_client_t* client,
                  const char* volume_id,
                  cm_reply_cb cb,
                  void* user_data) {
  return client_rest_async(client, REST_VOL_GET,
                           &(rest_args_t){.id = volume_id}, cb, user_data);
}


int cm_volume_delete(cm_client_t* client,
                     const char* volume_id,
                     cm_reply_cb cb,
                     void* user_data) {
  return client_rest_async(client, REST_VOL_DELETE,
                           &(rest_args_t){.id = volume_id}, cb, user_data);
}


int cm_health_sync(cm_client_t* client, cm_reply_t* out) {
  return client_rest_sync(client, REST_HEALTH, &(rest_args_t){0}, out);
}


int cm_server_info_sync(cm_client_t* client, cm_reply_t* out) {
  return client_rest_sync(client, REST_INFO, &(rest_args_t){0}, out);
}


int cm_job_create_sync(cm_client_t* client,
                       const cm_job_spec_t* spec,
                       cm_reply_t* out) {
  return client_rest_sync(client, REST_CREATE, &(rest_args_t){.spec = spec},
                          out);
}


int cm_job_get_sync(cm_client_t* client, const char* job_id, cm_reply_t* out) {
  return client_rest_sync(client, REST_GET, &(rest_args_t){.id = job_id}, out);
}


int cm_job_list_sync(cm_client_t* client, cm_reply_t* out) {
  return client_rest_sync(client, REST_LIST, &(rest_args_t){0}, out);
}


int cm_job_cancel_sync(cm_client_t* client,
                       const char* job_id,
                       cm_reply_t* out) {
  return client_rest_sync(client, REST_CANCEL, &(rest_args_t){.id = job_id},
                          out);
}


int cm_preview_get_sync(cm_client_t* client,
                        const char* job_id,
                        cm_reply_t* out) {
  return client_rest_sync(client, REST_PREVIEW, &(rest_args_t){.id = job_id},
                          out);
}


int cm_artifact_download_sync(cm_client_t* client,
                              const char* job_id,
                              const char* name,
                              const char* path,
                              cm_reply_t* out) {
  rest_args_t a = {.id = job_id, .name = name, .path = path};
  return client_rest_sync(client, REST_DOWNLOAD, &a, out);
}


int cm_volume_list_sync(cm_client_t* client,
                        const char* cursor,
                        unsigned limit,
                        cm_reply_t* out) {
  rest_args_t a = {.cursor = cursor, .limit = limit};
  return client_rest_sync(client, REST_VOL_LIST, &a, out);
}


int cm_volume_get_sync(cm_client_t* client,
                       const char* volume_id,
                       cm_reply_t* out) {
  return client_rest_sync(client, REST_VOL_GET, &(rest_args_t){.id = volume_id},
                          out);
}


int cm_volume_delete_sync(cm_client_t* client,
                          const char* volume_id,
                          cm_reply_t* out) {
  return client_rest_sync(client, REST_VOL_DELETE,
                          &(rest_args_t){.id = volume_id}, out);
}
