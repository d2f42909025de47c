/* viewer_job.c: the viewer's side of a server: a libcryomamba client
 * running its loop on its own thread, with every callback marshalled to the
 * GTK main thread (dispatch_to_main: one idle source per call, so they run
 * in order); job submission (after the upload, viewer_upload.c), attach,
 * cancel; the subscription's events on the progress bar, the connection
 * indicator and stdout. Previews go to viewer_preview.c, server checks to
 * viewer_server.c. Main thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "viewer/viewer_job.h"

typedef struct {
  void (*fn)(void*);
  void* arg;
} call_t;


static gboolean run_call(gpointer data) {
  call_t* c = data;
  c->fn(c->arg);
  return G_SOURCE_REMOVE;
}


/* cm_dispatch_fn: runs fn(arg) on the GTK main thread, in call order. An
 * idle source per call rather than g_main_context_invoke, which would run
 * fn on the calling thread whenever it can acquire the context. */
static void dispatch_to_main(void (*fn)(void*), void* arg, void* user) {
  (void) user;
  call_t* c = g_new(call_t, 1);
  c->fn = fn;
  c->arg = arg;
  GSource* src = g_idle_source_new();
  g_source_set_priority(src, G_PRIORITY_DEFAULT);
  g_source_set_callback(src, run_call, c, g_free);
  g_source_attach(src, NULL);
  g_source_unref(src);
}


static void on_log(cm_log_level_t level, const char* msg, void* user) {
  (void) user;
  if (level >= CM_LOG_WARN) {
    g_debug("libcryomamba: %s", msg);
  }
}


void viewer_job_set_conn(viewer_app_t* app,
                         const char* colour,
                         const char* text) {
  char* markup = g_markup_printf_escaped("<span foreground=\"%s\">●</span> %s",
                                         colour, text);
  gtk_label_set_markup(GTK_LABEL(app->conn_label), markup);
  g_free(markup);
}


/* A sentence for a failed REST call. */
char* viewer_job_describe(int status, const cm_reply_t* reply) {
  if (reply != NULL && reply->http_status != 0 &&
      reply->error_code[0] != '\0') {
    return g_strdup_printf("%s (HTTP %d %s)%s%s", reply->error_message,
                           reply->http_status, reply->error_code,
                           reply->error_hint[0] != '\0' ? "; hint: " : "",
                           reply->error_hint);
  }
  if (cm_is_tls_verify_error(status)) {
    return g_strdup_printf(
        "the server's TLS certificate was refused: certificate verify "
        "failed: %s (set the CA file in the preferences or --cacert, and "
        "a host name the certificate lists)",
        cm_strerror(status));
  }
  return g_strdup(cm_strerror(status));
}


int viewer_job_ensure_client(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job->client != NULL) {
    return 0;
  }
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = viewer_server_url(app);
  o.token = viewer_server_token(app);
  o.tls_ca_file = viewer_server_cacert(app);
  o.tls_insecure_skip_verify = app->opts.insecure_tls;
  o.reconnect_initial_ms = 300;
  o.reconnect_max_ms = 3000;
  o.max_reconnect_attempts = viewer_max_retries(app);
  o.dispatch = dispatch_to_main;
  o.log = on_log;
  int rc = cm_client_new(&o, &job->client);
  if (rc == 0) {
    rc = cm_client_start_thread(job->client);
    if (rc != 0) {
      cm_client_free(job->client);
      job->client = NULL;
    }
  }
  if (rc != 0) {
    char* why = viewer_job_describe(rc, NULL);
    char* msg = g_strdup_printf("%s: %s", o.server_url, why);
    g_free(why);
    viewer_window_error(app, "Cannot use this server", msg);
    g_free(msg);
    viewer_job_set_conn(app, "#d33", "bad server address");
  }
  return rc;
}


void viewer_job_show_progress(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  char text[128];
  char eta[32] = "";
  if (job->eta_s >= 0 && !cm_job_state_is_terminal(job->state)) {
    snprintf(eta, sizeof(eta), " · ETA %.0f s", job->eta_s);
  }
  snprintf(text, sizeof(text), "%s %.1f%%%s", cm_job_state_name(job->state),
           job->progress * 100, eta);
  gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app->progress_bar),
                                job->progress);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), text);
  char* label = g_strdup_printf(
      "Job %s\nPreviews: %llu received, %llu shown, %llu dropped", job->job_id,
      (unsigned long long) job->received, (unsigned long long) job->shown,
      (unsigned long long) job->dropped);
  gtk_label_set_text(GTK_LABEL(app->job_label), label);
  g_free(label);
  gtk_widget_set_sensitive(app->cancel_button,
                           job->has_job && !job->is_finished);
}


void viewer_job_ended(viewer_app_t* app, const char* why) {
  app->job->is_finished = true;
  viewer_job_show_progress(app);
  if (app->opts.after_previews <= 0) {
    viewer_shot_automation(app, why);
  }
}


/* Drops the watched job and the submission's upload (cancelled: the user
 * moved on). */
static void detach(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  viewer_upload_abandon(app, true);
  if (job->sub != NULL) {
    cm_sub_close(job->sub);
    job->sub = NULL;
  }
  job->generation++;
  viewer_preview_free(job->pending);
  job->pending = NULL;
  for (guint* t = &job->view_timer; t != NULL;
       t = t == &job->view_timer ? &job->drag_timer : NULL) {
    if (*t != 0) {
      g_source_remove(*t);
      *t = 0;
    }
  }
  viewer_overlay_drop(app);
  job->preview_scale = 0;
  job->has_job = false;
  job->is_finished = false;
  job->wants_final = false;
  job->received = job->shown = job->dropped = 0;
  job->progress = 0;
  job->eta_s = -1;
  job->state = CM_JOB_UNKNOWN;
}


static void on_created(cm_client_t* client,
                       int status,
                       const cm_reply_t* reply,
                       void* user) {
  viewer_app_t* app = user;
  (void) client;
  gtk_widget_set_sensitive(app->submit_button, app->has_volume);
  if (status != 0) {
    char* msg = viewer_job_describe(status, reply);
    viewer_job_set_conn(app, "#d33", "submit failed");
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar),
                              "submit failed");
    viewer_window_error(app, "Cannot submit the job", msg);
    g_free(msg);
    return;
  }
  viewer_say("submitted job %s", reply->job.job_id);
  viewer_watch_start(app, reply->job.job_id);
}


void viewer_job_create(viewer_app_t* app, const char* volume_id) {
  cm_job_spec_t spec;
  cm_job_spec_init(&spec);
  if (volume_id != NULL) {
    spec.volume_id = volume_id; /* shape and voxel size come from it */
  } else {
    for (int i = 0; i < 3; i++) {
      spec.shape[i] = app->vol.shape.d[i];
      spec.voxel_size[i] =
          app->vol.header.voxel_size[i] > 0 ? app->vol.header.voxel_size[i] : 0;
    }
  }
  spec.preview_hz = gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->hz_spin));
  spec.preview_scale = (uint32_t) gtk_spin_button_get_value_as_int(
      GTK_SPIN_BUTTON(app->scale_spin));
  spec.engine = viewer_server_engine(app);
  if (spec.engine == NULL || strcmp(spec.engine, "sim") == 0) {
    /* The simulator's own params; other engines have none of them. */
    spec.duration_s =
        gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->duration_spin));
    spec.seed =
        gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(app->seed_spin));
    spec.pattern =
        gtk_drop_down_get_selected(GTK_DROP_DOWN(app->pattern_drop)) == 1
            ? "blobs"
            : "random";
  }
  viewer_say("creating the job (engine %s, %s%s)",
             spec.engine != NULL ? spec.engine : "default",
             volume_id != NULL ? "volume " : "shape only",
             volume_id != NULL ? volume_id : "");
  viewer_job_set_conn(app, "#c90", "submitting…");
  app->job->preview_scale = spec.preview_scale;
  int rc = cm_job_create(app->job->client, &spec, on_created, app);
  if (rc != 0) {
    gtk_widget_set_sensitive(app->submit_button, app->has_volume);
    viewer_window_error(app, "Cannot submit the job", cm_strerror(rc));
    return;
  }
  gtk_widget_set_sensitive(app->submit_button, FALSE);
  gtk_button_set_label(GTK_BUTTON(app->cancel_button), "Cancel job");
  gtk_widget_set_sensitive(app->cancel_button, FALSE);
  gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app->progress_bar), 0);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "submitting…");
}


void viewer_job_submit(viewer_app_t* app) {
  if (!app->has_volume) {
    viewer_window_error(app, "Cannot submit a job", "Open a tomogram first.");
    return;
  }
  if (viewer_job_ensure_client(app) != 0) {
    return;
  }
  detach(app);
  bool wants_upload =
      gtk_check_button_get_active(GTK_CHECK_BUTTON(app->upload_check));
  if (wants_upload && app->job->is_upload_unsupported) {
    viewer_window_status(app,
                         "This server takes no uploads: the job gets the "
                         "volume's shape only.");
    wants_upload = false;
  }
  if (wants_upload) {
    viewer_upload_start(app);
  } else {
    viewer_job_create(app, NULL);
  }
}


void viewer_job_submit_when_ready(viewer_app_t* app) {
  if (app->job->is_server_checked) {
    viewer_job_submit(app);
  } else {
    app->job->is_submit_pending = true;
  }
}


void viewer_job_attach_when_ready(viewer_app_t* app) {
  if (app->job->is_server_checked) {
    viewer_job_attach(app, app->opts.attach_id);
  } else {
    app->job->is_attach_pending = true;
  }
}


void viewer_job_attach(viewer_app_t* app, const char* job_id) {
  if (!app->has_volume) {
    viewer_window_error(app, "Cannot attach to a job",
                        "Open the job's tomogram first: the mask is shown "
                        "over it.");
    return;
  }
  if (viewer_job_ensure_client(app) != 0) {
    return;
  }
  detach(app);
  viewer_watch_start(app, job_id);
}


static void on_cancelled(cm_client_t* client,
                         int status,
                         const cm_reply_t* reply,
                         void* user) {
  viewer_app_t* app = user;
  (void) client;
  if (status != 0) {
    char* msg = viewer_job_describe(status, reply);
    viewer_window_error(app, "Cannot cancel the job", msg);
    g_free(msg);
  }
}


void viewer_job_cancel(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (viewer_upload_cancel(app)) {
    return;
  }
  if (!job->has_job || job->client == NULL) {
    return;
  }
  int rc = cm_job_cancel(job->client, job->job_id, on_cancelled, app);
  if (rc != 0) {
    viewer_window_error(app, "Cannot cancel the job", cm_strerror(rc));
  }
}


/* ---- life cycle -------------------------------------------------------- */

void viewer_job_init(viewer_app_t* app) {
  viewer_job_t* job = g_new0(viewer_job_t, 1);
  job->app = app;
  job->subs = g_ptr_array_new();
  job->uploads = g_ptr_array_new();
  job->eta_s = -1;
  app->job = job;
  const char* url = viewer_server_url(app);
  viewer_say("server %s (%s)", url,
             app->opts.server_url != NULL ? "command line" : "preferences");
  viewer_job_set_conn(app, "#888", "checking server…");
  gtk_widget_set_tooltip_text(app->conn_label, url);
  viewer_server_check(app);
}


void viewer_job_reset_client(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  /* An upload to the old server stops with the client: its resume record
   * stays, so submitting there again goes on where it stopped. */
  viewer_upload_abandon(app, false);
  detach(app);
  if (job->client != NULL) {
    cm_client_free(job->client);
    job->client = NULL;
  }
  viewer_watch_free_subs(job);
  viewer_upload_free_all(job);
  job->is_upload_unsupported = false;
  viewer_job_show_progress(app);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "no job");
  viewer_server_check(app);
}


void viewer_job_volume_changed(viewer_app_t* app) {
  if (app->job == NULL) {
    return;
  }
  bool had_job = app->job->has_job;
  detach(app);
  if (had_job) {
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app->progress_bar), 0);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "no job");
    gtk_label_set_text(GTK_LABEL(app->job_label), "");
    gtk_widget_set_sensitive(app->cancel_button, FALSE);
  }
}


void viewer_job_shutdown(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job == NULL) {
    return;
  }
  /* Frees the client and its thread; dispatched callbacks still queued are
   * skipped by the library. An upload still running stops with it, its
   * resume record kept (a later submit of the file resumes). Workers in
   * flight see app->job == NULL. */
  cm_client_free(job->client);
  viewer_watch_free_subs(job);
  g_ptr_array_free(job->subs, TRUE);
  viewer_upload_free_all(job);
  g_ptr_array_free(job->uploads, TRUE);
  if (job->engines != NULL) {
    g_ptr_array_unref(job->engines);
  }
  viewer_preview_free(job->pending);
  if (job->view_timer != 0) {
    g_source_remove(job->view_timer);
  }
  if (job->drag_timer != 0) {
    g_source_remove(job->drag_timer);
  }
  viewer_overlay_drop(app);
  if (job->tmp_dir != NULL) {
    if (job->final_path != NULL) {
      unlink(job->final_path);
    }
    rmdir(job->tmp_dir);
  }
  g_free(job->tmp_dir);
  g_free(job->final_path);
  g_free(job);
  app->job = NULL;
}
