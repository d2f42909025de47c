/* viewer_window.c: the main window of cryomamba-viewer: header bar and
 * menu, the three slice views in an orthogonal grid with the metadata
 * panel and the sidebar (viewer_panel.c), the actions (open, export,
 * screenshots, preferences, quit; drag and drop), window/level, the
 * crosshair, and error reporting. Opening a volume, with its statistics on
 * a worker thread, is viewer_open.c (viewer_window_int.h). Main thread. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "viewer/viewer_app.h"
#include "viewer/viewer_window_int.h"

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


void viewer_window_set_meta(viewer_app_t* app, int row, const char* text) {
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
    viewer_window_set_meta(
        app, META_MASK,
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
    viewer_window_set_meta(app, META_MASK, text);
  }
  viewer_window_redraw(app);
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
