/* viewer_panel.c: the sidebar of the main window: display controls
 * (level, window, automatic window, mask visibility and opacity) and the
 * job controls (engine, parameters, upload or shape only, Submit, Attach,
 * progress of the upload and of the job, Cancel), with the
 * small layout helpers the metadata panel shares. Main thread. */
#include <string.h>

#include "viewer/viewer_app.h"

static void on_wl_spin(GtkSpinButton* b, gpointer user) {
  viewer_app_t* app = user;
  (void) b;
  if (app->is_updating_controls || !app->has_volume) {
    return;
  }
  double c = gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->level_spin));
  double w = gtk_spin_button_get_value(GTK_SPIN_BUTTON(app->window_spin));
  viewer_wl_t wl = {c - w / 2, c + w / 2};
  viewer_window_set_wl(app, wl, true);
}


static void on_auto_wl(GtkButton* b, gpointer user) {
  (void) b;
  viewer_window_auto_wl(user);
}


static void on_show_mask(GtkCheckButton* b, gpointer user) {
  viewer_app_t* app = user;
  app->show_mask = gtk_check_button_get_active(b);
  viewer_window_redraw(app);
}


static void on_opacity(GtkRange* r, gpointer user) {
  viewer_app_t* app = user;
  app->opacity = gtk_range_get_value(r);
  viewer_window_redraw(app);
}


GtkWidget* viewer_panel_section(GtkWidget* box, const char* title) {
  GtkWidget* l = gtk_label_new(NULL);
  char* markup = g_markup_printf_escaped("<b>%s</b>", title);
  gtk_label_set_markup(GTK_LABEL(l), markup);
  g_free(markup);
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_widget_set_margin_top(l, 8);
  gtk_box_append(GTK_BOX(box), l);
  GtkWidget* grid = gtk_grid_new();
  gtk_grid_set_row_spacing(GTK_GRID(grid), 4);
  gtk_grid_set_column_spacing(GTK_GRID(grid), 8);
  gtk_box_append(GTK_BOX(box), grid);
  return grid;
}


void viewer_panel_row(GtkWidget* grid,
                      int row,
                      const char* name,
                      GtkWidget* w) {
  GtkWidget* l = gtk_label_new(name);
  gtk_label_set_xalign(GTK_LABEL(l), 0);
  gtk_grid_attach(GTK_GRID(grid), l, 0, row, 1, 1);
  gtk_widget_set_hexpand(w, TRUE);
  gtk_grid_attach(GTK_GRID(grid), w, 1, row, 1, 1);
}


static GtkWidget* spin(double lo, double hi, double step, int digits) {
  GtkWidget* s = gtk_spin_button_new_with_range(lo, hi, step);
  gtk_spin_button_set_digits(GTK_SPIN_BUTTON(s), (guint) digits);
  return s;
}


static void on_submit(GtkButton* b, gpointer user) {
  (void) b;
  viewer_job_submit(user);
}


static void on_attach(GtkButton* b, gpointer user) {
  viewer_app_t* app = user;
  (void) b;
  const char* id = gtk_editable_get_text(GTK_EDITABLE(app->attach_entry));
  char* copy = g_strstrip(g_strdup(id));
  viewer_job_attach(app, copy);
  g_free(copy);
}


static void on_cancel(GtkButton* b, gpointer user) {
  (void) b;
  viewer_job_cancel(user);
}


static void on_engine(GObject* drop, GParamSpec* pspec, gpointer user) {
  viewer_app_t* app = user;
  (void) drop;
  (void) pspec;
  if (app->is_updating_controls) {
    return;
  }
  const char* name = viewer_server_engine(app);
  g_free(app->engine_choice);
  app->engine_choice = g_strdup(name);
  viewer_server_engine_changed(app);
}


GtkWidget* viewer_panel_sidebar(viewer_app_t* app) {
  GtkWidget* box = gtk_box_new(GTK_ORIENTATION_VERTICAL, 4);
  gtk_widget_set_margin_start(box, 10);
  gtk_widget_set_margin_end(box, 10);
  gtk_widget_set_margin_bottom(box, 10);

  GtkWidget* g = viewer_panel_section(box, "Display");
  app->level_spin = spin(-1e9, 1e9, 0.01, 3);
  app->window_spin = spin(0, 1e9, 0.01, 3);
  g_signal_connect(app->level_spin, "value-changed", G_CALLBACK(on_wl_spin),
                   app);
  g_signal_connect(app->window_spin, "value-changed", G_CALLBACK(on_wl_spin),
                   app);
  viewer_panel_row(g, 0, "Level", app->level_spin);
  viewer_panel_row(g, 1, "Window", app->window_spin);
  GtkWidget* auto_b = gtk_button_new_with_label("Auto window (0.5–99.5 %)");
  g_signal_connect(auto_b, "clicked", G_CALLBACK(on_auto_wl), app);
  gtk_grid_attach(GTK_GRID(g), auto_b, 0, 2, 2, 1);
  app->show_mask_check = gtk_check_button_new_with_label("Show mask");
  gtk_check_button_set_active(GTK_CHECK_BUTTON(app->show_mask_check),
                              app->show_mask);
  g_signal_connect(app->show_mask_check, "toggled", G_CALLBACK(on_show_mask),
                   app);
  gtk_grid_attach(GTK_GRID(g), app->show_mask_check, 0, 3, 2, 1);
  app->opacity_scale =
      gtk_scale_new_with_range(GTK_ORIENTATION_HORIZONTAL, 0, 1, 0.05);
  gtk_range_set_value(GTK_RANGE(app->opacity_scale), app->opacity);
  g_signal_connect(app->opacity_scale, "value-changed", G_CALLBACK(on_opacity),
                   app);
  viewer_panel_row(g, 4, "Opacity", app->opacity_scale);

  g = viewer_panel_section(box, "Segmentation job");
  app->engine_drop = gtk_drop_down_new(NULL, NULL);
  g_signal_connect(app->engine_drop, "notify::selected", G_CALLBACK(on_engine),
                   app);
  app->hz_spin = spin(0.1, 30, 0.5, 1);
  app->scale_spin = spin(1, 16, 1, 0);
  app->duration_spin = spin(1, 86400, 5, 0);
  app->seed_spin = spin(0, 1e9, 1, 0);
  app->pattern_drop = gtk_drop_down_new_from_strings(
      (const char* const[]){"random", "blobs", NULL});
  int row = 0;
  viewer_panel_row(g, row++, "Engine", app->engine_drop);
  viewer_panel_row(g, row++, "Previews / s", app->hz_spin);
  viewer_panel_row(g, row++, "Preview scale", app->scale_spin);
  viewer_panel_row(g, row++, "Duration (s)", app->duration_spin);
  viewer_panel_row(g, row++, "Pattern", app->pattern_drop);
  viewer_panel_row(g, row++, "Seed", app->seed_spin);
  app->upload_check = gtk_check_button_new_with_label(
      "Upload the volume (else its shape only)");
  gtk_grid_attach(GTK_GRID(g), app->upload_check, 0, row++, 2, 1);
  app->submit_button = gtk_button_new_with_label("Submit job");
  gtk_widget_add_css_class(app->submit_button, "suggested-action");
  gtk_widget_set_sensitive(app->submit_button, FALSE);
  g_signal_connect(app->submit_button, "clicked", G_CALLBACK(on_submit), app);
  gtk_grid_attach(GTK_GRID(g), app->submit_button, 0, row++, 2, 1);
  app->attach_entry = gtk_entry_new();
  gtk_entry_set_placeholder_text(GTK_ENTRY(app->attach_entry), "job id");
  app->attach_button = gtk_button_new_with_label("Attach");
  g_signal_connect(app->attach_button, "clicked", G_CALLBACK(on_attach), app);
  gtk_grid_attach(GTK_GRID(g), app->attach_entry, 0, row, 1, 1);
  gtk_grid_attach(GTK_GRID(g), app->attach_button, 1, row++, 1, 1);
  app->progress_bar = gtk_progress_bar_new();
  gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(app->progress_bar), TRUE);
  gtk_progress_bar_set_text(GTK_PROGRESS_BAR(app->progress_bar), "no job");
  gtk_grid_attach(GTK_GRID(g), app->progress_bar, 0, row++, 2, 1);
  app->job_label = gtk_label_new("");
  gtk_label_set_wrap(GTK_LABEL(app->job_label), TRUE);
  gtk_label_set_xalign(GTK_LABEL(app->job_label), 0);
  gtk_label_set_selectable(GTK_LABEL(app->job_label), TRUE);
  gtk_label_set_max_width_chars(GTK_LABEL(app->job_label), 34);
  gtk_grid_attach(GTK_GRID(g), app->job_label, 0, row++, 2, 1);
  app->cancel_button = gtk_button_new_with_label("Cancel job");
  gtk_widget_add_css_class(app->cancel_button, "destructive-action");
  gtk_widget_set_sensitive(app->cancel_button, FALSE);
  g_signal_connect(app->cancel_button, "clicked", G_CALLBACK(on_cancel), app);
  gtk_grid_attach(GTK_GRID(g), app->cancel_button, 0, row++, 2, 1);

  /* Job parameters start from the preferences; the command line wins. */
  const viewer_opts_t* o = &app->opts;
  const viewer_prefs_t* p = &app->prefs;
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(app->hz_spin),
                            o->hz > 0 ? o->hz : p->hz);
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(app->scale_spin),
                            o->scale > 0 ? o->scale : p->scale);
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(app->duration_spin),
                            o->duration >= 0 ? o->duration : p->duration);
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(app->seed_spin),
                            (double) (o->seed >= 0 ? o->seed : p->seed));
  const char* pat = o->pattern != NULL ? o->pattern : p->pattern;
  gtk_drop_down_set_selected(GTK_DROP_DOWN(app->pattern_drop),
                             pat != NULL && strcmp(pat, "blobs") == 0 ? 1 : 0);
  gtk_check_button_set_active(GTK_CHECK_BUTTON(app->upload_check),
                              p->upload && !o->no_upload);
  viewer_server_fill_engines(app); /* sim until the server lists its own */
  return box;
}
