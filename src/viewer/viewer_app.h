/* viewer_app.h: the state the GUI modules of cryomamba-viewer share. One
 * viewer_app_t per process, touched only on the GTK main thread; workers
 * get copies or owned buffers and hand results back with idle callbacks.
 * Modules: main.c (command line), viewer_window.c (window, actions,
 * metadata, window/level), viewer_open.c (opening a volume, statistics),
 * viewer_view.c (one slice view), viewer_panel.c (sidebar), viewer_server.c
 * (server checks, engines), viewer_upload.c (the volume's upload), viewer_job.c
 * (job, watch), viewer_preview.c (previews, final mask), viewer_overlay.c
 * (chunked deltas, the view sent to the server, what the views overlay),
 * viewer_prefs.c (preferences), viewer_shot.c (screenshots). */
#ifndef VIEWER_APP_H
#define VIEWER_APP_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#include <gtk/gtk.h>
#pragma GCC diagnostic pop

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cryomamba/client.h"
#include "viewer/viewer_chunks.h"
#include "viewer/viewer_labels.h"
#include "viewer/viewer_render.h"
#include "viewer/viewer_volume.h"

typedef struct viewer_view_s viewer_view_t;
typedef struct viewer_job_s viewer_job_t;

/* Command-line options (main.c); strings are owned (g_free). */
typedef struct {
  char* server_url; /* overrides the preferences for this run */
  char* token;
  char* cacert;      /* --cacert: https CA file for this run */
  bool insecure_tls; /* --insecure-skip-tls-verify (this run only) */
  char* open_path;
  bool submit;
  char* attach_id;
  double hz;       /* 0: the preferences' value */
  int scale;       /* 0: idem */
  double duration; /* < 0: idem */
  char* pattern;   /* NULL: idem */
  int64_t seed;    /* < 0: idem */
  char* screenshot;
  char* window_shot;
  char* export_mask;
  int after_previews; /* screenshot after this many previews shown */
  int cancel_after;   /* cancel the job after this many previews shown */
  bool stay;          /* do not quit after the automated screenshot */
  double opacity;     /* < 0: the preferences' value */
  int max_retries;    /* --max-retries: failed attempts in a row of the
                         subscription and of the upload; 0: never give
                         up; < 0: the preferences' */
  char* engine;       /* NULL: the preferences', else classic or sim */
  bool no_upload;     /* submit the shape only */
  /* Test automation: cancel the upload (as the Cancel button) / quit (as
   * closing the window) once this many bytes are on the server; 0: off. */
  int64_t cancel_upload_after;
  int64_t quit_upload_after;
  int encoding;       /* --encoding: a cm_encoding_t; -1: chunks when the server
                         lists them, else base64 */
  bool no_final_mask; /* tests: at completion keep the chunk overlay, do
                         not download mask.mrc */
  int drag_after;     /* tests: after N shown, step the XY slice up
                         VIEWER_DRAG_STEPS times, 2 ms apart (a drag) */
} viewer_opts_t;

#define VIEWER_DRAG_STEPS 20

/* Preferences (viewer_prefs.c), kept in
 * $XDG_CONFIG_HOME/cryomamba/viewer.ini. Strings owned. */
typedef struct {
  char* server_url;
  char* token;
  char* ca_file; /* [server] ca_file, else $CRYOMAMBA_CACERT; "" or NULL:
                    the system trust store */
  double hz;
  int scale;
  double duration;
  char* pattern;
  int64_t seed;
  double opacity;
  char* engine;    /* "" or NULL: automatic (classic if listed, else sim) */
  bool upload;     /* upload the volume before submitting (else shape only) */
  int max_retries; /* [server] max_retries: failed attempts in a row before
                      giving up, reconnects and upload retries alike; 0:
                      never give up (the default) */
} viewer_prefs_t;

typedef struct viewer_app_s {
  GtkApplication* gtk;
  GtkWindow* window;
  viewer_opts_t opts;
  viewer_prefs_t prefs;
  bool is_automated; /* --screenshot/--export-mask: errors exit, no dialog */

  /* The open volume. */
  bool has_volume;
  viewer_volume_t vol;
  char* path;
  viewer_wl_t wl;
  bool wl_is_manual; /* the user changed it: background stats keep off */
  viewer_wl_lut_t lut;
  uint64_t grey_version; /* bumped when the volume or window changes */
  uint32_t cursor[3];    /* z, y, x: crosshair and shown slices */
  void* stats_task;      /* the running statistics task (viewer_open.c) */

  /* The overlay: the chunk masks of a chunks subscription (NULL without
   * one; shown unless the final mask is), else full-resolution labels, or
   * NULL. */
  viewer_chunks_t* chunks;
  uint8_t* labels;
  uint8_t* spare; /* a free buffer of the same size for the next preview */
  uint64_t labels_version;
  bool is_final_mask;
  bool show_mask;
  double opacity;

  viewer_view_t* views[VIEWER_AXIS_COUNT];
  viewer_job_t* job;

  /* Widgets the modules update. */
  GtkWidget* meta_grid;
  GtkWidget* meta_values[8];
  GtkWidget* level_spin;
  GtkWidget* window_spin;
  GtkWidget* show_mask_check;
  GtkWidget* opacity_scale;
  GtkWidget* conn_label;
  GtkWidget* status_label;
  GtkWidget* job_box;
  GtkWidget *hz_spin, *scale_spin, *duration_spin, *seed_spin;
  GtkWidget* pattern_drop;
  GtkWidget* engine_drop;
  GtkWidget* upload_check;
  char* engine_choice; /* the engine the user picked in the panel, or NULL */
  GtkWidget* attach_entry;
  GtkWidget *submit_button, *attach_button, *cancel_button;
  GtkWidget* progress_bar;
  GtkWidget* job_label;
  bool is_updating_controls; /* setting widgets from code: no feedback */

  bool shot_done; /* the automated screenshot was written */
} viewer_app_t;

/* "viewer: ..." on stdout (flushed): the lines tests and scripts read. */
void viewer_say(const char* fmt, ...) G_GNUC_PRINTF(1, 2);

/* viewer_window.c */
void viewer_window_build(viewer_app_t* app);
int viewer_window_open(viewer_app_t* app, const char* path);
void viewer_window_error(viewer_app_t* app,
                         const char* title,
                         const char* detail);
void viewer_window_status(viewer_app_t* app, const char* text);
void viewer_window_set_cursor(viewer_app_t* app, const uint32_t zyx[3]);
void viewer_window_set_wl(viewer_app_t* app, viewer_wl_t wl, bool is_manual);
/* The overlay changed; `counts` (may be NULL): voxels per label. */
void viewer_window_labels_changed(viewer_app_t* app,
                                  const uint64_t counts[256]);
void viewer_window_quit(viewer_app_t* app, int status);
void viewer_window_redraw(viewer_app_t* app); /* every view */
void viewer_window_auto_wl(viewer_app_t* app);

/* viewer_panel.c */
GtkWidget* viewer_panel_sidebar(viewer_app_t* app);
/* A bold title and a two-column grid under it in `box`; the grid. */
GtkWidget* viewer_panel_section(GtkWidget* box, const char* title);
/* A "name | widget" row of such a grid. */
void viewer_panel_row(GtkWidget* grid, int row, const char* name, GtkWidget* w);

/* viewer_view.c */
viewer_view_t* viewer_view_new(viewer_app_t* app, viewer_axis_t axis);
GtkWidget* viewer_view_widget(viewer_view_t* view);
void viewer_view_volume_changed(viewer_view_t* view); /* reset zoom, range */
void viewer_view_redraw(viewer_view_t* view);         /* crosshair moved */
/* Screen pixels per voxel as drawn now (0 before the first layout). */
double viewer_view_zoom(viewer_view_t* view);
/* Labels of rectangle rect = {col, row, width, height} of the view's slice
 * changed in the chunk overlay: only that part is composed again. */
void viewer_view_labels_rect(viewer_view_t* view, const uint32_t rect[4]);
/* The composed slice as displayed (0xAARRGGBB), refreshed if stale;
 * borrowed until the next call. NULL without a volume. */
const uint32_t* viewer_view_pixels(viewer_view_t* view,
                                   uint32_t* width,
                                   uint32_t* height);
void viewer_view_free(viewer_view_t* view);

/* viewer_job.c */
void viewer_job_init(viewer_app_t* app);
void viewer_job_reset_client(viewer_app_t* app); /* after prefs change */
/* Submit: uploads the open volume (unless shape-only), then creates the
 * job. */
void viewer_job_submit(viewer_app_t* app);
/* --submit: submits once the first server check (engines) is done. */
void viewer_job_submit_when_ready(viewer_app_t* app);
void viewer_job_attach(viewer_app_t* app, const char* job_id);
/* --attach: attaches once the first server check (encodings) is done. */
void viewer_job_attach_when_ready(viewer_app_t* app);
/* The Cancel button: the running upload, else the job. */
void viewer_job_cancel(viewer_app_t* app);
void viewer_job_volume_changed(viewer_app_t* app);
void viewer_job_shutdown(viewer_app_t* app);

/* viewer_server.c */
/* The https CA file (command line, else preferences); NULL: the system's. */
const char* viewer_server_cacert(const viewer_app_t* app);
/* Health check of url/token (https: trusting ca_file, NULL or "": the
 * system's); `done(ok, sentence, user)` on the main thread. */
void viewer_job_test_connection(viewer_app_t* app,
                                const char* url,
                                const char* token,
                                const char* ca_file,
                                void (*done)(bool ok,
                                             const char* msg,
                                             void* user),
                                void* user);
/* Refills the Engine drop-down from the server's list (or the fallback
 * list when unknown) and selects the wanted engine. */
void viewer_server_fill_engines(viewer_app_t* app);
/* The Engine drop-down changed: sim-only fields follow, tooltip. */
void viewer_server_engine_changed(viewer_app_t* app);
/* The selected engine's name (borrowed until the drop-down changes). */
const char* viewer_server_engine(viewer_app_t* app);

/* viewer_overlay.c */
/* The labels of slice `index` along `axis` into `out` (a slice image);
 * false when no mask is shown. */
bool viewer_overlay_slice(viewer_app_t* app,
                          viewer_axis_t axis,
                          uint32_t index,
                          uint8_t* out);
/* Whether a mask is shown, and the label at voxel zyx. */
bool viewer_overlay_has(const viewer_app_t* app);
uint8_t viewer_overlay_label(const viewer_app_t* app, const uint32_t zyx[3]);
/* "none", "preview", "chunks" or "final": what the overlay shows. */
const char* viewer_overlay_kind(const viewer_app_t* app);
/* The shown mask at full resolution: app->labels, or the chunk overlay
 * composed into *owned (g_free it); NULL when none (or out of memory). */
const uint8_t* viewer_overlay_volume(viewer_app_t* app, uint8_t** owned);
/* The crosshair or a zoom changed: the view goes to the server
 * (coalesced). */
void viewer_overlay_view_changed(viewer_app_t* app);
/* Drops the chunk overlay (another job or volume). */
void viewer_overlay_drop(viewer_app_t* app);

/* viewer_prefs.c */
void viewer_prefs_load(viewer_prefs_t* prefs);
int viewer_prefs_save(const viewer_prefs_t* prefs, char** err);
void viewer_prefs_clear(viewer_prefs_t* prefs);
/* Failed attempts in a row before giving up (--max-retries, else the
 * preferences'), for reconnects and upload retries alike; 0: never. */
unsigned viewer_max_retries(const viewer_app_t* app);
void viewer_prefs_dialog(viewer_app_t* app);

/* viewer_shot.c: PNG of the three views at one pixel per voxel in the
 * orthogonal layout (viewer_ortho_layout), or of the whole window. */
int viewer_shot_views_png(viewer_app_t* app, const char* path, char** err);
int viewer_shot_window_png(viewer_app_t* app, const char* path, char** err);
/* The automation of --screenshot / --export-mask: `why` names the moment.
 */
void viewer_shot_automation(viewer_app_t* app, const char* why);

#endif
