/* viewer_job.h: what viewer_job.c (client, job), viewer_watch.c (its
 * subscription), viewer_server.c (server checks, engines),
 * viewer_upload.c (the volume's upload) and viewer_preview.c (previews and
 * the final mask onto the overlay) share. Main thread only. */
#ifndef VIEWER_JOB_H
#define VIEWER_JOB_H

#include "viewer/viewer_app.h"

typedef struct viewer_upload_s viewer_upload_t; /* viewer_upload.c */

/* An engine of GET /v1/server/info. Strings owned. */
typedef struct {
  char* name;
  char* description;
  bool needs_volume;
} viewer_engine_t;

struct viewer_job_s {
  viewer_app_t* app;
  cm_client_t* client;
  cm_sub_t* sub;   /* the watched one, or NULL */
  GPtrArray* subs; /* every sub not yet freed: watched or closing */
  char job_id[40];
  bool has_job;
  bool is_finished;
  cm_job_state_t state;
  double progress;
  double eta_s;
  uint64_t received, shown, dropped;
  uint64_t generation; /* bumped per job: late worker results are dropped */
  cm_preview_t* pending;
  bool is_worker_busy;
  bool wants_final;       /* the final mask is on its way: previews are moot */
  cm_encoding_t encoding; /* the watched subscription's */
  uint32_t preview_scale; /* the submitted job's, 0: unknown (attach) */
  viewer_throttle_t throttle; /* views of the watched sub */
  guint view_timer;           /* a coalesced view waits, or 0 */
  uint64_t plane_chunks;      /* plane-level chunks received */
  guint drag_timer;           /* --drag-slice-after running, or 0 */
  int drag_steps;
  char* tmp_dir;
  char* final_path;

  viewer_upload_t* upload;    /* the submission's running upload, or NULL */
  GPtrArray* uploads;         /* every viewer_upload_t not yet freed */
  bool is_upload_unsupported; /* the server answered 404/405: shape only */
  bool is_submit_pending;     /* --submit waits for the server check */
  bool is_server_checked;     /* the first check (or the last) is done */
  uint64_t check_generation;  /* bumped per check: older answers dropped */
  GPtrArray* engines;     /* viewer_engine_t*, from the server; NULL: unknown */
  bool has_chunks;        /* capabilities list encodings:...,chunks */
  bool is_attach_pending; /* --attach waits for the server check */
};

/* viewer_job.c */
/* The client (own thread, callbacks dispatched to the main thread),
 * created on first use. Returns 0 or an error (already shown). */
int viewer_job_ensure_client(viewer_app_t* app);

/* Creates the job with the panel's parameters, on uploaded volume
 * `volume_id`, or (NULL) on the open volume's shape and voxel size. */
void viewer_job_create(viewer_app_t* app, const char* volume_id);

/* The connection indicator in the header bar. */
void viewer_job_set_conn(viewer_app_t* app,
                         const char* colour,
                         const char* text);

/* viewer_watch.c */
/* Subscribes to job `job_id` and shows its events. */
void viewer_watch_start(viewer_app_t* app, const char* job_id);
/* Frees every subscription still held; only after cm_client_free(). */
void viewer_watch_free_subs(viewer_job_t* job);

/* viewer_server.c */
const char* viewer_server_url(const viewer_app_t* app);
const char* viewer_server_token(const viewer_app_t* app); /* NULL: none */

/* Checks the server (health, token, engines) on a worker; then updates the
 * indicator and the engines, and runs a pending --submit. */
void viewer_server_check(viewer_app_t* app);

/* viewer_upload.c */
/* Uploads the open volume's file; on success creates the job on it
 * (viewer_job_create), on 404/405 falls back to the shape. Returns 0 or
 * an error (shown). */
int viewer_upload_start(viewer_app_t* app);
/* The Cancel button while uploading: true if an upload was running. */
bool viewer_upload_cancel(viewer_app_t* app);
/* The submission is dropped (another volume, another server): no job
 * follows; `cancel` also ends it on the server, else the client's stop
 * keeps its resume record. */
void viewer_upload_abandon(viewer_app_t* app, bool cancel);
/* Frees every upload; only after cm_client_free() returned. */
void viewer_upload_free_all(viewer_job_t* job);

/* Progress bar, job label and Cancel button from the job's state. */
void viewer_job_show_progress(viewer_app_t* app);

/* The job (or its watch) ended: `why` names it for the automation. */
void viewer_job_ended(viewer_app_t* app, const char* why);

/* A sentence for a failed REST call (g_free it). */
char* viewer_job_describe(int status, const cm_reply_t* reply);

/* Takes a decoded preview (owned, voxels included) into the pipeline:
 * upsampled on a worker now, or kept as the one pending preview (a stale
 * pending one is dropped). */
void viewer_preview_take(viewer_app_t* app, cm_preview_t* preview);

/* The job completed: downloads mask.mrc and shows it instead of previews. */
void viewer_preview_fetch_final(viewer_app_t* app);

/* A preview (or a complete delta) was shown: the automation's counts
 * (--cancel-after-previews, --after-previews, --drag-slice-after). */
void viewer_preview_shown(viewer_app_t* app);

/* viewer_overlay.c */
/* A chunks subscription's delta (on_chunks, the library's masks valid):
 * copied into app->chunks, the changed parts of the slices redrawn. */
void viewer_overlay_chunks(viewer_app_t* app,
                           cm_sub_t* sub,
                           const cm_chunks_t* ev);
/* A new watched subscription: its first view goes out at once. */
void viewer_overlay_sub_started(viewer_app_t* app);

/* Frees a preview taken by viewer_preview_take. NULL-safe. */
void viewer_preview_free(cm_preview_t* preview);

#endif
