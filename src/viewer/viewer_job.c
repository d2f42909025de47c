/* viewer_job.c: the viewer's side of a server: a libcryomamba client
 * running its loop on its own thread, with every callback marshalled to the
 * GTK main thread (dispatch_to_main: one idle source per call, so they run
 * in order); job submission, attach, cancel; the subscription's events on
 * the progress bar, the connection indicator and stdout. Previews go to
 * viewer_preview.c. Main thread, except health_thread(). */
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


static void set_conn(viewer_app_t* app, const char* colour, const char* text) {
  char* markup = g_markup_printf_escaped("<span foreground=\"%s\">●</span> %s",
                                         colour, text);
  gtk_label_set_markup(GTK_LABEL(app->conn_label), markup);
  g_free(markup);
}


static const char* server_url(const viewer_app_t* app) {
  if (app->opts.server_url != NULL) {
    return app->opts.server_url;
  }
  return app->prefs.server_url;
}


static const char* server_token(const viewer_app_t* app) {
  const char* t = app->opts.token != NULL ? app->opts.token : app->prefs.token;
  return t != NULL && t[0] != '\0' ? t : NULL;
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
  return g_strdup(cm_strerror(status));
}


static int ensure_client(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job->client != NULL) {
    return 0;
  }
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = server_url(app);
  o.token = server_token(app);
  o.reconnect_initial_ms = 300;
  o.reconnect_max_ms = 3000;
  o.max_reconnect_attempts = (uint32_t) app->opts.max_retries;
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
    char* msg = g_strdup_printf("%s: %s", o.server_url, cm_strerror(rc));
    viewer_window_error(app, "Cannot use this server", msg);
    g_free(msg);
    set_conn(app, "#d33", "bad server address");
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
    set_conn(app, "#c90", "connecting…");
    break;
  case CM_CONN_OPEN:
    set_conn(app, "#3a3", "connected");
    break;
  case CM_CONN_RECONNECTING:
    if (ev->close_code != 0) {
      snprintf(text, sizeof(text), "close code %u", ev->close_code);
    } else {
      snprintf(text, sizeof(text), "%s", cm_strerror(ev->reason));
    }
    viewer_say("connection lost (%s), reconnecting in %.1f s (attempt %u)",
               text, ev->delay_ms / 1000.0, ev->attempt);
    set_conn(app, "#d70", "reconnecting…");
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
    set_conn(app, "#888", "not watching");
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
  if (ev->state == CM_JOB_COMPLETED) {
    viewer_preview_fetch_final(app);
  } else {
    viewer_window_status(app, "Job cancelled: the last preview stays shown.");
    viewer_job_ended(app, "job cancelled");
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
static void free_subs(viewer_job_t* job) {
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
    set_conn(app, "#d33", "disconnected");
  }
  if (!job->is_finished && !job->wants_final) {
    viewer_job_ended(app, "watch ended");
  }
}


static void detach(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job->sub != NULL) {
    cm_sub_close(job->sub);
    job->sub = NULL;
  }
  job->generation++;
  viewer_preview_free(job->pending);
  job->pending = NULL;
  job->has_job = false;
  job->is_finished = false;
  job->wants_final = false;
  job->received = job->shown = job->dropped = 0;
  job->progress = 0;
  job->eta_s = -1;
  job->state = CM_JOB_UNKNOWN;
}


static void start_watch(viewer_app_t* app, const char* job_id) {
  viewer_job_t* job = app->job;
  static const cm_sub_cbs_t cbs = {
      .on_state = on_state,
      .on_connected = on_connected,
      .on_progress = on_progress,
      .on_job_state = on_job_state,
      .on_preview = on_preview,
      .on_finished = on_finished,
      .on_error = on_error,
      .on_closed = on_closed,
  };
  snprintf(job->job_id, sizeof(job->job_id), "%s", job_id);
  int rc = cm_sub_start(job->client, job_id, &cbs, app, &job->sub);
  if (rc != 0) {
    job->sub = NULL;
    viewer_window_error(app, "Cannot watch the job", cm_strerror(rc));
    return;
  }
  g_ptr_array_add(job->subs, job->sub);
  job->has_job = true;
  gtk_editable_set_text(GTK_EDITABLE(app->attach_entry), job_id);
  viewer_job_show_progress(app);
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
    set_conn(app, "#d33", "submit failed");
    viewer_window_error(app, "Cannot submit the job", msg);
    g_free(msg);
    return;
  }
  viewer_say("submitted job %s", reply->job.job_id);
  start_watch(app, reply->job.job_id);
}


void viewer_job_submit(viewer_app_t* app) {
  if (!app->has_volume) {
    viewer_window_error(app, "Cannot submit a job", "Open a tomogram first.");
    return;
  }
  if (ensure_client(app) != 0) {
    return;
  }
  detach(app);
  cm_job_spec_t spec;
  cm_job_spec_init(&spec);
  for (int i = 0; i < 3; i++) {
    spec.shape[i] = app->vol.shape.d[i];
    spec.voxel_size[i] =
        app->vol.header.voxel_size[i] > 0 ? app->vol.header.voxel_size[i] : 0;
  }
  spec.preview_hz = gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->hz_spin));
  spec.preview_scale = (uint32_t) gtk_spin_button_get_value_as_int(
      GTK_SPIN_BUTTON(app->scale_spin));
  spec.duration_s =
      gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->duration_spin));
  spec.seed = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(app->seed_spin));
  spec.pattern =
      gtk_drop_down_get_selected(GTK_DROP_DOWN(app->pattern_drop)) == 1
          ? "blobs"
          : "random";
  set_conn(app, "#c90", "submitting…");
  int rc = cm_job_create(app->job->client, &spec, on_created, app);
  if (rc != 0) {
    viewer_window_error(app, "Cannot submit the job", cm_strerror(rc));
    return;
  }
  gtk_widget_set_sensitive(app->submit_button, FALSE);
  gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(app->progress_bar), 0);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "submitting…");
}


void viewer_job_attach(viewer_app_t* app, const char* job_id) {
  if (!app->has_volume) {
    viewer_window_error(app, "Cannot attach to a job",
                        "Open the job's tomogram first: the mask is shown "
                        "over it.");
    return;
  }
  if (ensure_client(app) != 0) {
    return;
  }
  detach(app);
  start_watch(app, job_id);
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
  if (!job->has_job || job->client == NULL) {
    return;
  }
  int rc = cm_job_cancel(job->client, job->job_id, on_cancelled, app);
  if (rc != 0) {
    viewer_window_error(app, "Cannot cancel the job", cm_strerror(rc));
  }
}


/* ---- health ------------------------------------------------------------ */

typedef struct {
  char* url;
  char* token;
  bool ok;
  char* msg;
  void (*done)(bool ok, const char* msg, void* user);
  void* user;
} health_t;


static void health_thread(GTask* task,
                          gpointer source,
                          gpointer data,
                          GCancellable* cancellable) {
  health_t* h = data;
  (void) source;
  (void) cancellable;
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = h->url;
  o.token = h->token != NULL && h->token[0] != '\0' ? h->token : NULL;
  o.connect_timeout_ms = 5000;
  o.request_timeout_ms = 5000;
  cm_client_t* c;
  int rc = cm_client_new(&o, &c);
  if (rc != 0) {
    h->msg = g_strdup_printf("%s: %s", h->url, cm_strerror(rc));
  } else {
    cm_reply_t r;
    memset(&r, 0, sizeof(r));
    rc = cm_health_sync(c, &r);
    cm_reply_clear(&r);
    if (rc == 0) {
      /* Health needs no token; the job list does, so it checks it. */
      rc = cm_job_list_sync(c, &r);
    }
    if (rc == 0) {
      h->ok = true;
      h->msg = g_strdup_printf("%s answers (%zu jobs)", h->url, r.job_count);
    } else {
      char* why = viewer_job_describe(rc, &r);
      h->msg = g_strdup_printf("%s: %s", h->url, why);
      g_free(why);
    }
    cm_reply_clear(&r);
    cm_client_free(c);
  }
  g_task_return_boolean(task, TRUE);
}


static void health_done(GObject* source, GAsyncResult* res, gpointer data) {
  health_t* h = data;
  (void) source;
  (void) res;
  h->done(h->ok, h->msg, h->user);
  g_free(h->url);
  g_free(h->token);
  g_free(h->msg);
  g_free(h);
}


void viewer_job_test_connection(viewer_app_t* app,
                                const char* url,
                                const char* token,
                                void (*done)(bool ok,
                                             const char* msg,
                                             void* user),
                                void* user) {
  (void) app;
  health_t* h = g_new0(health_t, 1);
  h->url = g_strdup(url);
  h->token = g_strdup(token);
  h->done = done;
  h->user = user;
  GTask* task = g_task_new(NULL, NULL, health_done, h);
  g_task_set_task_data(task, h, NULL);
  g_task_run_in_thread(task, health_thread);
  g_object_unref(task);
}


static void initial_health(bool ok, const char* msg, void* user) {
  viewer_app_t* app = user;
  if (app->job == NULL || app->job->has_job) {
    return; /* a job's own events tell more */
  }
  set_conn(app, ok ? "#3a3" : "#d33", ok ? "server ready" : "no server");
  gtk_widget_set_tooltip_text(app->conn_label, msg);
}


/* ---- life cycle -------------------------------------------------------- */

void viewer_job_init(viewer_app_t* app) {
  viewer_job_t* job = g_new0(viewer_job_t, 1);
  job->app = app;
  job->subs = g_ptr_array_new();
  job->eta_s = -1;
  app->job = job;
  const char* url = server_url(app);
  viewer_say("server %s (%s)", url,
             app->opts.server_url != NULL ? "command line" : "preferences");
  set_conn(app, "#888", "checking server…");
  gtk_widget_set_tooltip_text(app->conn_label, url);
  viewer_job_test_connection(app, url, server_token(app), initial_health, app);
}


void viewer_job_reset_client(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  detach(app);
  if (job->client != NULL) {
    cm_client_free(job->client);
    job->client = NULL;
  }
  free_subs(job);
  viewer_job_show_progress(app);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "no job");
  viewer_job_test_connection(app, server_url(app), server_token(app),
                             initial_health, app);
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
   * skipped by the library. Workers in flight see app->job == NULL. */
  cm_client_free(job->client);
  free_subs(job);
  g_ptr_array_free(job->subs, TRUE);
  viewer_preview_free(job->pending);
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
