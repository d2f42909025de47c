/* viewer_prefs.c: the viewer's preferences (server URL, token, CA file
 * and retries,
 * default job parameters with the engine and whether to upload, overlay
 * opacity) in a GKeyFile at $XDG_CONFIG_HOME/cryomamba/viewer.ini
 * (g_get_user_config_dir()), and the preferences dialog with its "Test
 * connection" button. The token file is written with mode 0600. Main thread. */
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

#include "viewer/viewer_app.h"

#define GROUP_SERVER "server"
#define GROUP_JOB "job"
#define GROUP_VIEW "view"


static char* prefs_path(void) {
  return g_build_filename(g_get_user_config_dir(), "cryomamba", "viewer.ini",
                          NULL);
}


void viewer_prefs_clear(viewer_prefs_t* p) {
  g_free(p->server_url);
  g_free(p->token);
  g_free(p->ca_file);
  g_free(p->pattern);
  g_free(p->engine);
  memset(p, 0, sizeof(*p));
}


static double get_double(GKeyFile* kf,
                         const char* group,
                         const char* key,
                         double dflt,
                         double lo,
                         double hi) {
  GError* e = NULL;
  double v = g_key_file_get_double(kf, group, key, &e);
  if (e != NULL) {
    g_error_free(e);
    return dflt;
  }
  return v < lo || v > hi ? dflt : v;
}


void viewer_prefs_load(viewer_prefs_t* p) {
  memset(p, 0, sizeof(*p));
  GKeyFile* kf = g_key_file_new();
  char* path = prefs_path();
  GError* e = NULL;
  if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
    if (!g_error_matches(e, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
      g_warning("ignoring %s: %s", path, e->message);
    }
    g_error_free(e);
  }
  p->server_url = g_key_file_get_string(kf, GROUP_SERVER, "url", NULL);
  if (p->server_url == NULL || p->server_url[0] == '\0') {
    g_free(p->server_url);
    const char* env = g_getenv("CRYOMAMBA_SERVER");
    p->server_url = g_strdup(env != NULL ? env : "http://127.0.0.1:8000");
  }
  p->token = g_key_file_get_string(kf, GROUP_SERVER, "token", NULL);
  if (p->token == NULL) {
    p->token = g_strdup(g_getenv("CRYOMAMBA_TOKEN"));
  }
  p->ca_file = g_key_file_get_string(kf, GROUP_SERVER, "ca_file", NULL);
  if (p->ca_file == NULL || p->ca_file[0] == '\0') {
    g_free(p->ca_file);
    p->ca_file = g_strdup(g_getenv("CRYOMAMBA_CACERT"));
  }
  p->hz = get_double(kf, GROUP_JOB, "preview_hz", 1.0, 0.1, 30);
  p->scale = (int) get_double(kf, GROUP_JOB, "preview_scale", 2, 1, 16);
  p->duration = get_double(kf, GROUP_JOB, "duration_s", 30, 1, 86400);
  p->seed = (int64_t) get_double(kf, GROUP_JOB, "seed", 0, 0, 1e9);
  p->pattern = g_key_file_get_string(kf, GROUP_JOB, "pattern", NULL);
  if (p->pattern == NULL ||
      (strcmp(p->pattern, "random") != 0 && strcmp(p->pattern, "blobs") != 0)) {
    g_free(p->pattern);
    p->pattern = g_strdup("blobs");
  }
  p->engine = g_key_file_get_string(kf, GROUP_JOB, "engine", NULL);
  GError* ue = NULL;
  p->upload = g_key_file_get_boolean(kf, GROUP_JOB, "upload", &ue);
  if (ue != NULL) {
    p->upload = true; /* absent or not a boolean */
    g_error_free(ue);
  }
  p->opacity = get_double(kf, GROUP_VIEW, "opacity", 0.5, 0, 1);
  p->max_retries =
      (int) get_double(kf, GROUP_SERVER, "max_retries", 0, 0, 1000000);
  g_free(path);
  g_key_file_free(kf);
}


unsigned viewer_max_retries(const viewer_app_t* app) {
  int n = app->opts.max_retries >= 0 ? app->opts.max_retries
                                     : app->prefs.max_retries;
  return n > 0 ? (unsigned) n : 0;
}


int viewer_prefs_save(const viewer_prefs_t* p, char** err) {
  GKeyFile* kf = g_key_file_new();
  g_key_file_set_string(kf, GROUP_SERVER, "url", p->server_url);
  g_key_file_set_string(kf, GROUP_SERVER, "token",
                        p->token != NULL ? p->token : "");
  g_key_file_set_string(kf, GROUP_SERVER, "ca_file",
                        p->ca_file != NULL ? p->ca_file : "");
  g_key_file_set_integer(kf, GROUP_SERVER, "max_retries", p->max_retries);
  g_key_file_set_double(kf, GROUP_JOB, "preview_hz", p->hz);
  g_key_file_set_integer(kf, GROUP_JOB, "preview_scale", p->scale);
  g_key_file_set_double(kf, GROUP_JOB, "duration_s", p->duration);
  g_key_file_set_int64(kf, GROUP_JOB, "seed", p->seed);
  g_key_file_set_string(kf, GROUP_JOB, "pattern", p->pattern);
  g_key_file_set_string(kf, GROUP_JOB, "engine",
                        p->engine != NULL ? p->engine : "");
  g_key_file_set_boolean(kf, GROUP_JOB, "upload", p->upload);
  g_key_file_set_double(kf, GROUP_VIEW, "opacity", p->opacity);
  char* path = prefs_path();
  char* dir = g_path_get_dirname(path);
  int rc = 0;
  GError* e = NULL;
  if (g_mkdir_with_parents(dir, 0700) != 0) {
    rc = -errno;
    *err = g_strdup_printf("cannot create %s: %s", dir, g_strerror(errno));
  } else if (!g_key_file_save_to_file(kf, path, &e)) {
    rc = -EIO;
    *err = g_strdup(e->message);
    g_error_free(e);
  } else {
    g_chmod(path, 0600); /* it holds the token */
  }
  g_free(dir);
  g_free(path);
  g_key_file_free(kf);
  return rc;
}


/* ---- dialog ------------------------------------------------------------ */

typedef struct {
  viewer_app_t* app;
  GtkWidget* dialog;
  GtkWidget* url;
  GtkWidget* token;
  GtkWidget* ca_file;
  GtkWidget* retries;
  GtkWidget* result;
  bool is_alive;
  int tests_running;
} prefs_dialog_t;


static void dialog_unref(prefs_dialog_t* d) {
  if (!d->is_alive && d->tests_running == 0) {
    g_free(d);
  }
}


static void on_tested(bool ok, const char* msg, void* user) {
  prefs_dialog_t* d = user;
  d->tests_running--;
  if (d->is_alive) {
    char* markup =
        g_markup_printf_escaped("<span foreground=\"%s\">%s</span> %s",
                                ok ? "#3a3" : "#d33", ok ? "✔" : "✘", msg);
    gtk_label_set_markup(GTK_LABEL(d->result), markup);
    g_free(markup);
  }
  dialog_unref(d);
}


static void on_test(GtkButton* b, gpointer user) {
  prefs_dialog_t* d = user;
  (void) b;
  gtk_label_set_text(GTK_LABEL(d->result), "testing…");
  d->tests_running++;
  viewer_job_test_connection(
      d->app, gtk_editable_get_text(GTK_EDITABLE(d->url)),
      gtk_editable_get_text(GTK_EDITABLE(d->token)),
      gtk_editable_get_text(GTK_EDITABLE(d->ca_file)), on_tested, d);
}


static void on_save(GtkButton* b, gpointer user) {
  prefs_dialog_t* d = user;
  viewer_app_t* app = d->app;
  (void) b;
  g_free(app->prefs.server_url);
  g_free(app->prefs.token);
  app->prefs.server_url =
      g_strstrip(g_strdup(gtk_editable_get_text(GTK_EDITABLE(d->url))));
  app->prefs.token =
      g_strstrip(g_strdup(gtk_editable_get_text(GTK_EDITABLE(d->token))));
  g_free(app->prefs.ca_file);
  app->prefs.ca_file =
      g_strstrip(g_strdup(gtk_editable_get_text(GTK_EDITABLE(d->ca_file))));
  app->prefs.max_retries =
      gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(d->retries));
  app->prefs.hz = gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->hz_spin));
  app->prefs.scale =
      gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(app->scale_spin));
  app->prefs.duration =
      gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->duration_spin));
  app->prefs.seed =
      gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(app->seed_spin));
  g_free(app->prefs.pattern);
  app->prefs.pattern =
      g_strdup(gtk_drop_down_get_selected(GTK_DROP_DOWN(app->pattern_drop)) == 1
                   ? "blobs"
                   : "random");
  if (app->engine_choice != NULL) { /* else the automatic choice stays */
    g_free(app->prefs.engine);
    app->prefs.engine = g_strdup(app->engine_choice);
  }
  app->prefs.upload =
      gtk_check_button_get_active(GTK_CHECK_BUTTON(app->upload_check));
  app->prefs.opacity = app->opacity;
  char* err = NULL;
  if (viewer_prefs_save(&app->prefs, &err) != 0) {
    viewer_window_error(app, "Cannot save the preferences", err);
    g_free(err);
    return;
  }
  /* The dialog's server (and retries) replace the command line's. */
  g_free(app->opts.server_url);
  g_free(app->opts.token);
  g_free(app->opts.cacert);
  app->opts.server_url = NULL;
  app->opts.token = NULL;
  app->opts.cacert = NULL;
  app->opts.max_retries = -1;
  viewer_job_reset_client(app);
  gtk_window_destroy(GTK_WINDOW(d->dialog));
}


static void on_destroy(GtkWidget* w, gpointer user) {
  prefs_dialog_t* d = user;
  (void) w;
  d->is_alive = false;
  dialog_unref(d);
}


void viewer_prefs_dialog(viewer_app_t* app) {
  prefs_dialog_t* d = g_new0(prefs_dialog_t, 1);
  d->app = app;
  d->is_alive = true;
  d->dialog = gtk_window_new();
  gtk_window_set_title(GTK_WINDOW(d->dialog), "Preferences");
  gtk_window_set_transient_for(GTK_WINDOW(d->dialog), app->window);
  gtk_window_set_modal(GTK_WINDOW(d->dialog), TRUE);
  gtk_window_set_default_size(GTK_WINDOW(d->dialog), 480, -1);
  g_signal_connect(d->dialog, "destroy", G_CALLBACK(on_destroy), d);

  GtkWidget* grid = gtk_grid_new();
  gtk_grid_set_row_spacing(GTK_GRID(grid), 8);
  gtk_grid_set_column_spacing(GTK_GRID(grid), 8);
  gtk_widget_set_margin_start(grid, 16);
  gtk_widget_set_margin_end(grid, 16);
  gtk_widget_set_margin_top(grid, 16);
  gtk_widget_set_margin_bottom(grid, 16);

  GtkWidget* l = gtk_label_new("Server URL");
  /* libcryomamba splits a list itself (client.h server_url). */
  gtk_widget_set_tooltip_text(l,
                              "One URL, or several of one cluster separated "
                              "by commas: requests and the live view fail "
                              "over between them; uploads use the first");
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_grid_attach(GTK_GRID(grid), l, 0, 0, 1, 1);
  d->url = gtk_entry_new();
  gtk_widget_set_hexpand(d->url, TRUE);
  gtk_editable_set_text(GTK_EDITABLE(d->url), app->opts.server_url != NULL
                                                  ? app->opts.server_url
                                                  : app->prefs.server_url);
  gtk_grid_attach(GTK_GRID(grid), d->url, 1, 0, 2, 1);

  l = gtk_label_new("Token");
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_grid_attach(GTK_GRID(grid), l, 0, 1, 1, 1);
  d->token = gtk_password_entry_new();
  gtk_password_entry_set_show_peek_icon(GTK_PASSWORD_ENTRY(d->token), TRUE);
  const char* tok =
      app->opts.token != NULL ? app->opts.token : app->prefs.token;
  gtk_editable_set_text(GTK_EDITABLE(d->token), tok != NULL ? tok : "");
  gtk_grid_attach(GTK_GRID(grid), d->token, 1, 1, 2, 1);

  l = gtk_label_new("CA file");
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_grid_attach(GTK_GRID(grid), l, 0, 2, 1, 1);
  d->ca_file = gtk_entry_new();
  gtk_entry_set_placeholder_text(GTK_ENTRY(d->ca_file),
                                 "https: PEM CA certificates (empty: the "
                                 "system's)");
  const char* ca = viewer_server_cacert(app);
  gtk_editable_set_text(GTK_EDITABLE(d->ca_file), ca != NULL ? ca : "");
  gtk_grid_attach(GTK_GRID(grid), d->ca_file, 1, 2, 2, 1);

  l = gtk_label_new("Retries");
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_grid_attach(GTK_GRID(grid), l, 0, 3, 1, 1);
  d->retries = gtk_spin_button_new_with_range(0, 1000, 1);
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(d->retries),
                            viewer_max_retries(app));
  gtk_grid_attach(GTK_GRID(grid), d->retries, 1, 3, 1, 1);
  l = gtk_label_new(
      "failed attempts in a row (reconnects, upload); 0: never "
      "give up");
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_label_set_wrap(GTK_LABEL(l), TRUE);
  gtk_widget_add_css_class(l, "dim-label");
  gtk_grid_attach(GTK_GRID(grid), l, 2, 3, 1, 1);

  GtkWidget* test = gtk_button_new_with_label("Test connection");
  g_signal_connect(test, "clicked", G_CALLBACK(on_test), d);
  gtk_grid_attach(GTK_GRID(grid), test, 0, 4, 1, 1);
  d->result = gtk_label_new("");
  gtk_label_set_xalign(GTK_LABEL(d->result), 0);
  gtk_label_set_wrap(GTK_LABEL(d->result), TRUE);
  gtk_grid_attach(GTK_GRID(grid), d->result, 1, 4, 2, 1);

  GtkWidget* note = gtk_label_new(
      "Saving also keeps the job parameters and the overlay opacity of the "
      "main window as defaults.");
  gtk_label_set_wrap(GTK_LABEL(note), TRUE);
  gtk_label_set_xalign(GTK_LABEL(note), 0);
  gtk_widget_add_css_class(note, "dim-label");
  gtk_grid_attach(GTK_GRID(grid), note, 0, 5, 3, 1);

  GtkWidget* cancel = gtk_button_new_with_label("Cancel");
  g_signal_connect_swapped(cancel, "clicked", G_CALLBACK(gtk_window_destroy),
                           d->dialog);
  GtkWidget* save = gtk_button_new_with_label("Save");
  gtk_widget_add_css_class(save, "suggested-action");
  g_signal_connect(save, "clicked", G_CALLBACK(on_save), d);
  GtkWidget* buttons = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 8);
  gtk_widget_set_halign(buttons, GTK_ALIGN_END);
  gtk_box_append(GTK_BOX(buttons), cancel);
  gtk_box_append(GTK_BOX(buttons), save);
  gtk_grid_attach(GTK_GRID(grid), buttons, 0, 6, 3, 1);

  gtk_window_set_child(GTK_WINDOW(d->dialog), grid);
  gtk_window_present(GTK_WINDOW(d->dialog));
}
