/* viewer_open.c: opening a volume in cryomamba-viewer (the window is
 * viewer_window.c; viewer_window_int.h their share): the volume mapped, the
 * previous one closed, the metadata panel filled, a first window/level
 * from the central slice, then statistics and percentiles computed on a
 * worker thread, and the automatic window/level. Main thread; the
 * statistics task owns a copy of the mapping's description and is the one
 * to unmap it if the volume was replaced meanwhile. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "viewer/viewer_app.h"
#include "viewer/viewer_window_int.h"


#define PCT_LO 0.5
#define PCT_HI 99.5
#define STATS_SAMPLES (1u << 20)

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
    viewer_window_set_meta(st->app, META_RANGE, text);
    viewer_window_set_meta(st->app, META_MEAN, text);
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
    viewer_window_set_meta(app, META_RANGE, text);
    snprintf(text, sizeof(text), "%.4g ± %.4g", st->stats.mean,
             st->stats.stddev);
    viewer_window_set_meta(app, META_MEAN, text);
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
  viewer_window_set_meta(app, META_RANGE, "computing…");
  viewer_window_set_meta(app, META_MEAN, "computing…");
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
  viewer_window_set_meta(app, META_FILE, base);
  snprintf(text, sizeof(text), "%u × %u × %u", vol.shape.d[0], vol.shape.d[1],
           vol.shape.d[2]);
  viewer_window_set_meta(app, META_SHAPE, text);
  const double* vs = vol.header.voxel_size;
  snprintf(text, sizeof(text), "%.3g × %.3g × %.3g", vs[0], vs[1], vs[2]);
  viewer_window_set_meta(app, META_VOXEL, text);
  snprintf(text, sizeof(text), "%d (%s)", vol.mode, viewer_mode_name(vol.mode));
  viewer_window_set_meta(app, META_MODE, text);
  char* size = g_format_size(vol.file_len);
  viewer_window_set_meta(app, META_SIZE, size);
  g_free(size);
  viewer_window_set_meta(app, META_MASK, "none");
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
