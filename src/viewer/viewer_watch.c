/* viewer_watch.c: the watched job's subscription (cm_sub_*): its events
 * on the connection indicator, the progress bar, the status bar and stdout
 * (the automation's lines), previews handed to viewer_preview.c, and the
 * subscriptions' lifetimes (each freed in its on_closed, or after
 * cm_client_free skipped it). The client and the job's life cycle:
 * viewer_job.c. Main thread (callbacks are dispatched to it). */
#include <stdio.h>
#include <string.h>

#include "viewer/viewer_job.h"

/* ---- subscription callbacks (main thread) ------------------------------ */

static bool is_ours(viewer_app_t* app, cm_sub_t* sub) {
  return app->job != NULL && app->job->sub == sub;
}


static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* user) {
  viewer_app_t* app = user;
  if (!is_ours(app, sub)) {
    return;
  }
  char text[256];
  switch (ev->state) {
  case CM_CONN_CONNECTING:
    viewer_job_set_conn(app, "#c90", "connecting…");
    break;
  case CM_CONN_OPEN:
    viewer_job_set_conn(app, "#3a3", "connected");
    break;
  case CM_CONN_RECONNECTING:
    if (ev->close_code != 0) {
      snprintf(text, sizeof(text), "close code %u", ev->close_code);
    } else {
      snprintf(text, sizeof(text), "%s", cm_strerror(ev->reason));
    }
    viewer_say("connection lost (%s), reconnecting in %.1f s (attempt %u)",
               text, ev->delay_ms / 1000.0, ev->attempt);
    viewer_job_set_conn(app, "#d70", "reconnecting…");
    {
      char* msg = g_strdup_printf(
          "Connection lost (%s): showing the last preview, reconnecting "
          "in %.1f s (attempt %u)",
          text, ev->delay_ms / 1000.0, ev->attempt);
      viewer_window_status(app, msg);
      g_free(msg);
    }
    break;
  case CM_CONN_CLOSED:
    viewer_job_set_conn(app, "#888", "not watching");
    break;
  }
}


static void on_connected(cm_sub_t* sub, const cm_connected_t* ev, void* user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  if (!is_ours(app, sub)) {
    return;
  }
  if (!app->has_volume ||
      memcmp(ev->shape, app->vol.shape.d, sizeof(ev->shape)) != 0) {
    char* msg = g_strdup_printf(
        "Job %s segments a %ux%ux%u volume; the open volume is %ux%ux%u.",
        job->job_id, ev->shape[0], ev->shape[1], ev->shape[2],
        app->vol.shape.d[0], app->vol.shape.d[1], app->vol.shape.d[2]);
    viewer_window_error(app, "This job is for another volume", msg);
    g_free(msg);
    cm_sub_close(sub);
    return;
  }
  job->state = ev->state;
  job->progress = ev->progress;
  if (ev->is_reconnect) {
    viewer_say("reconnected to job %s (state %s, %.1f%%)", job->job_id,
               cm_job_state_name(ev->state), ev->progress * 100);
    viewer_window_status(app, "Reconnected.");
  } else {
    viewer_say("watching job %s (state %s, %.1f%%, preview scale %u)",
               job->job_id, cm_job_state_name(ev->state), ev->progress * 100,
               ev->preview_scale);
  }
  viewer_job_show_progress(app);
  if (ev->state == CM_JOB_COMPLETED) {
    viewer_preview_fetch_final(app);
  }
}


static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* user) {
  viewer_app_t* app = user;
  if (!is_ours(app, sub)) {
    return;
  }
  app->job->state = ev->state;
  app->job->progress = ev->progress;
  app->job->eta_s = ev->eta_s;
  viewer_job_show_progress(app);
}


static void on_job_state(cm_sub_t* sub,
                         const cm_state_change_t* ev,
                         void* user) {
  viewer_app_t* app = user;
  if (!is_ours(app, sub)) {
    return;
  }
  app->job->state = ev->state;
  viewer_say("job %s: %s", app->job->job_id, cm_job_state_name(ev->state));
  viewer_job_show_progress(app);
}


static void on_preview(cm_sub_t* sub, cm_preview_t* ev, void* user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  if (!is_ours(app, sub) || job->wants_final || !app->has_volume) {
    return;
  }
  job->received++;
  cm_preview_t* p = g_new(cm_preview_t, 1);
  *p = *ev;
  p->dtype = NULL;
  ev->voxels = NULL; /* ours now */
  viewer_preview_take(app, p);
}


static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  if (!is_ours(app, sub)) {
    return;
  }
  job->state = ev->state;
  job->progress = ev->progress;
  viewer_say("job %s %s", job->job_id, cm_job_state_name(ev->state));
  viewer_job_show_progress(app);
  if (ev->state == CM_JOB_COMPLETED && app->opts.no_final_mask &&
      app->chunks != NULL) {
    /* Tests: the streamed overlay, complete at the shown slices. */
    viewer_window_status(app, "Job completed: the streamed mask is shown.");
    viewer_job_ended(app, "job completed");
  } else if (ev->state == CM_JOB_COMPLETED) {
    viewer_preview_fetch_final(app);
  } else {
    viewer_window_status(app, "Job cancelled: the last preview stays shown.");
    viewer_job_ended(app, "job cancelled");
  }
}


static void on_chunks(cm_sub_t* sub, const cm_chunks_t* ev, void* user) {
  viewer_app_t* app = user;
  if (is_ours(app, sub)) {
    viewer_overlay_chunks(app, sub, ev);
  }
}


static void on_error(cm_sub_t* sub, const cm_sub_error_t* ev, void* user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  if (!is_ours(app, sub)) {
    return;
  }
  switch (ev->kind) {
  case CM_SUB_ERR_JOB: {
    job->state = CM_JOB_FAILED;
    viewer_say("job failed: %s (%s)", ev->message, ev->code);
    char* msg = g_strdup_printf(
        "Job failed: %s (%s)%s%s. The last preview stays shown.", ev->message,
        ev->code, ev->hint[0] != '\0' ? "; " : "", ev->hint);
    viewer_window_status(app, msg);
    g_free(msg);
    viewer_job_ended(app, "job failed");
    break;
  }
  case CM_SUB_ERR_SERVER:
    viewer_say("server error: %s (%s)", ev->message, ev->code);
    viewer_window_status(app, ev->message);
    break;
  case CM_SUB_ERR_INVALID:
  case CM_SUB_ERR_UNKNOWN:
    g_warning("%s", ev->message);
    break;
  case CM_SUB_ERR_SKIPPED: {
    /* Too large for this client: the job goes on, the overlay keeps the
     * last preview it could show. */
    viewer_say("%s", ev->message);
    char* msg = g_strdup_printf(
        "A preview too large for this viewer was skipped (%s); submit with "
        "a larger preview scale to see them.",
        ev->message);
    viewer_window_status(app, msg);
    g_free(msg);
    break;
  }
  }
}


/* Frees every subscription still held (their on_closed was skipped by
 * cm_client_free, which has returned). */
void viewer_watch_free_subs(viewer_job_t* job) {
  for (guint i = 0; i < job->subs->len; i++) {
    cm_sub_free(g_ptr_array_index(job->subs, i));
  }
  g_ptr_array_set_size(job->subs, 0);
}


static void on_closed(cm_sub_t* sub, int status, void* user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  if (job == NULL) {
    return;
  }
  /* The last callback of a sub of ours, watched or closed by detach(): the
   * library leaves freeing it to us. */
  g_ptr_array_remove_fast(job->subs, sub);
  bool was_watched = job->sub == sub;
  cm_sub_free(sub);
  if (!was_watched) {
    return;
  }
  job->sub = NULL;
  if (status != 0) {
    viewer_say("stopped watching job %s: %s", job->job_id, cm_strerror(status));
    char* msg = g_strdup_printf("Stopped watching job %s: %s", job->job_id,
                                cm_strerror(status));
    viewer_window_status(app, msg);
    g_free(msg);
    viewer_job_set_conn(app, "#d33", "disconnected");
  }
  if (!job->is_finished && !job->wants_final) {
    viewer_job_ended(app, "watch ended");
  }
}


void viewer_watch_start(viewer_app_t* app, const char* job_id) {
  viewer_job_t* job = app->job;
  static const cm_sub_cbs_t cbs = {
      .on_state = on_state,
      .on_connected = on_connected,
      .on_progress = on_progress,
      .on_job_state = on_job_state,
      .on_preview = on_preview,
      .on_finished = on_finished,
      .on_error = on_error,
      .on_chunks = on_chunks,
      .on_closed = on_closed,
  };
  snprintf(job->job_id, sizeof(job->job_id), "%s", job_id);
  cm_sub_options_t so;
  cm_sub_options_init(&so);
  so.encoding = app->opts.encoding >= 0 ? (cm_encoding_t) app->opts.encoding
                : job->has_chunks       ? CM_ENCODING_CHUNKS
                                        : CM_ENCODING_BASE64;
  if (so.encoding == CM_ENCODING_CHUNKS) {
    /* The whole volume at a coarse level (<= 16 MiB, at least the job's
     * preview scale); 0 lets the server take the job's preview scale. */
    uint32_t s = viewer_chunks_pick_scale(&app->vol.shape, job->preview_scale);
    so.scale = s == 1 && job->preview_scale == 0 ? 0 : s;
  }
  static const char* names[] = {"base64", "raw", "zstd", "chunks"};
  viewer_say("subscribing to job %s (encoding %s, scale %u)", job_id,
             names[so.encoding], so.scale);
  job->encoding = so.encoding;
  int rc = cm_sub_start_opts(job->client, job_id, &so, &cbs, app, &job->sub);
  if (rc != 0) {
    job->sub = NULL;
    viewer_window_error(app, "Cannot watch the job", cm_strerror(rc));
    return;
  }
  g_ptr_array_add(job->subs, job->sub);
  job->has_job = true;
  viewer_overlay_sub_started(app);
  gtk_editable_set_text(GTK_EDITABLE(app->attach_entry), job_id);
  viewer_job_show_progress(app);
}
