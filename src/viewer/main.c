/* main.c: cryomamba-viewer's entry point: command line (GOptionContext),
 * preferences, then a GtkApplication whose activate builds the window and
 * performs what the command line asked (open, submit or attach, automated
 * screenshot). Main thread. See docs/viewer.md. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "viewer/viewer_app.h"


void viewer_say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("viewer: ", stdout);
  vfprintf(stdout, fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(ap);
}


static void on_activate(GtkApplication* gtk, gpointer user) {
  viewer_app_t* app = user;
  (void) gtk;
  if (app->window != NULL) {
    gtk_window_present(app->window);
    return;
  }
  viewer_window_build(app);
  viewer_job_init(app);
  gtk_window_present(app->window);
  if (app->opts.open_path != NULL) {
    if (viewer_window_open(app, app->opts.open_path) != 0) {
      return;
    }
  }
  if (app->opts.submit) {
    viewer_job_submit_when_ready(app); /* the engines are known then */
  } else if (app->opts.attach_id != NULL) {
    viewer_job_attach_when_ready(app);
  } else if (app->is_automated && app->has_volume) {
    viewer_shot_automation(app, "volume open");
  }
}


static void on_shutdown(GApplication* gapp, gpointer user) {
  viewer_app_t* app = user;
  (void) gapp;
  viewer_job_shutdown(app);
}


static int parse_args(viewer_app_t* app, int* argc, char*** argv) {
  viewer_opts_t* o = &app->opts;
  gboolean submit = FALSE, stay = FALSE, version = FALSE, no_upload = FALSE;
  gboolean insecure = FALSE, no_final = FALSE;
  char* seed_text = NULL;
  char* encoding = NULL;
  o->hz = 0;
  o->scale = 0;
  o->duration = -1;
  o->seed = -1;
  o->opacity = -1;
  o->max_retries = -1; /* the preferences' */
  GOptionEntry entries[] = {
      {"server", 0, 0, G_OPTION_ARG_STRING, &o->server_url,
       "Server URL for this run (default: the preferences); URL,URL,... "
       "for servers of one cluster, failed over between",
       "URL"},
      {"token", 0, 0, G_OPTION_ARG_STRING, &o->token,
       "Bearer token for this run", "TOKEN"},
      {"cacert", 0, 0, G_OPTION_ARG_FILENAME, &o->cacert,
       "https: trust the CA certificates in FILE (PEM) for this run "
       "(default: the preferences, $CRYOMAMBA_CACERT, the system's)",
       "FILE"},
      {"insecure-skip-tls-verify", 0, 0, G_OPTION_ARG_NONE, &insecure,
       "https: accept any certificate for any name (testing only; warns)",
       NULL},
      {"open", 'o', 0, G_OPTION_ARG_FILENAME, &o->open_path,
       "Open this .mrc tomogram", "FILE"},
      {"submit", 0, 0, G_OPTION_ARG_NONE, &submit,
       "Upload the open volume and submit a job on it", NULL},
      {"attach", 0, 0, G_OPTION_ARG_STRING, &o->attach_id,
       "Attach to an existing job", "JOB_ID"},
      {"engine", 0, 0, G_OPTION_ARG_STRING, &o->engine,
       "The engine that runs the job (default: classic if the server has it, "
       "else sim)",
       "NAME"},
      {"no-upload", 0, 0, G_OPTION_ARG_NONE, &no_upload,
       "Submit the volume's shape only, without uploading the file", NULL},
      {"hz", 0, 0, G_OPTION_ARG_DOUBLE, &o->hz, "Previews per second", "HZ"},
      {"scale", 0, 0, G_OPTION_ARG_INT, &o->scale,
       "Preview downsampling factor", "S"},
      {"duration", 0, 0, G_OPTION_ARG_DOUBLE, &o->duration,
       "Simulated inference time", "SECONDS"},
      {"pattern", 0, 0, G_OPTION_ARG_STRING, &o->pattern,
       "Simulated masks: random or blobs", "PATTERN"},
      {"seed", 0, 0, G_OPTION_ARG_STRING, &seed_text, "Seed of the masks", "N"},
      {"opacity", 0, 0, G_OPTION_ARG_DOUBLE, &o->opacity,
       "Overlay opacity 0..1", "A"},
      {"screenshot", 0, 0, G_OPTION_ARG_FILENAME, &o->screenshot,
       "Write a PNG of the three views (one pixel per voxel), then quit",
       "FILE"},
      {"window-screenshot", 0, 0, G_OPTION_ARG_FILENAME, &o->window_shot,
       "Write a PNG of the whole window, then quit", "FILE"},
      {"export-mask", 0, 0, G_OPTION_ARG_FILENAME, &o->export_mask,
       "Write the shown mask as .mrc at the screenshot's moment", "FILE"},
      {"after-previews", 0, 0, G_OPTION_ARG_INT, &o->after_previews,
       "Take the screenshot once N previews are shown (default: when the "
       "job ends)",
       "N"},
      {"cancel-after-previews", 0, 0, G_OPTION_ARG_INT, &o->cancel_after,
       "Cancel the job once N previews are shown (as the Cancel button)", "N"},
      {"stay", 0, 0, G_OPTION_ARG_NONE, &stay,
       "Keep running after the screenshot", NULL},
      {"encoding", 0, 0, G_OPTION_ARG_STRING, &encoding,
       "How the mask streams: chunks, base64, raw or zstd (default: chunks "
       "when the server has them, else base64)",
       "ENC"},
      {"no-final-mask", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_NONE, &no_final,
       "Tests: at completion keep the chunk overlay (no mask.mrc download)",
       NULL},
      {"drag-slice-after", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT,
       &o->drag_after,
       "Tests: once N previews are shown, step the XY slice up 20 times", "N"},
      {"max-retries", 0, 0, G_OPTION_ARG_INT, &o->max_retries,
       "Failed attempts in a row before giving up, reconnects and upload "
       "retries alike (0: never; default: the preferences', 0)",
       "N"},
      {"cancel-upload-after-bytes", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT64,
       &o->cancel_upload_after,
       "Tests: cancel the upload once N bytes are on the server", "N"},
      {"quit-after-upload-bytes", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT64,
       &o->quit_upload_after,
       "Tests: quit (as closing the window) once N bytes are on the server",
       "N"},
      {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version", NULL},
      {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  GOptionContext* ctx = g_option_context_new("[FILE.mrc]");
  g_option_context_set_summary(
      ctx,
      "Views a tomogram in three orthogonal slices and overlays the mask a "
      "cryomambad\nserver streams while a segmentation job runs.");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError* error = NULL;
  gboolean ok = g_option_context_parse(ctx, argc, argv, &error);
  g_option_context_free(ctx);
  if (!ok) {
    fprintf(stderr, "cryomamba-viewer: %s (see --help)\n", error->message);
    g_error_free(error);
    return 64;
  }
  if (version) {
    printf("cryomamba-viewer %s (GTK %u.%u.%u)\n", CM_VERSION,
           gtk_get_major_version(), gtk_get_minor_version(),
           gtk_get_micro_version());
    exit(0);
  }
  if (*argc > 2) {
    fprintf(stderr, "cryomamba-viewer: one file at a time (see --help)\n");
    return 64;
  }
  if (*argc == 2 && o->open_path == NULL) {
    o->open_path = g_strdup((*argv)[1]);
  }
  if (seed_text != NULL) {
    char* end;
    long long v = strtoll(seed_text, &end, 10);
    if (*end != '\0' || v < 0) {
      fprintf(stderr, "cryomamba-viewer: --seed wants an integer >= 0\n");
      return 64;
    }
    o->seed = v;
    g_free(seed_text);
  }
  if (o->pattern != NULL && strcmp(o->pattern, "random") != 0 &&
      strcmp(o->pattern, "blobs") != 0) {
    fprintf(stderr, "cryomamba-viewer: --pattern is random or blobs\n");
    return 64;
  }
  o->encoding = -1;
  if (encoding != NULL) {
    static const char* names[] = {"base64", "raw", "zstd", "chunks"};
    for (int i = 0; i < 4; i++) {
      if (strcmp(encoding, names[i]) == 0) {
        o->encoding = i;
      }
    }
    g_free(encoding);
    if (o->encoding < 0) {
      fprintf(stderr,
              "cryomamba-viewer: --encoding is chunks, base64, raw or zstd\n");
      return 64;
    }
  }
  o->no_final_mask = no_final;
  o->insecure_tls = insecure;
  if (insecure) {
    fprintf(stderr,
            "cryomamba-viewer: WARNING: --insecure-skip-tls-verify: the "
            "server's TLS certificate and name are NOT checked; anyone on "
            "the network path can read and change this traffic, the token "
            "included\n");
  }
  o->submit = submit;
  o->stay = stay;
  o->no_upload = no_upload;
  if (o->engine != NULL && o->engine[0] == '\0') {
    fprintf(stderr, "cryomamba-viewer: --engine wants a name\n");
    return 64;
  }
  if (o->max_retries < -1 || o->max_retries > 1000000) {
    fprintf(stderr, "cryomamba-viewer: --max-retries wants 0..1000000\n");
    return 64;
  }
  if (o->submit && o->attach_id != NULL) {
    fprintf(stderr, "cryomamba-viewer: --submit or --attach, not both\n");
    return 64;
  }
  if (o->submit && o->open_path == NULL) {
    fprintf(stderr, "cryomamba-viewer: --submit needs a volume (--open)\n");
    return 64;
  }
  app->is_automated =
      o->screenshot != NULL || o->window_shot != NULL || o->export_mask != NULL;
  return 0;
}


int main(int argc, char** argv) {
  static viewer_app_t app;
  int rc = parse_args(&app, &argc, &argv);
  if (rc != 0) {
    return rc;
  }
  viewer_prefs_load(&app.prefs);
  app.opacity = app.opts.opacity >= 0 ? app.opts.opacity : app.prefs.opacity;
  app.show_mask = true;
  /* NON_UNIQUE: several viewers (and test runs) never hand their command
   * line to one another over D-Bus. */
  app.gtk =
      gtk_application_new("org.cryomamba.Viewer", G_APPLICATION_NON_UNIQUE);
  g_signal_connect(app.gtk, "activate", G_CALLBACK(on_activate), &app);
  g_signal_connect(app.gtk, "shutdown", G_CALLBACK(on_shutdown), &app);
  char* args[] = {argv[0], NULL};
  int status = g_application_run(G_APPLICATION(app.gtk), 1, args);
  int exit_status =
      GPOINTER_TO_INT(g_object_get_data(G_OBJECT(app.gtk), "exit-status"));
  g_object_unref(app.gtk);
  for (int i = 0; i < VIEWER_AXIS_COUNT; i++) {
    viewer_view_free(app.views[i]);
  }
  viewer_wl_lut_free(&app.lut);
  if (app.stats_task == NULL) { /* else a worker may still read it */
    viewer_volume_close(&app.vol);
  }
  g_free(app.labels);
  g_free(app.spare);
  g_free(app.path);
  g_free(app.engine_choice);
  viewer_prefs_clear(&app.prefs);
  return status != 0 ? status : exit_status;
}
