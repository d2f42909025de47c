/* viewer_shot.c: screenshots. The views' PNG is composed from the slices
 * exactly as the views compute them (grey + overlay), at one pixel per
 * voxel, in the orthogonal layout of viewer_ortho_layout (XY top left, YZ
 * right of it, XZ below), without crosshair or zoom: a record of what the
 * data looks like, and what the end-to-end tests check pixel by pixel. The
 * window's PNG renders the widget tree offscreen with the window's own
 * renderer. Also the --screenshot/--export-mask automation. Main thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "viewer/viewer_app.h"

#define SHOT_GAP 4
#define SHOT_BACKGROUND 0xff202020u


int viewer_shot_views_png(viewer_app_t* app, const char* path, char** err) {
  if (!app->has_volume) {
    *err = g_strdup("no volume is open");
    return -1;
  }
  uint32_t rects[VIEWER_AXIS_COUNT][4], w, h;
  viewer_ortho_layout(&app->vol.shape, SHOT_GAP, rects, &w, &h);
  cairo_surface_t* s =
      cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int) w, (int) h);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    *err = g_strdup("cannot allocate the image");
    cairo_surface_destroy(s);
    return -1;
  }
  cairo_surface_flush(s);
  uint8_t* data = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (uint32_t y = 0; y < h; y++) {
    uint32_t* row = (uint32_t*) (data + (size_t) y * (size_t) stride);
    for (uint32_t x = 0; x < w; x++) {
      row[x] = SHOT_BACKGROUND;
    }
  }
  for (int a = 0; a < VIEWER_AXIS_COUNT; a++) {
    uint32_t vw, vh;
    const uint32_t* px = viewer_view_pixels(app->views[a], &vw, &vh);
    if (px == NULL || vw != rects[a][2] || vh != rects[a][3]) {
      continue;
    }
    for (uint32_t y = 0; y < vh; y++) {
      uint32_t* row =
          (uint32_t*) (data + (size_t) (rects[a][1] + y) * (size_t) stride) +
          rects[a][0];
      memcpy(row, px + (size_t) y * vw, (size_t) vw * 4);
    }
  }
  cairo_surface_mark_dirty(s);
  cairo_status_t st = cairo_surface_write_to_png(s, path);
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS) {
    *err = g_strdup_printf("cannot write %s: %s", path,
                           cairo_status_to_string(st));
    return -1;
  }
  return 0;
}


int viewer_shot_window_png(viewer_app_t* app, const char* path, char** err) {
  GtkWidget* win = GTK_WIDGET(app->window);
  GskRenderer* renderer = gtk_native_get_renderer(GTK_NATIVE(win));
  int w = gtk_widget_get_width(win), h = gtk_widget_get_height(win);
  if (renderer == NULL || w <= 0 || h <= 0) {
    *err = g_strdup("the window is not shown yet");
    return -1;
  }
  GdkPaintable* p = gtk_widget_paintable_new(win);
  GtkSnapshot* snap = gtk_snapshot_new();
  gdk_paintable_snapshot(p, GDK_SNAPSHOT(snap), w, h);
  GskRenderNode* node = gtk_snapshot_free_to_node(snap);
  g_object_unref(p);
  if (node == NULL) {
    *err = g_strdup("nothing to render");
    return -1;
  }
  graphene_rect_t vp = GRAPHENE_RECT_INIT(0, 0, (float) w, (float) h);
  GdkTexture* tex = gsk_renderer_render_texture(renderer, node, &vp);
  gsk_render_node_unref(node);
  gboolean ok = gdk_texture_save_to_png(tex, path);
  g_object_unref(tex);
  if (!ok) {
    *err = g_strdup_printf("cannot write %s", path);
    return -1;
  }
  return 0;
}


static void finish_automation(viewer_app_t* app, const char* why) {
  viewer_opts_t* o = &app->opts;
  int status = 0;
  char* err = NULL;
  if (o->export_mask != NULL) {
    uint8_t* owned;
    const uint8_t* mask = viewer_overlay_volume(app, &owned);
    if (!viewer_overlay_has(app)) {
      viewer_say("no mask to export (%s)", why);
      status = 1;
    } else {
      int rc = mask != NULL ? viewer_labels_write_mrc(
                                  o->export_mask, mask, &app->vol.shape,
                                  app->vol.header.voxel_size)
                            : -ENOMEM;
      if (rc != 0) {
        viewer_say("cannot export the mask to %s: %s", o->export_mask,
                   g_strerror(-rc));
        status = 1;
      } else {
        viewer_say("mask exported to %s (%s)", o->export_mask,
                   viewer_overlay_kind(app));
      }
    }
    g_free(owned);
  }
  if (o->screenshot != NULL) {
    if (viewer_shot_views_png(app, o->screenshot, &err) != 0) {
      viewer_say("screenshot failed: %s", err);
      g_clear_pointer(&err, g_free);
      status = 1;
    } else {
      viewer_say(
          "screenshot %s (%s; cursor z=%u y=%u x=%u; mask %s; opacity %.3f)",
          o->screenshot, why, app->cursor[0], app->cursor[1], app->cursor[2],
          viewer_overlay_kind(app), app->opacity);
    }
  }
  if (o->window_shot != NULL) {
    if (viewer_shot_window_png(app, o->window_shot, &err) != 0) {
      viewer_say("window screenshot failed: %s", err);
      g_clear_pointer(&err, g_free);
      status = 1;
    } else {
      viewer_say("window screenshot %s", o->window_shot);
    }
  }
  if (!o->stay) {
    viewer_window_quit(app, status);
  }
}


typedef struct {
  viewer_app_t* app;
  char* why;
  int frames;
} pending_shot_t;


/* True once the window has content to snapshot: right after it is mapped
 * (a job that ends at once) it may not have been drawn yet. */
static bool window_is_drawn(viewer_app_t* app) {
  GtkWidget* win = GTK_WIDGET(app->window);
  int w = gtk_widget_get_width(win), h = gtk_widget_get_height(win);
  if (gtk_native_get_renderer(GTK_NATIVE(win)) == NULL || w <= 0 || h <= 0) {
    return false;
  }
  GdkPaintable* p = gtk_widget_paintable_new(win);
  GtkSnapshot* snap = gtk_snapshot_new();
  gdk_paintable_snapshot(p, GDK_SNAPSHOT(snap), w, h);
  GskRenderNode* node = gtk_snapshot_free_to_node(snap);
  g_object_unref(p);
  if (node == NULL) {
    return false;
  }
  gsk_render_node_unref(node);
  return true;
}


/* Waits for a few frames so the window shows the latest state (and, for
 * its screenshot, until it has been drawn: at most ~5 s of frames). */
static gboolean on_tick(GtkWidget* w, GdkFrameClock* clock, gpointer user) {
  pending_shot_t* ps = user;
  (void) w;
  (void) clock;
  if (++ps->frames < 3 || (ps->frames < 300 && !window_is_drawn(ps->app))) {
    gtk_widget_queue_draw(GTK_WIDGET(ps->app->window));
    return G_SOURCE_CONTINUE;
  }
  finish_automation(ps->app, ps->why);
  g_free(ps->why);
  g_free(ps);
  return G_SOURCE_REMOVE;
}


void viewer_shot_automation(viewer_app_t* app, const char* why) {
  if (!app->is_automated || app->shot_done) {
    return;
  }
  app->shot_done = true;
  if (app->opts.window_shot == NULL) {
    finish_automation(app, why);
    return;
  }
  pending_shot_t* ps = g_new0(pending_shot_t, 1);
  ps->app = app;
  ps->why = g_strdup(why);
  gtk_widget_queue_draw(GTK_WIDGET(app->window));
  gtk_widget_add_tick_callback(GTK_WIDGET(app->window), on_tick, ps, NULL);
}
