/* cmd_watch_show.c: how `cryomamba watch` shows a job (cmd_watch.c follows
 * it; cmd_watch_int.h is their shared state): a one-line progress bar on a
 * terminal, plain lines otherwise, NDJSON events with --json, notes on
 * stderr above the bar, previews saved as MRC files and their middle slice
 * drawn in colour. The client thread's while it runs (the callers are its
 * callbacks), then the main thread's for the summary. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cli/cli.h"
#include "cli/cmd_watch_int.h"


static double now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double) tv.tv_sec * 1e6 + (double) tv.tv_usec;
}


void cli_watch_clear_bar(watch_t* w) {
  if (w->bar_shown) {
    fputs("\r\x1b[K", stdout);
    fflush(stdout);
    w->bar_shown = false;
  }
}


void cli_watch_emit_json(json_t* obj) {
  char* text = json_dumps(obj, JSON_COMPACT);
  if (text != NULL) {
    printf("%s\n", text);
    fflush(stdout);
  }
  free(text);
  json_decref(obj);
}


/* A sentence for the user: on stderr, above the progress bar. */
void cli_watch_note(watch_t* w, const char* fmt, ...) {
  if (w->ctx->quiet) {
    return;
  }
  cli_watch_clear_bar(w);
  w->slice_lines = 0; /* the note scrolls the slice away: draw anew */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", w->ctx->prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}


void cli_watch_show(watch_t* w, cm_sub_t* sub) {
  if (w->ctx->json) {
    return;
  }
  cm_sub_stats_t st;
  cm_sub_get_stats(sub, &st);
  char bytes[32], eta[32] = "?", skipped[48] = "";
  cli_human_bytes(st.bytes, bytes, sizeof(bytes));
  if (w->eta_s >= 0) {
    snprintf(eta, sizeof(eta), "%.0fs", w->eta_s);
  }
  if (w->skipped > 0) {
    snprintf(skipped, sizeof(skipped),
             w->is_tty ? " (%llu skipped)" : " skipped=%llu",
             (unsigned long long) w->skipped);
  }
  if (w->is_tty) {
    char bar[31];
    int filled = (int) (w->progress * 30 + 0.5);
    for (int i = 0; i < 30; i++) {
      bar[i] = i < filled ? '#' : '.';
    }
    bar[30] = '\0';
    printf(
        "\r\x1b[K[%s] %5.1f%%  %-9s ETA %-6s previews %llu%s  %s  "
        "latency %.1f ms",
        bar, w->progress * 100, cm_job_state_name(w->state), eta,
        (unsigned long long) w->previews, skipped, bytes, w->latency_ms);
    fflush(stdout);
    w->bar_shown = true;
  } else {
    printf(
        "progress %.1f%% state=%s eta=%s previews=%llu bytes=%llu "
        "latency_ms=%.1f%s\n",
        w->progress * 100, cm_job_state_name(w->state), eta,
        (unsigned long long) w->previews, (unsigned long long) st.bytes,
        w->latency_ms, skipped);
    fflush(stdout);
  }
}


void cli_watch_note_latency(watch_t* w, int64_t ts_us) {
  w->latency_ms = (now_us() - (double) ts_us) / 1000.0;
  if (w->latency_ms < 0) {
    w->latency_ms = 0; /* clocks of another machine */
  }
}


/* 256-colour palette index of a label: background, membrane, particle. */
static int label_colour(uint8_t v) {
  switch (v) {
  case 0:
    return 236;
  case 1:
    return 208;
  case 2:
    return 39;
  default:
    return 255;
  }
}


/* Draws the preview's middle XY slice above the progress bar, two voxel
 * rows per text line (upper half block: foreground = upper row), at most
 * 64 columns, redrawn in place for each preview. */
static void draw_slice(watch_t* w, const cm_preview_t* p) {
  uint32_t nz = p->shape[0], ny = p->shape[1], nx = p->shape[2];
  uint32_t cols = nx < 64 ? nx : 64;
  uint32_t rows = (uint32_t) ((uint64_t) ny * cols / nx);
  rows = rows < 2 ? 2 : (rows > 48 ? 48 : rows);
  const uint8_t* plane = p->voxels + (size_t) (nz / 2) * ny * nx;
  cli_watch_clear_bar(w);
  if (w->slice_lines > 0) {
    printf("\x1b[%uA", w->slice_lines);
  }
  printf(
      "\x1b[Kpreview %llu: XY slice z=%u of %ux%ux%u (orange membrane, blue "
      "particle)\n",
      (unsigned long long) p->seq, (nz / 2) * p->scale[0], nz, ny, nx);
  for (uint32_t r = 0; r + 1 < rows; r += 2) {
    for (uint32_t c = 0; c < cols; c++) {
      size_t x = (size_t) c * nx / cols;
      uint8_t top = plane[(size_t) r * ny / rows * nx + x];
      uint8_t bottom = plane[(size_t) (r + 1) * ny / rows * nx + x];
      printf("\x1b[38;5;%dm\x1b[48;5;%dm\u2580", label_colour(top),
             label_colour(bottom));
    }
    printf("\x1b[0m\x1b[K\n");
  }
  w->slice_lines = 1 + rows / 2;
}


/* A preview, or with chunks the mask of a complete delta: saved, told. */
void cli_watch_got_preview(watch_t* w,
                           cm_sub_t* sub,
                           const cm_preview_t* ev,
                           json_int_t chunks) {
  w->previews++;
  cli_watch_note_latency(w, ev->timestamp_us);
  char path[4200] = "";
  if (w->opts->save_dir != NULL) {
    double vs[3];
    for (int i = 0; i < 3; i++) {
      vs[i] = (w->voxel_size[i] > 0 ? w->voxel_size[i] : 1.0) * ev->scale[i];
    }
    snprintf(path, sizeof(path), "%s/preview-%06llu.mrc", w->opts->save_dir,
             (unsigned long long) ev->seq);
    int err = cli_write_mask_mrc(path, ev->shape, vs, ev->voxels);
    if (err != 0) {
      cli_watch_note(w, "cannot save %s: %s", path, strerror(-err));
      path[0] = '\0';
    } else {
      w->saved++;
    }
  }
  if (w->ctx->json) {
    json_t* o = json_pack(
        "{s:s,s:I,s:[i,i,i],s:i,s:I,s:f,s:s?}", "event", "preview", "seq",
        (json_int_t) ev->seq, "shape", (int) ev->shape[0], (int) ev->shape[1],
        (int) ev->shape[2], "scale", (int) ev->scale[0], "bytes",
        (json_int_t) ev->len, "latency_ms", w->latency_ms, "saved",
        path[0] != '\0' ? path : NULL);
    if (o != NULL && chunks >= 0) {
      json_object_set_new(o, "chunks", json_integer(chunks));
    }
    cli_watch_emit_json(o);
    return;
  }
  if (w->is_tty) {
    if (w->opts->show_slice) {
      draw_slice(w, ev);
    }
    cli_watch_show(w, sub); /* plain lines come with progress events only */
  }
}
