/* rest_int.h: the REST request machinery (rest.c) under the public calls
 * (rest_api.c): which route, with what, run async on the client's loop or
 * sync on a private loop of the calling thread. Private to libcryomamba. */
#ifndef CLIENT_REST_INT_H
#define CLIENT_REST_INT_H

#include "client/client_int.h"

typedef enum {
  REST_HEALTH,
  REST_INFO,
  REST_CREATE,
  REST_GET,
  REST_LIST,
  REST_CANCEL,
  REST_PREVIEW,
  REST_DOWNLOAD,
  REST_VOL_LIST,
  REST_VOL_GET,
  REST_VOL_DELETE
} rest_kind_t;

/* A request's arguments; what each kind uses. */
typedef struct {
  const char* id; /* job or volume id */
  const cm_job_spec_t* spec;
  const char* name; /* artifact */
  const char* path; /* download destination */
  const char* cursor;
  unsigned limit;
} rest_args_t;

/* Starts the request on the client's loop; cb gets the reply there
 * (client_deliver). 0, or a negative CM_E* error (cb not called). */
int client_rest_async(cm_client_t* client,
                      rest_kind_t kind,
                      const rest_args_t* args,
                      cm_reply_cb cb,
                      void* user_data);

/* Runs the request to its end on a private loop of the calling thread;
 * `out` is the caller's (cm_reply_clear). The status. */
int client_rest_sync(cm_client_t* client,
                     rest_kind_t kind,
                     const rest_args_t* args,
                     cm_reply_t* out);

#endif
