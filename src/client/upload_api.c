/* upload_api.c: the public cm_upload_* calls. Start copies the options
 * and posts the upload to the client thread, where its first step waits a
 * zero timer (no callback before cm_upload_start returns); pause, resume
 * and cancel post commands that hold a reference until they ran; free
 * drops the application's reference; client stop ends every upload,
 * keeping its record. The driver: upload.c. Any thread, except what runs
 * on the loop (do_start, run_cmd, client_uploads_stop_all). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/upload_int.h"

#define MIN_CHUNK ((uint64_t) 64 << 10)
#define MAX_CHUNK ((uint64_t) 1 << 30)


const char* cm_upload_phase_name(cm_upload_phase_t phase) {
  switch (phase) {
  case CM_UPLOAD_STARTING:
    return "starting";
  case CM_UPLOAD_HASHING:
    return "hashing";
  case CM_UPLOAD_UPLOADING:
    return "uploading";
  case CM_UPLOAD_COMPLETING:
    return "completing";
  case CM_UPLOAD_PAUSED:
    return "paused";
  case CM_UPLOAD_RETRYING:
    return "retrying";
  case CM_UPLOAD_DONE:
    return "done";
  }
  return "unknown";
}


void cm_upload_options_init(cm_upload_options_t* o) {
  memset(o, 0, sizeof(*o));
  o->parallel = 1;
  o->chunk_bytes = (uint64_t) 16 << 20;
  o->checksum = CM_CHECKSUM_SHA256;
  o->hash_first = true;
  o->max_retries = 10;
  o->retry_initial_ms = 500;
  o->retry_max_ms = 30000;
  o->resume = true;
  o->progress_interval_ms = 200;
}


/* ---- commands from the application ---- */

static void do_start(void* arg) {
  cm_upload_t* up = arg;
  cm_client_t* client = up->client;
  uv_timer_init(&client->loop, &up->timer);
  up->timer.data = up;
  core_list_push_back(&client->uploads, &up->node);
  if (client->is_stopped) {
    up_set_over(up, UV_ECANCELED, NULL, true);
  } else if (atomic_load(&up->is_user_cancelled)) {
    up->is_cancelling = true;
  }
  /* The first step waits a zero timer: no callback before
   * cm_upload_start() returns. */
  up_kick(up);
}


static int check_opts(const cm_upload_options_t* o) {
  if (o == NULL || o->path == NULL || o->path[0] == '\0' ||
      strlen(o->path) >= 4096 ||
      (o->filename != NULL && strlen(o->filename) >= 256) ||
      o->parallel > UPLOAD_RECORD_MAX_PARTS ||
      (o->chunk_bytes != 0 &&
       (o->chunk_bytes < MIN_CHUNK || o->chunk_bytes > MAX_CHUNK)) ||
      (unsigned) o->checksum > CM_CHECKSUM_NONE ||
      (o->resume_dir != NULL && strlen(o->resume_dir) >= 4000)) {
    return CM_EBADARG;
  }
  return 0;
}


int cm_upload_start(cm_client_t* client,
                    const cm_upload_options_t* opts,
                    const cm_upload_cbs_t* cbs,
                    void* user_data,
                    cm_upload_t** out) {
  int err = check_opts(opts);
  if (err != 0) {
    return err;
  }
  cm_upload_t* up = calloc(1, sizeof(*up));
  if (up == NULL) {
    return -ENOMEM;
  }
  up->client = client;
  up->opts = *opts;
  up->opts.parallel = opts->parallel == 0 ? 1 : opts->parallel;
  if (opts->chunk_bytes == 0) {
    up->opts.chunk_bytes = (uint64_t) 16 << 20;
  }
  if (up->opts.retry_initial_ms == 0) {
    up->opts.retry_initial_ms = 1;
  }
  if (up->opts.retry_max_ms < up->opts.retry_initial_ms) {
    up->opts.retry_max_ms = up->opts.retry_initial_ms;
  }
  snprintf(up->path, sizeof(up->path), "%s", opts->path);
  const char* base = strrchr(opts->path, '/');
  base = base != NULL ? base + 1 : opts->path;
  snprintf(up->filename, sizeof(up->filename), "%s",
           opts->filename != NULL ? opts->filename : base);
  if (opts->resume && opts->resume_dir != NULL) {
    snprintf(up->resume_dir, sizeof(up->resume_dir), "%s", opts->resume_dir);
  } else if (opts->resume && upload_record_default_dir(
                                 getenv("XDG_STATE_HOME"), getenv("HOME"),
                                 up->resume_dir, sizeof(up->resume_dir)) != 0) {
    up->resume_dir[0] = '\0'; /* nowhere to keep records: none */
  }
  up->opts.resume = opts->resume && up->resume_dir[0] != '\0';
  up->opts.path = up->path;
  up->opts.filename = up->filename;
  up->opts.resume_dir = up->resume_dir;
  /* The record's key is the first URL (the cluster as the user names
   * it); the upload starts on the server new requests try first. */
  client_servers_key(&client->servers.v[0], up->server, sizeof(up->server));
  up->srv = client_servers_first(&client->servers);
  if (cbs != NULL) {
    up->cbs = *cbs;
  }
  up->user_data = user_data;
  up->fd = -1;
  up->phase = CM_UPLOAD_STARTING;
  core_list_init(&up->node);
  core_list_init(&up->reqs);
  atomic_init(&up->refs, 2); /* the application's and the loop side's */
  atomic_init(&up->is_user_cancelled, false);
  atomic_init(&up->is_finished, false);
  pthread_mutex_init(&up->shared.mu, NULL);
  if (up_done_ev_alloc(up) != 0) {
    pthread_mutex_destroy(&up->shared.mu);
    free(up);
    return -ENOMEM;
  }
  up->shared.info.streams = 1;
  *out = up;
  err = client_post(client, do_start, up);
  if (err != 0) {
    *out = NULL;
    up_unref(up);
    up_unref(up);
  }
  return err;
}


typedef enum {
  CMD_PAUSE,
  CMD_RESUME,
  CMD_CANCEL
} cmd_kind_t;

typedef struct {
  cm_upload_t* up;
  cmd_kind_t kind;
} cmd_t;


static void run_cmd(void* arg) {
  cmd_t* c = arg;
  cm_upload_t* up = c->up;
  bool is_live =
      core_list_is_linked(&up->node) && !up->is_over && !up->is_cancelling;
  if (is_live) {
    switch (c->kind) {
    case CMD_PAUSE:
      if (!up->is_paused) {
        up->is_paused = true;
        up->is_pause_told = false;
        up_stop_waiting(up);
        up_http_abort_all(up);
      }
      break;
    case CMD_RESUME:
      if (up->is_paused) {
        up->is_paused = false;
        /* What the aborted requests left is for HEAD to say. */
        for (unsigned i = 0; i < up->stream_count; i++) {
          if (up->streams[i].url[0] != '\0') {
            up->streams[i].is_known = false;
          }
        }
        up->attempts_in_row = 0;
      }
      break;
    case CMD_CANCEL:
      up->is_cancelling = true;
      up_stop_waiting(up);
      up_http_abort_all(up);
      break;
    }
    up_advance(up);
  }
  up_unref(up); /* the command's reference */
  free(c);
}


static void post_cmd(cm_upload_t* up, cmd_kind_t kind) {
  if (up == NULL || atomic_load(&up->is_finished)) {
    return; /* nothing left to control, and the client may be gone */
  }
  cmd_t* c = malloc(sizeof(*c));
  if (c == NULL) {
    return;
  }
  c->up = up;
  c->kind = kind;
  /* The command keeps the memory until it ran, even if the application
   * frees the upload (after on_done) in the meantime. */
  atomic_fetch_add(&up->refs, 1);
  if (client_post(up->client, run_cmd, c) != 0) {
    up_unref(up);
    free(c);
  }
}


void cm_upload_pause(cm_upload_t* up) {
  post_cmd(up, CMD_PAUSE);
}


void cm_upload_resume(cm_upload_t* up) {
  post_cmd(up, CMD_RESUME);
}


void cm_upload_cancel(cm_upload_t* up) {
  if (up != NULL && !atomic_exchange(&up->is_user_cancelled, true)) {
    post_cmd(up, CMD_CANCEL);
  }
}


void cm_upload_free(cm_upload_t* up) {
  if (up == NULL) {
    return;
  }
  assert(atomic_load(&up->is_finished) && "cm_upload_free before on_done");
  up_unref(up);
}


void client_uploads_stop_all(cm_client_t* client) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &client->uploads) {
    cm_upload_t* up = CORE_CONTAINER_OF(it, cm_upload_t, node);
    if (!up->is_ending) {
      up_set_over(up, UV_ECANCELED, NULL, true);
      up_advance(up);
    }
  }
}
