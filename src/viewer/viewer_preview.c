/* viewer_preview.c: the preview pipeline of the viewer. The client thread
 * decodes a preview; the main thread only takes its buffer
 * (viewer_preview_take); a worker upsamples it into a full-resolution label
 * volume (viewer_labels_upsample, the server's alignment), counts labels,
 * and hands it back to the main thread, which swaps it in. One upsample
 * runs at a time and only the newest waiting preview is kept, so stale
 * previews are dropped when they come faster than they can be shown. When
 * the job completes, mask.mrc is downloaded and read on a worker and
 * replaces the preview. Main thread, except work_thread(). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "viewer/viewer_job.h"


void viewer_preview_free(cm_preview_t* p) {
  if (p != NULL) {
    cm_free(p->voxels);
    g_free(p);
  }
}


typedef struct {
  viewer_app_t* app;
  uint64_t generation;
  cm_preview_t* preview; /* upsample: the preview; NULL for the final */
  char* path;            /* final mask: the downloaded file */
  core_shape_t shape;
  uint8_t* buf;
  uint64_t counts[256];
  int rc;
  char err[512];
} work_t;


static void work_thread(GTask* task,
                        gpointer source,
                        gpointer data,
                        GCancellable* cancellable) {
  work_t* w = data;
  (void) source;
  (void) cancellable;
  size_t n = (size_t) core_shape_voxels(&w->shape);
  if (w->buf == NULL) {
    w->buf = g_try_malloc(n);
  }
  if (w->buf == NULL) {
    w->rc = -ENOMEM;
    snprintf(w->err, sizeof(w->err), "out of memory for a %zu-byte mask", n);
  } else if (w->preview != NULL) {
    w->rc = viewer_labels_upsample(w->preview->voxels, w->preview->shape,
                                   w->preview->scale, &w->shape, w->buf);
    if (w->rc != 0) {
      snprintf(w->err, sizeof(w->err),
               "preview shape %ux%ux%u at scale %u does not match the volume "
               "%ux%ux%u",
               w->preview->shape[0], w->preview->shape[1], w->preview->shape[2],
               w->preview->scale[0], w->shape.d[0], w->shape.d[1],
               w->shape.d[2]);
    }
  } else {
    w->rc = viewer_labels_read_mrc(w->path, &w->shape, w->buf, w->err,
                                   sizeof(w->err));
  }
  if (w->rc == 0) {
    viewer_labels_histogram(w->buf, n, w->counts);
  }
  g_task_return_boolean(task, TRUE);
}


static void start_work(viewer_app_t* app, work_t* w, GAsyncReadyCallback cb) {
  w->app = app;
  w->generation = app->job->generation;
  w->shape = app->vol.shape;
  GTask* task = g_task_new(NULL, NULL, cb, w);
  g_task_set_task_data(task, w, NULL);
  g_task_run_in_thread(task, work_thread);
  g_object_unref(task);
}


static void install_labels(viewer_app_t* app, work_t* w, bool is_final) {
  g_free(app->spare);
  app->spare = app->labels;
  app->labels = w->buf;
  w->buf = NULL;
  app->is_final_mask = is_final;
  viewer_window_labels_changed(app, w->counts);
}


static void start_upsample(viewer_app_t* app, cm_preview_t* p);


/* --drag-slice-after: one step of the XY slice, as a held arrow key. */
static gboolean drag_step(gpointer user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  uint32_t c[3] = {app->cursor[0], app->cursor[1], app->cursor[2]};
  if (c[0] + 1 < app->vol.shape.d[0]) {
    c[0]++;
  }
  viewer_window_set_cursor(app, c);
  if (++job->drag_steps < VIEWER_DRAG_STEPS) {
    return G_SOURCE_CONTINUE;
  }
  viewer_say("slice drag done (z=%u)", app->cursor[0]);
  job->drag_timer = 0;
  return G_SOURCE_REMOVE;
}


void viewer_preview_shown(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (app->opts.cancel_after > 0 &&
      job->shown == (uint64_t) app->opts.cancel_after) {
    viewer_say("cancelling job %s", job->job_id);
    viewer_job_cancel(app);
  }
  if (app->opts.drag_after > 0 &&
      job->shown == (uint64_t) app->opts.drag_after && job->drag_timer == 0) {
    viewer_say("slice drag from z=%u", app->cursor[0]);
    job->drag_steps = 0;
    job->drag_timer = g_timeout_add(2, drag_step, app);
  }
  if (app->opts.after_previews > 0 &&
      job->shown >= (uint64_t) app->opts.after_previews) {
    viewer_shot_automation(app, "previews shown");
  }
}


static void upsample_done(GObject* source, GAsyncResult* res, gpointer data) {
  work_t* w = data;
  (void) source;
  (void) res;
  viewer_app_t* app = w->app;
  viewer_job_t* job = app->job;
  bool is_current = job != NULL && w->generation == job->generation &&
                    app->has_volume && !job->wants_final;
  if (job != NULL) {
    job->is_worker_busy = false;
  }
  if (is_current && w->rc != 0) {
    job->dropped++;
    g_warning("preview %llu not shown: %s",
              (unsigned long long) w->preview->seq, w->err);
    viewer_window_status(app, w->err);
  } else if (is_current) {
    job->shown++;
    install_labels(app, w, false);
    uint64_t labelled = core_shape_voxels(&w->shape) - w->counts[0];
    viewer_say(
        "preview %llu shown (%llu received, %llu shown, %llu dropped; %llu "
        "voxels labelled)",
        (unsigned long long) w->preview->seq,
        (unsigned long long) job->received, (unsigned long long) job->shown,
        (unsigned long long) job->dropped, (unsigned long long) labelled);
    viewer_job_show_progress(app);
    viewer_preview_shown(app);
  }
  g_free(w->buf);
  viewer_preview_free(w->preview);
  g_free(w);
  if (job != NULL && job->pending != NULL && !job->is_worker_busy) {
    cm_preview_t* next = job->pending;
    job->pending = NULL;
    start_upsample(app, next);
  }
}


static void start_upsample(viewer_app_t* app, cm_preview_t* p) {
  work_t* w = g_new0(work_t, 1);
  w->preview = p;
  w->buf = app->spare; /* same size: the volume has not changed */
  app->spare = NULL;
  app->job->is_worker_busy = true;
  start_work(app, w, upsample_done);
}


static void final_done(GObject* source, GAsyncResult* res, gpointer data) {
  work_t* w = data;
  (void) source;
  (void) res;
  viewer_app_t* app = w->app;
  viewer_job_t* job = app->job;
  if (job != NULL && w->generation == job->generation && app->has_volume) {
    if (w->rc != 0) {
      viewer_say("final mask not shown: %s", w->err);
      viewer_window_status(app, w->err);
    } else {
      install_labels(app, w, true);
      viewer_say("final mask shown (job %s)", job->job_id);
      viewer_window_status(app, "Job completed: the final mask is shown.");
    }
    unlink(w->path);
    viewer_job_ended(app, "final mask");
  }
  g_free(w->buf);
  g_free(w->path);
  g_free(w);
}


typedef struct {
  viewer_app_t* app;
  uint64_t generation;
} download_t;


static void on_downloaded(cm_client_t* client,
                          int status,
                          const cm_reply_t* reply,
                          void* user) {
  download_t* d = user;
  viewer_app_t* app = d->app;
  viewer_job_t* job = app->job;
  bool is_current = job != NULL && d->generation == job->generation;
  (void) client;
  g_free(d);
  if (!is_current || !app->has_volume) {
    return; /* another job or volume since */
  }
  if (status != 0) {
    char* msg = viewer_job_describe(status, reply);
    viewer_say("final mask not downloaded: %s", msg);
    viewer_window_status(app, msg);
    g_free(msg);
    viewer_job_ended(app, "final mask unavailable");
    return;
  }
  work_t* w = g_new0(work_t, 1);
  w->path = g_strdup(job->final_path);
  start_work(app, w, final_done);
}


void viewer_preview_fetch_final(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job->wants_final) {
    return;
  }
  job->wants_final = true;
  viewer_preview_free(job->pending);
  job->pending = NULL;
  if (job->tmp_dir == NULL) {
    job->tmp_dir = g_dir_make_tmp("cryomamba-viewer-XXXXXX", NULL);
  }
  if (job->tmp_dir == NULL) {
    viewer_window_status(app, "Cannot create a temporary directory.");
    viewer_job_ended(app, "final mask unavailable");
    return;
  }
  g_free(job->final_path);
  job->final_path =
      g_strdup_printf("%s/mask-%s.mrc", job->tmp_dir, job->job_id);
  viewer_window_status(app, "Job completed: downloading the final mask…");
  download_t* d = g_new(download_t, 1);
  d->app = app;
  d->generation = job->generation;
  int rc = cm_artifact_download(job->client, job->job_id, NULL, job->final_path,
                                on_downloaded, d);
  if (rc != 0) {
    g_free(d);
    viewer_say("final mask not downloaded: %s", cm_strerror(rc));
    viewer_job_ended(app, "final mask unavailable");
  }
}


void viewer_preview_take(viewer_app_t* app, cm_preview_t* p) {
  viewer_job_t* job = app->job;
  if (!job->is_worker_busy) {
    start_upsample(app, p);
    return;
  }
  if (job->pending != NULL) {
    job->dropped++; /* stale: a newer one replaces it */
    viewer_preview_free(job->pending);
  }
  job->pending = p;
}
