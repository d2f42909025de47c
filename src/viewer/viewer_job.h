/* viewer_job.h: what viewer_job.c (server, job, subscription) and
 * viewer_preview.c (previews and the final mask onto the overlay) share.
 * Main thread only. */
#ifndef VIEWER_JOB_H
#define VIEWER_JOB_H

#include "viewer/viewer_app.h"

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
  bool wants_final; /* the final mask is on its way: previews are moot */
  char* tmp_dir;
  char* final_path;
};

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

/* Frees a preview taken by viewer_preview_take. NULL-safe. */
void viewer_preview_free(cm_preview_t* preview);

#endif
