/* viewer_server.c: what the viewer asks a server before any job: health,
 * whether the token is accepted and which engines it runs (GET
 * /v1/server/info `engines`), each on a worker thread with a private
 * synchronous client; then the connection indicator, the Engine drop-down
 * (classic when listed, else sim, unless the command line, the user or the
 * preferences name one) and a pending --submit. Also "Test connection" of
 * the preferences. Main thread, except check_thread(). */
#include <jansson.h>
#include <string.h>

#include "viewer/viewer_job.h"

/* One check. Strings and `engines` owned; freed in check_done(). */
typedef struct {
  char* url;
  char* token;
  char* ca_file;
  bool insecure_tls;
  bool want_engines;
  bool ok;
  char* msg;
  GPtrArray* engines; /* viewer_engine_t*; NULL: not asked or unknown */
  char* encodings;    /* capabilities' encodings:..., or NULL */
  /* Test connection: done(); else the server check of `app`. */
  void (*done)(bool ok, const char* msg, void* user);
  void* user;
  viewer_app_t* app;
  uint64_t generation;
} check_t;


const char* viewer_server_url(const viewer_app_t* app) {
  if (app->opts.server_url != NULL) {
    return app->opts.server_url;
  }
  return app->prefs.server_url;
}


const char* viewer_server_token(const viewer_app_t* app) {
  const char* t = app->opts.token != NULL ? app->opts.token : app->prefs.token;
  return t != NULL && t[0] != '\0' ? t : NULL;
}


const char* viewer_server_cacert(const viewer_app_t* app) {
  const char* f =
      app->opts.cacert != NULL ? app->opts.cacert : app->prefs.ca_file;
  return f != NULL && f[0] != '\0' ? f : NULL;
}


static void engine_free(gpointer p) {
  viewer_engine_t* e = p;
  g_free(e->name);
  g_free(e->description);
  g_free(e);
}


/* The list of the capability "encodings:..." of a server info body (g_free
 * it), or NULL: an older server. */
static char* parse_encodings(const char* body, size_t len) {
  json_error_t jerr;
  json_t* root = body != NULL ? json_loadb(body, len, 0, &jerr) : NULL;
  size_t i;
  json_t* it;
  char* out = NULL;
  json_array_foreach(json_object_get(root, "capabilities"), i, it) {
    const char* c = json_string_value(it);
    if (c != NULL && out == NULL && strncmp(c, "encodings:", 10) == 0) {
      out = g_strdup(c + 10);
    }
  }
  json_decref(root);
  return out;
}


/* True when comma-separated `list` holds `name`. */
static bool lists(const char* list, const char* name) {
  char** names = g_strsplit(list != NULL ? list : "", ",", -1);
  bool found = g_strv_contains((const char* const*) names, name);
  g_strfreev(names);
  return found;
}


/* The `engines` of a server info body, or NULL (none: an older server). */
static GPtrArray* parse_engines(const char* body, size_t len) {
  json_error_t jerr;
  json_t* root = body != NULL ? json_loadb(body, len, 0, &jerr) : NULL;
  json_t* list = json_object_get(root, "engines");
  if (!json_is_array(list)) {
    json_decref(root);
    return NULL;
  }
  GPtrArray* out = g_ptr_array_new_with_free_func(engine_free);
  size_t i;
  json_t* it;
  json_array_foreach(list, i, it) {
    const char* name = json_string_value(json_object_get(it, "name"));
    if (name == NULL || name[0] == '\0') {
      continue;
    }
    const char* desc = json_string_value(json_object_get(it, "description"));
    viewer_engine_t* e = g_new0(viewer_engine_t, 1);
    e->name = g_strdup(name);
    e->description = g_strdup(desc != NULL ? desc : "");
    e->needs_volume = json_is_true(json_object_get(it, "needs_volume"));
    g_ptr_array_add(out, e);
  }
  json_decref(root);
  return out;
}


static void check_thread(GTask* task,
                         gpointer source,
                         gpointer data,
                         GCancellable* cancellable) {
  check_t* c = data;
  (void) source;
  (void) cancellable;
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = c->url;
  o.token = c->token != NULL && c->token[0] != '\0' ? c->token : NULL;
  o.connect_timeout_ms = 5000;
  o.request_timeout_ms = 5000;
  o.tls_ca_file =
      c->ca_file != NULL && c->ca_file[0] != '\0' ? c->ca_file : NULL;
  o.tls_insecure_skip_verify = c->insecure_tls;
  cm_client_t* client;
  int rc = cm_client_new(&o, &client);
  if (rc != 0) {
    char* why = viewer_job_describe(rc, NULL);
    c->msg = g_strdup_printf("%s: %s", c->url, why);
    g_free(why);
    g_task_return_boolean(task, TRUE);
    return;
  }
  cm_reply_t r;
  memset(&r, 0, sizeof(r));
  rc = cm_health_sync(client, &r);
  cm_reply_clear(&r);
  if (rc == 0) {
    /* Health needs no token; the job list does, so it checks it. */
    rc = cm_job_list_sync(client, &r);
  }
  if (rc == 0) {
    c->ok = true;
    c->msg = g_strdup_printf("%s answers (%zu jobs)", c->url, r.job_count);
  } else {
    char* why = viewer_job_describe(rc, &r);
    c->msg = g_strdup_printf("%s: %s", c->url, why);
    g_free(why);
  }
  cm_reply_clear(&r);
  if (c->ok && c->want_engines && cm_server_info_sync(client, &r) == 0) {
    c->engines = parse_engines(r.body, r.body_len);
    c->encodings = parse_encodings(r.body, r.body_len);
  }
  cm_reply_clear(&r);
  cm_client_free(client);
  g_task_return_boolean(task, TRUE);
}


/* The server check's answer: indicator, engines, a pending --submit. */
static void server_checked(check_t* c) {
  viewer_app_t* app = c->app;
  viewer_job_t* job = app->job;
  if (job == NULL || c->generation != job->check_generation) {
    return; /* shut down, or a newer check runs */
  }
  job->is_server_checked = true;
  if (!job->has_job && job->upload == NULL) { /* their events tell more */
    viewer_job_set_conn(app, c->ok ? "#3a3" : "#d33",
                        c->ok ? "server ready" : "no server");
  }
  gtk_widget_set_tooltip_text(app->conn_label, c->msg);
  if (c->engines != NULL) {
    if (job->engines != NULL) {
      g_ptr_array_unref(job->engines);
    }
    job->engines = c->engines;
    c->engines = NULL;
  }
  job->has_chunks = c->ok && lists(c->encodings, "chunks");
  if (c->ok) {
    viewer_say("encodings: %s (%s)",
               c->encodings != NULL ? c->encodings : "unknown",
               job->has_chunks ? "chunks" : "full previews");
  }
  viewer_server_fill_engines(app);
  GString* names = g_string_new(NULL);
  for (guint i = 0; job->engines != NULL && i < job->engines->len; i++) {
    const viewer_engine_t* e = g_ptr_array_index(job->engines, i);
    g_string_append_printf(names, "%s%s", i > 0 ? ", " : "", e->name);
  }
  const char* sel = viewer_server_engine(app);
  viewer_say("engines: %s (selected %s)",
             job->engines != NULL ? names->str : "unknown",
             sel != NULL ? sel : "none");
  g_string_free(names, TRUE);
  if (job->is_submit_pending) {
    job->is_submit_pending = false;
    viewer_job_submit(app);
  }
  if (job->is_attach_pending) {
    job->is_attach_pending = false;
    viewer_job_attach(app, app->opts.attach_id);
  }
}


static void check_done(GObject* source, GAsyncResult* res, gpointer data) {
  check_t* c = data;
  (void) source;
  (void) res;
  if (c->done != NULL) {
    c->done(c->ok, c->msg, c->user);
  } else {
    server_checked(c);
  }
  if (c->engines != NULL) {
    g_ptr_array_unref(c->engines);
  }
  g_free(c->url);
  g_free(c->token);
  g_free(c->ca_file);
  g_free(c->msg);
  g_free(c->encodings);
  g_free(c);
}


static void run_check(check_t* c) {
  GTask* task = g_task_new(NULL, NULL, check_done, c);
  g_task_set_task_data(task, c, NULL);
  g_task_run_in_thread(task, check_thread);
  g_object_unref(task);
}


void viewer_job_test_connection(viewer_app_t* app,
                                const char* url,
                                const char* token,
                                const char* ca_file,
                                void (*done)(bool ok,
                                             const char* msg,
                                             void* user),
                                void* user) {
  check_t* c = g_new0(check_t, 1);
  c->url = g_strdup(url);
  c->token = g_strdup(token);
  c->ca_file = g_strdup(ca_file);
  c->insecure_tls = app->opts.insecure_tls;
  c->done = done;
  c->user = user;
  run_check(c);
}


void viewer_server_check(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  check_t* c = g_new0(check_t, 1);
  c->url = g_strdup(viewer_server_url(app));
  c->token = g_strdup(viewer_server_token(app));
  c->ca_file = g_strdup(viewer_server_cacert(app));
  c->insecure_tls = app->opts.insecure_tls;
  c->want_engines = true;
  c->app = app;
  c->generation = ++job->check_generation;
  job->is_server_checked = false;
  run_check(c);
}


/* ---- the Engine drop-down ---------------------------------------------- */

static bool has_name(GtkStringList* list, const char* name, guint* pos) {
  guint n = g_list_model_get_n_items(G_LIST_MODEL(list));
  for (guint i = 0; i < n; i++) {
    if (strcmp(gtk_string_list_get_string(list, i), name) == 0) {
      *pos = i;
      return true;
    }
  }
  return false;
}


void viewer_server_fill_engines(viewer_app_t* app) {
  GPtrArray* known = app->job != NULL ? app->job->engines : NULL;
  GtkStringList* list = gtk_string_list_new(NULL);
  if (known != NULL) {
    for (guint i = 0; i < known->len; i++) {
      const viewer_engine_t* e = g_ptr_array_index(known, i);
      gtk_string_list_append(list, e->name);
    }
  }
  guint pos = 0;
  if (known == NULL && !has_name(list, "sim", &pos)) {
    gtk_string_list_append(list, "sim"); /* every server runs it */
  }
  /* A name the user picked or the command line gave stays even if the
   * server does not list it (its answer will say why); one from the
   * preferences only when listed, else the automatic choice. */
  const char* wanted = app->engine_choice;
  if (wanted == NULL) {
    wanted = app->opts.engine;
  }
  if (wanted != NULL && !has_name(list, wanted, &pos)) {
    gtk_string_list_append(list, wanted);
  }
  const char* pref = app->prefs.engine;
  if (wanted == NULL && pref != NULL && pref[0] != '\0' &&
      (known == NULL || has_name(list, pref, &pos))) {
    wanted = pref;
    if (!has_name(list, pref, &pos)) {
      gtk_string_list_append(list, pref);
    }
  }
  if (wanted == NULL) {
    wanted = has_name(list, "classic", &pos) ? "classic" : "sim";
  }
  if (!has_name(list, wanted, &pos)) {
    pos = 0;
  }
  app->is_updating_controls = true;
  gtk_drop_down_set_model(GTK_DROP_DOWN(app->engine_drop), G_LIST_MODEL(list));
  gtk_drop_down_set_selected(GTK_DROP_DOWN(app->engine_drop), pos);
  app->is_updating_controls = false;
  g_object_unref(list);
  viewer_server_engine_changed(app);
}


const char* viewer_server_engine(viewer_app_t* app) {
  GObject* item =
      gtk_drop_down_get_selected_item(GTK_DROP_DOWN(app->engine_drop));
  return item != NULL ? gtk_string_object_get_string(GTK_STRING_OBJECT(item))
                      : NULL;
}


void viewer_server_engine_changed(viewer_app_t* app) {
  const char* name = viewer_server_engine(app);
  bool is_sim = name != NULL && strcmp(name, "sim") == 0;
  /* Pattern, seed and duration are the simulator's; other engines read
   * the volume. */
  gtk_widget_set_sensitive(app->duration_spin, is_sim);
  gtk_widget_set_sensitive(app->pattern_drop, is_sim);
  gtk_widget_set_sensitive(app->seed_spin, is_sim);
  const char* tip = NULL;
  GPtrArray* known = app->job != NULL ? app->job->engines : NULL;
  for (guint i = 0; name != NULL && known != NULL && i < known->len; i++) {
    const viewer_engine_t* e = g_ptr_array_index(known, i);
    if (strcmp(e->name, name) == 0 && e->description[0] != '\0') {
      tip = e->description;
    }
  }
  gtk_widget_set_tooltip_text(app->engine_drop, tip);
}
