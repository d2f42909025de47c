/* viewer_upload.c: the first step of Submit: the open volume's file
 * becomes a server volume (cm_upload_*: hashed and read on the library's
 * pool, resumable, deduplicated by sha256), with its progress on the job
 * panel's bar, Cancel, and the outcome: a job on the volume
 * (viewer_job_create), the shape only when the server takes no uploads
 * (404/405), or a dialog. Lifetimes: a viewer_upload_t lives from
 * cm_upload_start to its on_done (which frees both), or, when
 * cm_client_free skipped on_done, until viewer_upload_free_all(). One that
 * is abandoned (another volume opened) still runs to its on_done, which
 * then creates nothing. Main thread (callbacks are dispatched to it). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "viewer/viewer_job.h"

/* UV_ECANCELED: on_done after cm_upload_cancel (libuv: -errno on Unix). */
#define CANCELLED (-ECANCELED)

struct viewer_upload_s {
  viewer_app_t* app;
  cm_upload_t* up;
  char* path;          /* owned */
  bool is_abandoned;   /* no job follows; nothing is shown */
  bool is_cancelled;   /* by the Cancel button */
  bool is_resume_told; /* "resuming at" said */
  bool is_trigger_done;
  cm_upload_phase_t phase; /* the last one shown */
  bool has_phase;
};


static void set_bar(viewer_app_t* app, double fraction, const char* text) {
  gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app->progress_bar),
                                fraction < 0   ? 0
                                : fraction > 1 ? 1
                                               : fraction);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), text);
}


/* The panel without an upload or a job. */
static void panel_idle(viewer_app_t* app, const char* text) {
  set_bar(app, 0, text);
  gtk_button_set_label(GTK_BUTTON(app->cancel_button), "Cancel job");
  gtk_widget_set_sensitive(app->cancel_button, FALSE);
  gtk_widget_set_sensitive(app->submit_button, app->has_volume);
}


static double part(uint64_t n, uint64_t total) {
  return total > 0 ? (double) n / (double) total : 0;
}


/* "0:12", "1:02:03". */
static void fmt_eta(double s, char* out, size_t cap) {
  unsigned long t = (unsigned long) (s + 0.5);
  if (t >= 3600) {
    snprintf(out, cap, " · ETA %lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
  } else {
    snprintf(out, cap, " · ETA %lu:%02lu", t / 60, t % 60);
  }
}


static void show(viewer_upload_t* u,
                 const cm_upload_progress_t* p,
                 const cm_upload_info_t* info) {
  char text[256], rate[32] = "", eta[32] = "", resumed[64] = "";
  double f = 0;
  switch (p->phase) {
  case CM_UPLOAD_STARTING:
    snprintf(text, sizeof(text), "preparing the upload…");
    break;
  case CM_UPLOAD_HASHING:
    f = part(p->bytes_done, p->bytes_total);
    snprintf(text, sizeof(text), "hashing %.0f%%…", f * 100);
    break;
  case CM_UPLOAD_UPLOADING:
    f = part(p->bytes_sent, p->bytes_total);
    if (p->rate_bps > 0) {
      snprintf(rate, sizeof(rate), " · %.*f MB/s", p->rate_bps < 1e7 ? 1 : 0,
               p->rate_bps / 1e6);
    }
    if (p->eta_s >= 0) {
      fmt_eta(p->eta_s, eta, sizeof(eta));
    }
    if (info->is_resumed) {
      char* at = g_format_size(info->resumed_at);
      snprintf(resumed, sizeof(resumed), "resuming at %s · ", at);
      g_free(at);
    }
    snprintf(text, sizeof(text), "%suploading %.0f%%%s%s", resumed, f * 100,
             rate, eta);
    break;
  case CM_UPLOAD_COMPLETING:
    f = 1;
    snprintf(text, sizeof(text), "server checking the volume…");
    break;
  case CM_UPLOAD_PAUSED:
    f = part(p->bytes_done, p->bytes_total);
    snprintf(text, sizeof(text), "upload paused");
    break;
  case CM_UPLOAD_RETRYING:
    f = part(p->bytes_done, p->bytes_total);
    snprintf(text, sizeof(text), "%s; retrying in %.1f s (retry %u)",
             cm_strerror(p->last_error), p->delay_ms / 1000.0, p->retries);
    break;
  case CM_UPLOAD_DONE:
    f = 1;
    snprintf(text, sizeof(text), "%s",
             info->is_deduplicated ? "the server already has this volume"
                                   : "uploaded");
    break;
  }
  set_bar(u->app, f, text);
}


/* --cancel-upload-after-bytes, --quit-during-upload-after-bytes. */
static void automation(viewer_upload_t* u,
                       const cm_upload_progress_t* p,
                       const cm_upload_info_t* info) {
  viewer_app_t* app = u->app;
  const viewer_opts_t* o = &app->opts;
  if (u->is_trigger_done || p->phase != CM_UPLOAD_UPLOADING) {
    return;
  }
  if (o->cancel_upload_after > 0 &&
      p->bytes_done >= (uint64_t) o->cancel_upload_after) {
    u->is_trigger_done = true;
    viewer_say("cancelling the upload %s: %llu of %llu bytes on the server",
               info->upload_url, (unsigned long long) p->bytes_done,
               (unsigned long long) p->bytes_total);
    viewer_upload_cancel(app);
  } else if (o->quit_upload_after > 0 &&
             p->bytes_done >= (uint64_t) o->quit_upload_after) {
    u->is_trigger_done = true;
    viewer_say(
        "quitting during the upload %s: %llu of %llu bytes on the "
        "server",
        info->upload_url, (unsigned long long) p->bytes_done,
        (unsigned long long) p->bytes_total);
    viewer_window_quit(app, 0); /* as closing the window */
  }
}


static void on_progress(cm_upload_t* up,
                        const cm_upload_progress_t* p,
                        void* user) {
  viewer_upload_t* u = user;
  viewer_app_t* app = u->app;
  if (u->is_abandoned || u->is_cancelled) {
    return;
  }
  if (u->has_phase && u->phase == CM_UPLOAD_COMPLETING &&
      p->phase == CM_UPLOAD_UPLOADING && p->bytes_sent == p->bytes_total) {
    /* The library says "uploading" again while the last PATCH, all of it
     * written, waits for the server's check: still completing. */
    return;
  }
  cm_upload_info_t info;
  cm_upload_get_info(up, &info);
  if (!u->has_phase || u->phase != p->phase) {
    viewer_say("upload phase %s", cm_upload_phase_name(p->phase));
    u->has_phase = true;
    u->phase = p->phase;
  }
  if (p->phase == CM_UPLOAD_RETRYING) {
    viewer_say("upload: %s; retrying in %.1f s (retry %u)",
               cm_strerror(p->last_error), p->delay_ms / 1000.0, p->retries);
  }
  if (info.is_resumed && !u->is_resume_told) {
    u->is_resume_told = true;
    char* at = g_format_size(info.resumed_at);
    char* all = g_format_size(info.size);
    viewer_say("resuming the upload at %llu of %llu bytes",
               (unsigned long long) info.resumed_at,
               (unsigned long long) info.size);
    char* msg = g_strdup_printf(
        "Resuming the upload at %s of %s: the server kept what was sent "
        "before.",
        at, all);
    viewer_window_status(app, msg);
    g_free(msg);
    g_free(at);
    g_free(all);
  }
  show(u, p, &info);
  automation(u, p, &info);
}


/* Not a server that takes uploads: no such route, or not this method. */
static bool is_unsupported(int status, const cm_reply_t* reply) {
  int h = reply->http_status;
  return status != 0 && status != CANCELLED && (h == 404 || h == 405) &&
         strcmp(reply->error_code, "volume_not_found") != 0;
}


static void outcome(viewer_upload_t* u,
                    int status,
                    const cm_volume_t* vol,
                    const cm_reply_t* reply,
                    const cm_upload_info_t* info) {
  viewer_app_t* app = u->app;
  if (status == 0) {
    if (info->is_deduplicated) {
      viewer_say(
          "the server already has this volume (sha256 %s): "
          "nothing sent",
          vol->sha256);
      viewer_window_status(app,
                           "The server already has this volume: nothing "
                           "was sent.");
    }
    viewer_say("uploaded %s: volume %s (sha256 %s, %llu bytes sent)", u->path,
               vol->volume_id, vol->sha256,
               (unsigned long long) info->bytes_sent);
    viewer_job_create(app, vol->volume_id);
  } else if (status == CANCELLED) {
    viewer_say("upload cancelled");
    panel_idle(app, "upload cancelled");
    viewer_window_status(app, "Upload cancelled: nothing stays on the server.");
    viewer_job_set_conn(app, "#3a3", "server ready");
    viewer_shot_automation(app, "upload cancelled");
  } else if (is_unsupported(status, reply)) {
    app->job->is_upload_unsupported = true;
    viewer_say(
        "the server takes no uploads (HTTP %d): submitting the shape "
        "only",
        reply->http_status);
    char* msg = g_strdup_printf(
        "This server takes no uploads (HTTP %d): the job gets the volume's "
        "shape only.",
        reply->http_status);
    viewer_window_status(app, msg);
    g_free(msg);
    viewer_job_create(app, NULL);
  } else {
    char* why = viewer_job_describe(status, reply);
    viewer_say("upload failed: %s", why);
    panel_idle(app, "upload failed");
    viewer_job_set_conn(app, "#d33", "upload failed");
    char* msg = g_strdup_printf("%s: %s", u->path, why);
    viewer_window_error(app, "Cannot upload the volume", msg);
    g_free(msg);
    g_free(why);
  }
}


static void upload_free(viewer_upload_t* u) {
  cm_upload_free(u->up);
  g_free(u->path);
  g_free(u);
}


static void on_done(cm_upload_t* up,
                    int status,
                    const cm_volume_t* vol,
                    const cm_reply_t* reply,
                    void* user) {
  viewer_upload_t* u = user;
  viewer_job_t* job = u->app->job; /* freed only after cm_client_free */
  g_ptr_array_remove_fast(job->uploads, u);
  if (job->upload == u) {
    job->upload = NULL;
  }
  if (!u->is_abandoned) {
    cm_upload_info_t info;
    cm_upload_get_info(up, &info);
    outcome(u, status, vol, reply, &info);
  }
  upload_free(u);
}


int viewer_upload_start(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  assert(job->upload == NULL);
  cm_upload_options_t o;
  cm_upload_options_init(&o);
  o.path = app->path;
  /* The same bound as the reconnects (not the library's default 10). */
  o.max_retries = viewer_max_retries(app);
  if (app->opts.cancel_upload_after > 0 || app->opts.quit_upload_after > 0) {
    o.progress_interval_ms = 0; /* the trigger sees every step */
  }
  static const cm_upload_cbs_t cbs = {.on_progress = on_progress,
                                      .on_done = on_done};
  viewer_upload_t* u = g_new0(viewer_upload_t, 1);
  u->app = app;
  u->path = g_strdup(app->path);
  int rc = cm_upload_start(job->client, &o, &cbs, u, &u->up);
  if (rc != 0) {
    g_free(u->path);
    g_free(u);
    viewer_window_error(app, "Cannot upload the volume", cm_strerror(rc));
    return rc;
  }
  g_ptr_array_add(job->uploads, u);
  job->upload = u;
  viewer_say("uploading %s (%llu bytes) to %s", u->path,
             (unsigned long long) app->vol.file_len, viewer_server_url(app));
  viewer_job_set_conn(app, "#c90", "uploading…");
  gtk_widget_set_sensitive(app->submit_button, FALSE);
  gtk_button_set_label(GTK_BUTTON(app->cancel_button), "Cancel upload");
  gtk_widget_set_sensitive(app->cancel_button, TRUE);
  set_bar(app, 0, "preparing the upload…");
  return 0;
}


bool viewer_upload_cancel(viewer_app_t* app) {
  viewer_upload_t* u = app->job != NULL ? app->job->upload : NULL;
  if (u == NULL) {
    return false;
  }
  if (!u->is_cancelled) {
    u->is_cancelled = true;
    cm_upload_cancel(u->up); /* on_done(UV_ECANCELED) follows */
    gtk_widget_set_sensitive(app->cancel_button, FALSE);
    set_bar(app, 0, "cancelling the upload…");
  }
  return true;
}


void viewer_upload_abandon(viewer_app_t* app, bool cancel) {
  viewer_upload_t* u = app->job != NULL ? app->job->upload : NULL;
  if (u == NULL) {
    return;
  }
  u->is_abandoned = true;
  app->job->upload = NULL;
  if (cancel) {
    viewer_say("upload of %s cancelled: the submission was dropped", u->path);
    cm_upload_cancel(u->up);
  }
  panel_idle(app, "no job");
}


void viewer_upload_free_all(viewer_job_t* job) {
  for (guint i = 0; i < job->uploads->len; i++) {
    upload_free(g_ptr_array_index(job->uploads, i));
  }
  g_ptr_array_set_size(job->uploads, 0);
  job->upload = NULL;
}
