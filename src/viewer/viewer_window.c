/* viewer_window.c: the main window of cryomamba-viewer: header bar and
 * menu, the three slice views in an orthogonal grid with the metadata
 * panel and the sidebar (viewer_panel.c), opening volumes (menu,
 * drag and drop, command line) with statistics computed on a worker
 * thread, window/level, the crosshair, and error reporting. Main thread;
 * the statistics task owns a copy of the mapping's description and is the
 * one to unmap it if the volume was replaced meanwhile. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "viewer/viewer_app.h"

#define PCT_LO 0.5
#define PCT_HI 99.5
#define STATS_SAMPLES (1u << 20)

enum {
  META_FILE,
  META_SHAPE,
  META_VOXEL,
  META_MODE,
  META_SIZE,
  META_RANGE,
  META_MEAN,
  META_MASK,
  META_COUNT
};

typedef struct {
  viewer_app_t* app;
  viewer_volume_t vol; /* a copy: the mapping outlives a replaced volume */
  atomic_bool cancel;
  atomic_int permille;
  bool is_orphan; /* main thread: the app closed this volume; unmap here */
  guint poll_id;
  int rc;
  viewer_stats_t stats;
  bool has_pct;
  double plo, phi;
} stats_task_t;


void viewer_window_status(viewer_app_t* app, const char* text) {
  if (app->status_label != NULL) {
    gtk_label_set_text(GTK_LABEL(app->status_label), text);
  }
}


void viewer_window_quit(viewer_app_t* app, int status) {
  g_object_set_data(G_OBJECT(app->gtk), "exit-status", GINT_TO_POINTER(status));
  g_application_quit(G_APPLICATION(app->gtk));
}


void viewer_window_error(viewer_app_t* app,
                         const char* title,
                         const char* detail) {
  fprintf(stderr, "cryomamba-viewer: %s: %s\n", title, detail);
  fflush(stderr);
  if (app->is_automated) {
    viewer_window_quit(app, 1);
    return;
  }
  GtkWidget* d = gtk_message_dialog_new(
      app->window, GTK_DIALOG_MODAL | GTK_DIALOG_DESTROY_WITH_PARENT,
      GTK_MESSAGE_ERROR, GTK_BUTTONS_CLOSE, "%s", title);
  gtk_message_dialog_format_secondary_text(GTK_MESSAGE_DIALOG(d), "%s", detail);
  g_signal_connect(d, "response", G_CALLBACK(gtk_window_destroy), NULL);
  gtk_window_present(GTK_WINDOW(d));
}


static void set_meta(viewer_app_t* app, int row, const char* text) {
  gtk_label_set_text(GTK_LABEL(app->meta_values[row]), text);
}


void viewer_window_redraw(viewer_app_t* app) {
  for (int i = 0; i < VIEWER_AXIS_COUNT; i++) {
    viewer_view_redraw(app->views[i]);
  }
}


void viewer_window_set_cursor(viewer_app_t* app, const uint32_t zyx[3]) {
  for (int d = 0; d < 3; d++) {
    app->cursor[d] =
        zyx[d] < app->vol.shape.d[d] ? zyx[d] : app->vol.shape.d[d] - 1;
  }
  viewer_window_redraw(app);
  viewer_overlay_view_changed(app);
}


void viewer_window_set_wl(viewer_app_t* app, viewer_wl_t wl, bool is_manual) {
  if (!(wl.hi > wl.lo)) {
    wl.hi = wl.lo + 1e-6 * fmax(1.0, fabs(wl.lo));
  }
  viewer_wl_lut_t lut;
  if (viewer_wl_lut_init(&lut, app->vol.mode, wl) != 0) {
    return; /* out of memory: keep the old window */
  }
  viewer_wl_lut_free(&app->lut);
  app->lut = lut;
  app->wl = wl;
  app->wl_is_manual = app->wl_is_manual || is_manual;
  app->grey_version++;
  app->is_updating_controls = true;
  double span = wl.hi - wl.lo;
  GtkAdjustment* la =
      gtk_spin_button_get_adjustment(GTK_SPIN_BUTTON(app->level_spin));
  GtkAdjustment* wa =
      gtk_spin_button_get_adjustment(GTK_SPIN_BUTTON(app->window_spin));
  double lo_lim = fmin(gtk_adjustment_get_lower(la), wl.lo - 4 * span);
  double hi_lim = fmax(gtk_adjustment_get_upper(la), wl.hi + 4 * span);
  gtk_adjustment_configure(la, (wl.lo + wl.hi) / 2, lo_lim, hi_lim, span / 100,
                           span / 10, 0);
  gtk_adjustment_configure(wa, span, 0,
                           fmax(gtk_adjustment_get_upper(wa), 10 * span),
                           span / 100, span / 10, 0);
  app->is_updating_controls = false;
  viewer_window_redraw(app);
}


void viewer_window_labels_changed(viewer_app_t* app,
                                  const uint64_t counts[256]) {
  app->labels_version++;
  if (app->labels == NULL || counts == NULL) {
    set_meta(app, META_MASK,
             !viewer_overlay_has(app)
                 ? "none"
                 : (app->chunks != NULL && !app->is_final_mask ? "chunks"
                                                               : "shown"));
  } else {
    double total = (double) core_shape_voxels(&app->vol.shape);
    char text[160];
    snprintf(text, sizeof(text), "%s: 1 %.1f%%, 2 %.1f%%",
             app->is_final_mask ? "final" : "preview",
             100.0 * (double) counts[1] / total,
             100.0 * (double) counts[2] / total);
    set_meta(app, META_MASK, text);
  }
  viewer_window_redraw(app);
}


/* ---- statistics on a worker ------------------------------------------ */

static void stats_progress(double fraction, void* user) {
  stats_task_t* st = user;
  atomic_store(&st->permille, (int) (fraction * 1000));
}


static void stats_thread(GTask* task,
                         gpointer source,
                         gpointer data,
                         GCancellable* cancellable) {
  stats_task_t* st = data;
  (void) source;
  (void) cancellable;
  float* sample = g_try_malloc(STATS_SAMPLES * sizeof(float));
  if (sample != NULL) {
    size_t n = viewer_volume_sample(&st->vol, STATS_SAMPLES, sample);
    st->has_pct = n > 0 && viewer_percentiles(sample, n, PCT_LO, PCT_HI,
                                              &st->plo, &st->phi) == 0;
    g_free(sample);
  }
  st->rc = viewer_volume_stats(&st->vol, &st->cancel, stats_progress, st,
                               &st->stats);
  g_task_return_boolean(task, TRUE);
}


static gboolean stats_poll(gpointer data) {
  stats_task_t* st = data;
  if (!st->is_orphan) {
    char text[64];
    snprintf(text, sizeof(text), "computing… %d%%",
             atomic_load(&st->permille) / 10);
    set_meta(st->app, META_RANGE, text);
    set_meta(st->app, META_MEAN, text);
  }
  return G_SOURCE_CONTINUE;
}


static void stats_done(GObject* source, GAsyncResult* res, gpointer data) {
  stats_task_t* st = data;
  (void) source;
  (void) res;
  g_source_remove(st->poll_id);
  viewer_app_t* app = st->app;
  if (st->is_orphan) {
    viewer_volume_close(&st->vol);
    g_free(st);
    return;
  }
  app->stats_task = NULL;
  if (st->rc == 0) {
    char text[128];
    snprintf(text, sizeof(text), "%.4g / %.4g", st->stats.min, st->stats.max);
    set_meta(app, META_RANGE, text);
    snprintf(text, sizeof(text), "%.4g ± %.4g", st->stats.mean,
             st->stats.stddev);
    set_meta(app, META_MEAN, text);
    viewer_say("statistics: min %.6g max %.6g mean %.6g", st->stats.min,
               st->stats.max, st->stats.mean);
    if (st->has_pct && !app->wl_is_manual) {
      viewer_wl_t wl = {st->plo, st->phi};
      viewer_window_set_wl(app, wl, false);
    }
  }
  g_free(st);
}


static void stats_start(viewer_app_t* app) {
  stats_task_t* st = g_new0(stats_task_t, 1);
  st->app = app;
  st->vol = app->vol;
  atomic_init(&st->cancel, false);
  app->stats_task = st;
  set_meta(app, META_RANGE, "computing…");
  set_meta(app, META_MEAN, "computing…");
  st->poll_id = g_timeout_add(1000, stats_poll, st);
  GTask* task = g_task_new(NULL, NULL, stats_done, st);
  g_task_set_task_data(task, st, NULL);
  g_task_run_in_thread(task, stats_thread);
  g_object_unref(task);
}


/* Closes the open volume; a running statistics task takes the mapping. */
static void close_volume(viewer_app_t* app) {
  if (!app->has_volume) {
    return;
  }
  viewer_job_volume_changed(app);
  stats_task_t* st = app->stats_task;
  if (st != NULL) {
    atomic_store(&st->cancel, true);
    st->is_orphan = true;
    app->stats_task = NULL;
    memset(&app->vol, 0, sizeof(app->vol));
  } else {
    viewer_volume_close(&app->vol);
  }
  app->has_volume = false;
  g_free(app->labels);
  g_free(app->spare);
  app->labels = app->spare = NULL;
  app->is_final_mask = false;
  viewer_wl_lut_free(&app->lut);
  g_free(app->path);
  app->path = NULL;
}


/* A first window from the central XY slice (fast), refined by the
 * statistics task from a sample of the whole volume. */
static viewer_wl_t initial_wl(const viewer_volume_t* vol) {
  size_t n = (size_t) vol->shape.d[1] * vol->shape.d[2];
  float* vals = g_malloc(n * sizeof(float));
  size_t plane = n * vol->itemsize;
  viewer_convert_to_float(vol->data + (size_t) (vol->shape.d[0] / 2) * plane,
                          vol->mode, n, vals);
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (isfinite(vals[i])) {
      vals[m++] = vals[i];
    }
  }
  viewer_wl_t wl = {0, 1};
  if (m > 0) {
    viewer_percentiles(vals, m, PCT_LO, PCT_HI, &wl.lo, &wl.hi);
  }
  g_free(vals);
  return wl;
}


int viewer_window_open(viewer_app_t* app, const char* path) {
  viewer_volume_t vol;
  char err[512];
  int rc = viewer_volume_open(path, &vol, err, sizeof(err));
  if (rc != 0) {
    viewer_window_error(app, "Cannot open the tomogram", err);
    return rc;
  }
  close_volume(app);
  app->vol = vol;
  app->has_volume = true;
  app->path = g_strdup(path);
  for (int d = 0; d < 3; d++) {
    app->cursor[d] = vol.shape.d[d] / 2;
  }
  app->wl_is_manual = false;
  memset(&app->lut, 0, sizeof(app->lut));
  for (int i = 0; i < VIEWER_AXIS_COUNT; i++) {
    viewer_view_volume_changed(app->views[i]);
  }
  viewer_window_set_wl(app, initial_wl(&vol), false);

  char* base = g_path_get_basename(path);
  char text[256];
  set_meta(app, META_FILE, base);
  snprintf(text, sizeof(text), "%u × %u × %u", vol.shape.d[0], vol.shape.d[1],
           vol.shape.d[2]);
  set_meta(app, META_SHAPE, text);
  const double* vs = vol.header.voxel_size;
  snprintf(text, sizeof(text), "%.3g × %.3g × %.3g", vs[0], vs[1], vs[2]);
  set_meta(app, META_VOXEL, text);
  snprintf(text, sizeof(text), "%d (%s)", vol.mode, viewer_mode_name(vol.mode));
  set_meta(app, META_MODE, text);
  char* size = g_format_size(vol.file_len);
  set_meta(app, META_SIZE, size);
  g_free(size);
  set_meta(app, META_MASK, "none");
  char* title = g_strdup_printf("%s — CryoMamba Viewer", base);
  gtk_window_set_title(app->window, title);
  g_free(title);
  g_free(base);
  gtk_widget_set_sensitive(app->submit_button, TRUE);
  viewer_say("opened %s: shape %u,%u,%u mode %d (%s) voxel %.4g,%.4g,%.4g",
             path, vol.shape.d[0], vol.shape.d[1], vol.shape.d[2], vol.mode,
             viewer_mode_name(vol.mode), vs[0], vs[1], vs[2]);
  stats_start(app);
  return 0;
}


/* Back to the automatic window: percentiles of a sample of the volume. */
void viewer_window_auto_wl(viewer_app_t* app) {
  if (!app->has_volume) {
    return;
  }
  app->wl_is_manual = false;
  float* sample = g_malloc(STATS_SAMPLES * sizeof(float));
  size_t n = viewer_volume_sample(&app->vol, STATS_SAMPLES, sample);
  viewer_wl_t wl;
  if (n > 0 &&
      viewer_percentiles(sample, n, PCT_LO, PCT_HI, &wl.lo, &wl.hi) == 0) {
    viewer_window_set_wl(app, wl, false);
  }
  g_free(sample);
}


/* ---- actions ----------------------------------------------------------- */

static void on_open_response(GtkNativeDialog* d, int response, gpointer user) {
  viewer_app_t* app = user;
  if (response == GTK_RESPONSE_ACCEPT) {
    GFile* f = gtk_file_chooser_get_file(GTK_FILE_CHOOSER(d));
    char* path = g_file_get_path(f);
    if (path != NULL) {
      viewer_window_open(app, path);
    }
    g_free(path);
    g_object_unref(f);
  }
  g_object_unref(d);
}


static void act_open(GSimpleAction* a, GVariant* p, gpointer user) {
  viewer_app_t* app = user;
  (void) a;
  (void) p;
  GtkFileChooserNative* d = gtk_file_chooser_native_new(
      "Open a tomogram", app->window, GTK_FILE_CHOOSER_ACTION_OPEN, "_Open",
      "_Cancel");
  GtkFileFilter* f = gtk_file_filter_new();
  gtk_file_filter_set_name(f, "MRC volumes (*.mrc, *.rec, *.map)");
  gtk_file_filter_add_pattern(f, "*.mrc");
  gtk_file_filter_add_pattern(f, "*.rec");
  gtk_file_filter_add_pattern(f, "*.map");
  gtk_file_chooser_add_filter(GTK_FILE_CHOOSER(d), f);
  g_object_unref(f);
  g_signal_connect(d, "response", G_CALLBACK(on_open_response), app);
  gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}


typedef int (*save_fn)(viewer_app_t* app, const char* path, char** err);

static int save_mask(viewer_app_t* app, const char* path, char** err) {
  if (!viewer_overlay_has(app)) {
    *err = g_strdup("there is no mask to export yet");
    return -1;
  }
  uint8_t* owned;
  const uint8_t* mask = viewer_overlay_volume(app, &owned);
  int rc = mask != NULL ? viewer_labels_write_mrc(path, mask, &app->vol.shape,
                                                  app->vol.header.voxel_size)
                        : -ENOMEM;
  g_free(owned);
  if (rc != 0) {
    *err = g_strdup_printf("cannot write %s: %s", path, g_strerror(-rc));
    return rc;
  }
  viewer_say("mask exported to %s (%s)", path, viewer_overlay_kind(app));
  return 0;
}


static void on_save_response(GtkNativeDialog* d, int response, gpointer user) {
  viewer_app_t* app = user;
  save_fn fn = (save_fn) g_object_get_data(G_OBJECT(d), "save-fn");
  const char* what = g_object_get_data(G_OBJECT(d), "what");
  if (response == GTK_RESPONSE_ACCEPT) {
    GFile* f = gtk_file_chooser_get_file(GTK_FILE_CHOOSER(d));
    char* path = g_file_get_path(f);
    char* err = NULL;
    if (path != NULL && fn(app, path, &err) != 0) {
      viewer_window_error(app, what, err != NULL ? err : "failed");
    } else if (path != NULL) {
      char* msg = g_strdup_printf("Saved %s", path);
      viewer_window_status(app, msg);
      g_free(msg);
    }
    g_free(err);
    g_free(path);
    g_object_unref(f);
  }
  g_object_unref(d);
}


static void save_dialog(viewer_app_t* app,
                        const char* title,
                        const char* name,
                        save_fn fn) {
  if (!app->has_volume) {
    viewer_window_error(app, title, "Open a tomogram first.");
    return;
  }
  GtkFileChooserNative* d = gtk_file_chooser_native_new(
      title, app->window, GTK_FILE_CHOOSER_ACTION_SAVE, "_Save", "_Cancel");
  gtk_file_chooser_set_current_name(GTK_FILE_CHOOSER(d), name);
  g_object_set_data(G_OBJECT(d), "save-fn", (gpointer) fn);
  g_object_set_data(G_OBJECT(d), "what", (gpointer) title);
  g_signal_connect(d, "response", G_CALLBACK(on_save_response), app);
  gtk_native_dialog_show(GTK_NATIVE_DIALOG(d));
}


static void act_export(GSimpleAction* a, GVariant* p, gpointer user) {
  (void) a;
  (void) p;
  save_dialog(user, "Export the mask", "mask.mrc", save_mask);
}


static void act_screenshot(GSimpleAction* a, GVariant* p, gpointer user) {
  (void) a;
  (void) p;
  save_dialog(user, "Save a screenshot of the views", "views.png",
              viewer_shot_views_png);
}


static void act_window_shot(GSimpleAction* a, GVariant* p, gpointer user) {
  (void) a;
  (void) p;
  save_dialog(user, "Save a screenshot of the window", "window.png",
              viewer_shot_window_png);
}


static void act_prefs(GSimpleAction* a, GVariant* p, gpointer user) {
  (void) a;
  (void) p;
  viewer_prefs_dialog(user);
}


static void act_quit(GSimpleAction* a, GVariant* p, gpointer user) {
  (void) a;
  (void) p;
  viewer_window_quit(user, 0);
}


static gboolean on_drop(GtkDropTarget* t,
                        const GValue* value,
                        double x,
                        double y,
                        gpointer user) {
  viewer_app_t* app = user;
  (void) t;
  (void) x;
  (void) y;
  if (!G_VALUE_HOLDS(value, GDK_TYPE_FILE_LIST)) {
    return FALSE;
  }
  GSList* files = g_value_get_boxed(value);
  if (files == NULL) {
    return FALSE;
  }
  char* path = g_file_get_path(files->data);
  if (path == NULL) {
    viewer_window_error(app, "Cannot open the dropped item",
                        "Only local files can be opened.");
    return FALSE;
  }
  viewer_window_open(app, path);
  g_free(path);
  return TRUE;
}


static GtkWidget* build_meta(viewer_app_t* app) {
  static const char* names[META_COUNT] = {
      "File",      "Shape (Z×Y×X)", "Voxel size (Å)", "Mode",
      "File size", "Min / max",     "Mean ± sd",      "Mask"};
  GtkWidget* box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 4);
  gtk_widget_set_margin_start(box, 12);
  gtk_widget_set_margin_top(box, 4);
  GtkWidget* g = viewer_panel_section(box, "Volume");
  for (int i = 0; i < META_COUNT; i++) {
    app->meta_values[i] = gtk_label_new("—");
    gtk_label_set_xalign(GTK_LABEL(app->meta_values[i]), 0);
    gtk_label_set_selectable(GTK_LABEL(app->meta_values[i]), TRUE);
    gtk_label_set_ellipsize(GTK_LABEL(app->meta_values[i]),
                            PANGO_ELLIPSIZE_MIDDLE);
    viewer_panel_row(g, i, names[i], app->meta_values[i]);
  }
  app->meta_grid = g;
  return box;
}


void viewer_window_build(viewer_app_t* app) {
  GtkWidget* win = gtk_application_window_new(app->gtk);
  app->window = GTK_WINDOW(win);
  gtk_window_set_title(app->window, "CryoMamba Viewer");
  gtk_window_set_default_size(app->window, 1280, 860);

  static const GActionEntry actions[] = {
      {"open", act_open, NULL, NULL, NULL, {0}},
      {"export-mask", act_export, NULL, NULL, NULL, {0}},
      {"screenshot", act_screenshot, NULL, NULL, NULL, {0}},
      {"window-screenshot", act_window_shot, NULL, NULL, NULL, {0}},
      {"preferences", act_prefs, NULL, NULL, NULL, {0}},
      {"quit", act_quit, NULL, NULL, NULL, {0}},
  };
  g_action_map_add_action_entries(G_ACTION_MAP(win), actions,
                                  G_N_ELEMENTS(actions), app);
  static const struct {
    const char* action;
    const char* accel;
  } accels[] = {
      {"win.open", "<Control>o"},       {"win.export-mask", "<Control>e"},
      {"win.screenshot", "<Control>s"}, {"win.preferences", "<Control>comma"},
      {"win.quit", "<Control>q"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(accels); i++) {
    const char* list[] = {accels[i].accel, NULL};
    gtk_application_set_accels_for_action(app->gtk, accels[i].action, list);
  }

  GtkWidget* header = gtk_header_bar_new();
  GtkWidget* open_b = gtk_button_new_with_mnemonic("_Open…");
  gtk_actionable_set_action_name(GTK_ACTIONABLE(open_b), "win.open");
  gtk_header_bar_pack_start(GTK_HEADER_BAR(header), open_b);
  GMenu* menu = g_menu_new();
  GMenu* file = g_menu_new();
  g_menu_append(file, "Open…", "win.open");
  g_menu_append(file, "Export mask as MRC…", "win.export-mask");
  g_menu_append(file, "Save screenshot of the views…", "win.screenshot");
  g_menu_append(file, "Save screenshot of the window…",
                "win.window-screenshot");
  g_menu_append_section(menu, NULL, G_MENU_MODEL(file));
  GMenu* other = g_menu_new();
  g_menu_append(other, "Preferences…", "win.preferences");
  g_menu_append(other, "Quit", "win.quit");
  g_menu_append_section(menu, NULL, G_MENU_MODEL(other));
  GtkWidget* menu_b = gtk_menu_button_new();
  gtk_menu_button_set_icon_name(GTK_MENU_BUTTON(menu_b), "open-menu-symbolic");
  gtk_menu_button_set_menu_model(GTK_MENU_BUTTON(menu_b), G_MENU_MODEL(menu));
  g_object_unref(file);
  g_object_unref(other);
  g_object_unref(menu);
  gtk_header_bar_pack_end(GTK_HEADER_BAR(header), menu_b);
  app->conn_label = gtk_label_new("○ no server");
  gtk_header_bar_pack_end(GTK_HEADER_BAR(header), app->conn_label);
  gtk_window_set_titlebar(app->window, header);

  GtkWidget* grid = gtk_grid_new();
  gtk_grid_set_row_homogeneous(GTK_GRID(grid), TRUE);
  gtk_grid_set_column_homogeneous(GTK_GRID(grid), TRUE);
  gtk_grid_set_row_spacing(GTK_GRID(grid), 4);
  gtk_grid_set_column_spacing(GTK_GRID(grid), 4);
  for (int i = 0; i < VIEWER_AXIS_COUNT; i++) {
    app->views[i] = viewer_view_new(app, (viewer_axis_t) i);
  }
  gtk_grid_attach(GTK_GRID(grid), viewer_view_widget(app->views[0]), 0, 0, 1,
                  1);
  gtk_grid_attach(GTK_GRID(grid), viewer_view_widget(app->views[2]), 1, 0, 1,
                  1);
  gtk_grid_attach(GTK_GRID(grid), viewer_view_widget(app->views[1]), 0, 1, 1,
                  1);
  gtk_grid_attach(GTK_GRID(grid), build_meta(app), 1, 1, 1, 1);

  GtkWidget* side = gtk_scrolled_window_new();
  gtk_scrolled_window_set_policy(GTK_SCROLLED_WINDOW(side), GTK_POLICY_NEVER,
                                 GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(side),
                                viewer_panel_sidebar(app));
  gtk_widget_set_size_request(side, 300, -1);

  GtkWidget* paned = gtk_paned_new(GTK_ORIENTATION_HORIZONTAL);
  gtk_paned_set_start_child(GTK_PANED(paned), grid);
  gtk_paned_set_end_child(GTK_PANED(paned), side);
  gtk_paned_set_resize_end_child(GTK_PANED(paned), FALSE);
  gtk_paned_set_shrink_end_child(GTK_PANED(paned), FALSE);
  gtk_widget_set_vexpand(paned, TRUE);

  GtkWidget* vbox = gtk_box_new(GTK_ORIENTATION_VERTICAL, 0);
  gtk_box_append(GTK_BOX(vbox), paned);
  app->status_label = gtk_label_new("Ready");
  gtk_label_set_xalign(GTK_LABEL(app->status_label), 0);
  gtk_widget_set_margin_start(app->status_label, 8);
  gtk_widget_set_margin_top(app->status_label, 2);
  gtk_widget_set_margin_bottom(app->status_label, 2);
  gtk_box_append(GTK_BOX(vbox), app->status_label);
  gtk_window_set_child(app->window, vbox);

  GtkDropTarget* drop =
      gtk_drop_target_new(GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect(drop, "drop", G_CALLBACK(on_drop), app);
  gtk_widget_add_controller(vbox, GTK_EVENT_CONTROLLER(drop));
}
