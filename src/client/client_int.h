/* client_int.h: libcryomamba's internals shared by client.c (lifecycle,
 * threads, delivery), rest.c (REST requests) and the subscription files
 * (sub.c, sub_parse.c, sub_deliver.c; their own share is sub_int.h).
 * The loop and everything on it belong to the client thread; other threads
 * reach it only through client_post(). */
#ifndef CLIENT_CLIENT_INT_H
#define CLIENT_CLIENT_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "client/servers.h"
#include "core/list.h"
#include "cryomamba/client.h"

/* Outlives the client while dispatched callbacks are queued elsewhere: a
 * callback whose client is gone is skipped (its memory still freed). */
typedef struct {
  atomic_int refs;
  atomic_bool is_alive;
} client_life_t;

struct cm_client_s {
  uv_loop_t loop;
  uv_async_t async; /* wakes the loop for posted commands */
  pthread_mutex_t mu;
  core_list_t cmds; /* client_cmd_t, guarded by mu */
  pthread_t thread;
  bool has_thread;
  bool is_stopped; /* loop side: stop ran; no new work starts */
  atomic_bool is_stopping;
  client_life_t* life;
  core_list_t subs;    /* cm_sub_t on the loop */
  core_list_t reqs;    /* REST requests on the loop */
  core_list_t uploads; /* cm_upload_t on the loop */
  /* Options, copied. REST, subscriptions and uploads all use `servers`
   * (each request or subscription knows which of them it is on). */
  client_servers_t servers;
  struct ssl_ctx_st* tls_ctx; /* when any server is TLS: shared by every
                                 connection (immutable, any thread); owned */
  char auth_header[1100];     /* "Authorization: Bearer ...\r\n" or "" */
  cm_client_options_t opts;
};

/* Runs fn(arg) on the client thread: at once when the client has no
 * thread of its own, else queued and woken. Returns 0 or -ENOMEM. */
int client_post(cm_client_t* client, void (*fn)(void*), void* arg);

/* Hands a callback to the application: through options.dispatch, else
 * directly. run(arg) must call the user (if client_life_is_alive) and free
 * arg; it receives the life reference to release with client_life_unref. */
void client_deliver(cm_client_t* client, void (*run)(void*), void* arg);

client_life_t* client_life_ref(cm_client_t* client);
void client_life_unref(client_life_t* life);
bool client_life_is_alive(const client_life_t* life);

/* Logs through options.log (printf-style); no-op without one. */
void client_log(const cm_client_t* client,
                cm_log_level_t level,
                const char* fmt,
                ...) __attribute__((format(printf, 3, 4)));

/* Parses http[s]://host[:port][/prefix] (or ws[s]://) into host, port
 * (80, 443 for https), prefix and whether it is TLS. Returns 0 or
 * CM_EBADURL. */
int client_parse_url(const char* url,
                     char* host,
                     size_t host_len,
                     uint16_t* port,
                     char* prefix,
                     size_t prefix_len,
                     bool* is_tls);

/* sub.c, rest.c, upload.c: close everything on the loop (client stop). */
void client_subs_stop_all(cm_client_t* client);
void client_reqs_abort_all(cm_client_t* client);
void client_uploads_stop_all(cm_client_t* client);

/* rest_parse.c: a job object / a volume object into `out`; false when it
 * is not one (no valid id). */
bool client_parse_job(const json_t* obj, cm_job_t* out);
bool client_parse_volume(const json_t* obj, cm_volume_t* out);

/* rest_parse.c: the error envelope in `root` (may be NULL) into r's error
 * fields, for r->http_status; returns the status code for it
 * (CM_EUNAUTHORIZED, CM_ENOTFOUND, CM_ECONFLICT or CM_EHTTP). */
int client_parse_error(cm_reply_t* r, const json_t* root);

/* rest_parse.c: a listing (GET /v1/jobs or /v1/volumes) into r->jobs or
 * r->volumes, next_cursor and total. Returns 0, CM_EPROTO or -ENOMEM. */
int client_parse_listing(cm_reply_t* r, const json_t* root, bool volumes);

/* Maps a state name to the enum (CM_JOB_UNKNOWN when not known). */
cm_job_state_t client_job_state_parse(const char* name);

#endif
