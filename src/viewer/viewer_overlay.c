/* viewer_overlay.c: what the slice views overlay, and the chunked delta
 * side of a watch (docs/protocol.md 11). A delta's on_chunks runs on the
 * main thread (dispatched) while the library holds its masks still: the
 * changed chunks are copied from them into app->chunks (viewer_chunks.c,
 * at most one round of 48 chunks, a memcpy each), and only the rectangles
 * they cover in the three displayed slices are composed again. The view
 * (the crosshair's three planes and the finest zoom of the views) goes to
 * the server through cm_sub_set_view at most once per
 * VIEWER_VIEW_INTERVAL_US, the last one always; the library sends it again
 * after each reconnect. Main thread. */
#include <math.h>
#include <string.h>

#include "viewer/viewer_job.h"

#define VIEWER_VIEW_INTERVAL_US 50000


bool viewer_overlay_has(const viewer_app_t* app) {
  return app->labels != NULL || app->chunks != NULL;
}


/* The chunk overlay is shown unless the final mask replaced it. */
static bool shows_chunks(const viewer_app_t* app) {
  return app->chunks != NULL && !app->is_final_mask;
}


const char* viewer_overlay_kind(const viewer_app_t* app) {
  if (shows_chunks(app)) {
    return "chunks";
  }
  if (app->labels == NULL) {
    return "none";
  }
  return app->is_final_mask ? "final" : "preview";
}


bool viewer_overlay_slice(viewer_app_t* app,
                          viewer_axis_t axis,
                          uint32_t index,
                          uint8_t* out) {
  if (shows_chunks(app)) {
    uint32_t rect[4] = {0, 0, 0, 0};
    viewer_slice_dims(&app->vol.shape, axis, &rect[2], &rect[3]);
    viewer_chunks_slice(app->chunks, axis, index, rect, out, rect[2]);
    return true;
  }
  if (app->labels == NULL) {
    return false;
  }
  viewer_slice_labels(app->labels, &app->vol.shape, axis, index, out);
  return true;
}


uint8_t viewer_overlay_label(const viewer_app_t* app, const uint32_t zyx[3]) {
  if (shows_chunks(app)) {
    return viewer_chunks_label(app->chunks, zyx[0], zyx[1], zyx[2]);
  }
  if (app->labels == NULL) {
    return 0;
  }
  const uint32_t* d = app->vol.shape.d;
  return app->labels[((size_t) zyx[0] * d[1] + zyx[1]) * d[2] + zyx[2]];
}


const uint8_t* viewer_overlay_volume(viewer_app_t* app, uint8_t** owned) {
  *owned = NULL;
  if (!shows_chunks(app)) {
    return app->labels;
  }
  *owned = g_try_malloc((size_t) core_shape_voxels(&app->vol.shape));
  if (*owned != NULL) {
    viewer_chunks_compose(app->chunks, *owned);
  }
  return *owned;
}


void viewer_overlay_drop(viewer_app_t* app) {
  if (app->chunks != NULL) {
    viewer_chunks_free(app->chunks);
    g_free(app->chunks);
    app->chunks = NULL;
    app->labels_version++;
  }
}


/* ---- the view ---------------------------------------------------------- */

static int64_t now_us(void) {
  return g_get_monotonic_time();
}


/* The zoom the server chooses the plane level by: 1 when a view shows
 * voxels at least a pixel wide, else 1/s for the largest power of two s
 * <= 1/zoom (the same level as the exact zoom, fewer distinct views). */
static double view_zoom(viewer_app_t* app) {
  double z = 0;
  for (int i = 0; i < VIEWER_AXIS_COUNT; i++) {
    z = fmax(z, viewer_view_zoom(app->views[i]));
  }
  if (z <= 0 || z >= 1) {
    return 1;
  }
  double s = 1;
  while (s < CORE_SCALE_MAX && 2 * s <= 1 / z) {
    s *= 2;
  }
  return 1 / s;
}


static void send_view(viewer_app_t* app, const int64_t v[3], double zoom) {
  viewer_job_t* job = app->job;
  int rc = cm_sub_set_view(job->sub, v[0], v[1], v[2], zoom);
  if (rc != 0) {
    g_warning("view not sent: %s", cm_strerror(rc));
    return;
  }
  viewer_say("view z=%lld y=%lld x=%lld zoom=%g sent (t=%.3f s)",
             (long long) v[0], (long long) v[1], (long long) v[2], zoom,
             (double) now_us() / 1e6);
}


static gboolean on_view_timer(gpointer user) {
  viewer_app_t* app = user;
  viewer_job_t* job = app->job;
  job->view_timer = 0;
  int64_t v[3], wait;
  double zoom;
  if (job->sub == NULL) {
    return G_SOURCE_REMOVE;
  }
  if (viewer_throttle_due(&job->throttle, now_us(), v, &zoom, &wait)) {
    send_view(app, v, zoom);
  } else if (wait > 0) {
    job->view_timer =
        g_timeout_add((guint) ((wait + 999) / 1000), on_view_timer, app);
  }
  return G_SOURCE_REMOVE;
}


void viewer_overlay_view_changed(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job == NULL || job->sub == NULL || job->encoding != CM_ENCODING_CHUNKS ||
      !app->has_volume) {
    return;
  }
  int64_t v[3] = {app->cursor[0], app->cursor[1], app->cursor[2]};
  double zoom = view_zoom(app);
  int64_t wait;
  if (viewer_throttle_want(&job->throttle, v, zoom, now_us(), &wait)) {
    send_view(app, v, zoom);
  } else if (wait > 0 && job->view_timer == 0) {
    job->view_timer =
        g_timeout_add((guint) ((wait + 999) / 1000), on_view_timer, app);
  }
}


void viewer_overlay_sub_started(viewer_app_t* app) {
  viewer_job_t* job = app->job;
  if (job->view_timer != 0) {
    g_source_remove(job->view_timer);
    job->view_timer = 0;
  }
  viewer_throttle_init(&job->throttle, VIEWER_VIEW_INTERVAL_US);
  job->plane_chunks = 0;
  viewer_overlay_view_changed(app);
}


/* ---- deltas ------------------------------------------------------------ */

/* app->chunks at the delta's level (again after a keyframe at another). */
static bool ensure_chunks(viewer_app_t* app, const cm_chunks_t* ev) {
  viewer_chunks_t* c = app->chunks;
  if (c != NULL && (1u << c->level) == ev->scale) {
    return true;
  }
  viewer_overlay_drop(app);
  c = g_new0(viewer_chunks_t, 1);
  int rc = viewer_chunks_init(c, &app->vol.shape, ev->scale);
  if (rc != 0) {
    g_free(c);
    char* msg = g_strdup_printf(
        "No overlay: the chunk mask at scale %u needs memory: %s", ev->scale,
        g_strerror(-rc));
    viewer_window_status(app, msg);
    g_free(msg);
    return false;
  }
  app->chunks = c;
  app->is_final_mask = false; /* a final mask of an earlier job is moot */
  return true;
}


/* The changed chunk's rectangles in the three slices, composed again. */
static void redraw_chunk(viewer_app_t* app, const cm_chunk_ref_t* r) {
  for (int a = 0; a < VIEWER_AXIS_COUNT; a++) {
    static const int fixed[VIEWER_AXIS_COUNT] = {0, 1, 2}; /* XY, XZ, YZ */
    uint32_t rect[4];
    if (viewer_chunks_rect(&app->vol.shape, r->scale, r->lo, r->hi,
                           (viewer_axis_t) a, app->cursor[fixed[a]], rect)) {
      viewer_view_labels_rect(app->views[a], rect);
    }
  }
}


void viewer_overlay_chunks(viewer_app_t* app,
                           cm_sub_t* sub,
                           const cm_chunks_t* ev) {
  viewer_job_t* job = app->job;
  if (job->wants_final || !app->has_volume || !ensure_chunks(app, ev)) {
    return;
  }
  viewer_chunks_t* c = app->chunks;
  job->received++;
  bool is_full = false;
  if (ev->is_keyframe) {
    viewer_chunks_clear(c);
    is_full = true;
  }
  int pl =
      ev->plane_scale > 0 ? core_chunk_level_of_scale(ev->plane_scale) : -1;
  /* A delta without a view (the view not yet there after a reconnect)
   * keeps the plane level: the chunks received stay shown, and the view's
   * come again with the next delta that has it. */
  if (pl >= 0 && pl != c->plane_level) {
    c->plane_level = pl; /* another level shown where received */
    is_full = true;
  }
  size_t planes = 0;
  for (size_t i = 0; i < ev->chunk_count; i++) {
    const cm_chunk_ref_t* r = &ev->chunks[i];
    uint32_t shape[3];
    const uint8_t* m = cm_sub_chunk_mask(sub, r->scale, shape);
    int rc = viewer_chunks_copy(c, r->scale, r->lo, r->hi, m, shape);
    if (rc != 0) {
      g_warning("chunk (%u,%u,%u) at scale %u not shown: %s", r->c[0], r->c[1],
                r->c[2], r->scale, g_strerror(-rc));
      continue;
    }
    planes += r->scale != ev->scale;
    if (!is_full) {
      redraw_chunk(app, r);
    }
  }
  job->plane_chunks += planes;
  if (is_full) {
    viewer_window_labels_changed(app, NULL); /* every slice composed again */
  }
  viewer_say(
      "delta seq %llu: %zu chunks (%zu at scale %u, %zu at plane "
      "scale %u)%s%s",
      (unsigned long long) ev->seq, ev->chunk_count, ev->chunk_count - planes,
      ev->scale, planes, ev->plane_scale, ev->is_keyframe ? ", keyframe" : "",
      ev->is_complete ? ", complete" : "");
  if (!ev->is_complete) {
    return;
  }
  job->shown++;
  viewer_say(
      "chunks seq %llu shown (%llu received, %llu shown; %llu voxels "
      "labelled at scale %u; %llu plane chunks so far)",
      (unsigned long long) ev->seq, (unsigned long long) job->received,
      (unsigned long long) job->shown, (unsigned long long) c->labelled,
      ev->scale, (unsigned long long) job->plane_chunks);
  viewer_job_show_progress(app);
  viewer_preview_shown(app);
}
