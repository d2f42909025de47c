/* cmd_watch.c: `cryomamba watch JOB`: follows a job over a libcryomamba
 * subscription and shows it: a one-line progress bar on a terminal, plain
 * lines otherwise, NDJSON events with --json. The client runs on its own
 * thread (every callback, so every line, comes from there) while this
 * thread waits for the end or a Ctrl-C (signals.c): SIGINT/SIGTERM close
 * the subscription (close 1000), print a summary and exit 130; the job goes
 * on. Exit status from how the job ended (cli.h). The command line:
 * cmd_watch_opts.c. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct {
  cli_ctx_t* ctx;
  const cli_watch_opts_t* opts;
  bool is_tty;
  bool bar_shown;
  cm_job_state_t state;
  double progress;
  double eta_s;
  uint64_t previews;
  uint64_t skipped; /* previews too large for this client */
  uint64_t saved;
  uint64_t delta_chunks; /* chunks of the deltas since the last complete */
  double latency_ms;
  double voxel_size[3];
  uint32_t scale;
  cm_job_state_t final_state;
  bool has_final;
  int closed_status;
  unsigned reconnects;
  char error_code[64];
  char error_message[1024]; /* the server's are up to 1023 bytes */
  unsigned slice_lines;     /* lines of the slice drawn above the bar */
  /* The fields above are the client thread's until cm_client_free joined
   * it; these two are how it tells the main thread it is over. */
  pthread_t main_thread;
  atomic_bool is_closed; /* on_closed ran */
} watch_t;


static double now_us(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double) tv.tv_sec * 1e6 + (double) tv.tv_usec;
}


static void clear_bar(watch_t* w) {
  if (w->bar_shown) {
    fputs("\r\x1b[K", stdout);
    fflush(stdout);
    w->bar_shown = false;
  }
}


static void emit_json(json_t* obj) {
  char* text = json_dumps(obj, JSON_COMPACT);
  if (text != NULL) {
    printf("%s\n", text);
    fflush(stdout);
  }
  free(text);
  json_decref(obj);
}


/* A sentence for the user: on stderr, above the progress bar. */
static void note(watch_t* w, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(watch_t* w, const char* fmt, ...) {
  if (w->ctx->quiet) {
    return;
  }
  clear_bar(w);
  w->slice_lines = 0; /* the note scrolls the slice away: draw anew */
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", w->ctx->prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}


static void show(watch_t* w, cm_sub_t* sub) {
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


static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* user) {
  watch_t* w = user;
  (void) sub;
  if (w->ctx->json) {
    emit_json(json_pack("{s:s,s:s,s:i,s:i,s:s,s:i}", "event", "connection",
                        "state", cm_conn_state_name(ev->state), "attempt",
                        (int) ev->attempt, "delay_ms", (int) ev->delay_ms,
                        "reason",
                        ev->reason != 0 ? cm_strerror(ev->reason) : "",
                        "close_code", (int) ev->close_code));
  }
  if (ev->state == CM_CONN_RECONNECTING) {
    if (ev->close_code != 0) {
      note(w,
           "connection lost (close code %u); reconnecting in %.1f s "
           "(attempt %u)",
           ev->close_code, ev->delay_ms / 1000.0, ev->attempt);
    } else {
      note(w, "connection lost (%s); reconnecting in %.1f s (attempt %u)",
           cm_strerror(ev->reason), ev->delay_ms / 1000.0, ev->attempt);
    }
  }
}


static void on_connected(cm_sub_t* sub, const cm_connected_t* ev, void* user) {
  watch_t* w = user;
  w->state = ev->state;
  w->progress = ev->progress;
  w->scale = ev->preview_scale;
  memcpy(w->voxel_size, ev->voxel_size, sizeof(w->voxel_size));
  if (ev->is_reconnect) {
    w->reconnects++;
  }
  if (w->ctx->json) {
    emit_json(json_pack(
        "{s:s,s:s,s:f,s:I,s:b,s:[i,i,i],s:i}", "event", "connected", "state",
        cm_job_state_name(ev->state), "progress", ev->progress, "last_seq",
        (json_int_t) ev->last_seq, "reconnect", ev->is_reconnect, "shape",
        (int) ev->shape[0], (int) ev->shape[1], (int) ev->shape[2],
        "preview_scale", (int) ev->preview_scale));
    return;
  }
  if (ev->is_reconnect) {
    note(w, "reconnected to job %s (state %s, %.1f%%)", cm_sub_job_id(sub),
         cm_job_state_name(ev->state), ev->progress * 100);
  } else {
    note(w,
         "watching job %s: %s, %.1f%%, volume %ux%ux%u, previews "
         "%ux%ux%u",
         cm_sub_job_id(sub), cm_job_state_name(ev->state), ev->progress * 100,
         ev->shape[0], ev->shape[1], ev->shape[2], ev->preview_shape[0],
         ev->preview_shape[1], ev->preview_shape[2]);
  }
  show(w, sub);
}


static void note_latency(watch_t* w, int64_t ts_us) {
  w->latency_ms = (now_us() - (double) ts_us) / 1000.0;
  if (w->latency_ms < 0) {
    w->latency_ms = 0; /* clocks of another machine */
  }
}


static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* user) {
  watch_t* w = user;
  w->state = ev->state;
  w->progress = ev->progress;
  w->eta_s = ev->eta_s;
  note_latency(w, ev->timestamp_us);
  if (w->ctx->json) {
    emit_json(json_pack("{s:s,s:I,s:f,s:s,s:f,s:f}", "event", "progress", "seq",
                        (json_int_t) ev->seq, "progress", ev->progress, "state",
                        cm_job_state_name(ev->state), "eta_s", ev->eta_s,
                        "latency_ms", w->latency_ms));
    return;
  }
  show(w, sub);
}


static void on_job_state(cm_sub_t* sub,
                         const cm_state_change_t* ev,
                         void* user) {
  watch_t* w = user;
  w->state = ev->state;
  if (w->ctx->json) {
    emit_json(json_pack("{s:s,s:I,s:s,s:s}", "event", "state", "seq",
                        (json_int_t) ev->seq, "state",
                        cm_job_state_name(ev->state), "previous",
                        cm_job_state_name(ev->previous)));
    return;
  }
  show(w, sub);
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
  clear_bar(w);
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
static void got_preview(watch_t* w,
                        cm_sub_t* sub,
                        const cm_preview_t* ev,
                        json_int_t chunks) {
  w->previews++;
  note_latency(w, ev->timestamp_us);
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
      note(w, "cannot save %s: %s", path, strerror(-err));
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
    emit_json(o);
    return;
  }
  if (w->is_tty) {
    if (w->opts->show_slice) {
      draw_slice(w, ev);
    }
    show(w, sub); /* plain lines come with progress events only */
  }
}


static void on_preview(cm_sub_t* sub, cm_preview_t* ev, void* user) {
  got_preview(user, sub, ev, -1);
}


/* Chunks: the library keeps the mask; a complete delta is a preview. */
static void on_chunks(cm_sub_t* sub, const cm_chunks_t* ev, void* user) {
  watch_t* w = user;
  w->delta_chunks += ev->chunk_count;
  if (!ev->is_complete) {
    return;
  }
  cm_preview_t p = {
      .seq = ev->seq, .timestamp_us = ev->timestamp_us, .dtype = "uint8"};
  uint32_t shape[3];
  p.voxels = (uint8_t*) cm_sub_chunk_mask(sub, ev->scale, shape);
  if (p.voxels == NULL) {
    return; /* cannot be: the delta brought its level */
  }
  for (int i = 0; i < 3; i++) {
    p.shape[i] = shape[i];
    p.scale[i] = ev->scale;
  }
  p.len = (size_t) shape[0] * shape[1] * shape[2];
  got_preview(w, sub, &p, (json_int_t) w->delta_chunks);
  w->delta_chunks = 0;
}


static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* user) {
  watch_t* w = user;
  (void) sub;
  w->final_state = ev->state;
  w->has_final = true;
  w->state = ev->state;
  if (ev->state == CM_JOB_COMPLETED) {
    w->progress = 1;
  }
  if (w->ctx->json) {
    json_error_t jerr;
    emit_json(json_pack(
        "{s:s,s:I,s:s,s:f,s:o?}", "event", cm_job_state_name(ev->state), "seq",
        (json_int_t) ev->seq, "state", cm_job_state_name(ev->state), "progress",
        ev->progress, "data", json_loads(ev->data_json, 0, &jerr)));
  }
}


static void on_error(cm_sub_t* sub, const cm_sub_error_t* ev, void* user) {
  watch_t* w = user;
  (void) sub;
  static const char* kinds[] = {"job", "server", "invalid", "unknown",
                                "skipped"};
  if (ev->kind == CM_SUB_ERR_JOB) {
    w->final_state = CM_JOB_FAILED;
    w->has_final = true;
    w->state = CM_JOB_FAILED;
  }
  if (ev->kind == CM_SUB_ERR_JOB || ev->kind == CM_SUB_ERR_SERVER) {
    snprintf(w->error_code, sizeof(w->error_code), "%s", ev->code);
    snprintf(w->error_message, sizeof(w->error_message), "%s", ev->message);
  }
  if (ev->kind == CM_SUB_ERR_SKIPPED) {
    w->skipped++;
  }
  if (w->ctx->json) {
    emit_json(json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:b}", "event", "error",
                        "kind", kinds[ev->kind], "seq", (json_int_t) ev->seq,
                        "code", ev->code, "message", ev->message, "hint",
                        ev->hint, "retryable", ev->is_retryable));
    return;
  }
  switch (ev->kind) {
  case CM_SUB_ERR_JOB:
    note(w, "job failed: %s (%s)%s%s", ev->message, ev->code,
         ev->hint[0] != '\0' ? "; hint: " : "", ev->hint);
    break;
  case CM_SUB_ERR_SERVER:
    note(w, "server error: %s", ev->message);
    break;
  case CM_SUB_ERR_INVALID:
  case CM_SUB_ERR_UNKNOWN:
    note(w, "warning: %s", ev->message);
    break;
  case CM_SUB_ERR_SKIPPED:
    /* One sentence, not one per preview: at 1 Hz it would bury the rest;
     * the progress line counts them. */
    if (w->skipped == 1) {
      note(w,
           "warning: %s; the job is still followed to its end. Previews "
           "this large need --encoding zstd (masks compress 10-100x), "
           "--max-message-bytes above their size, or a job submitted with "
           "a larger --scale; further skipped previews are only counted",
           ev->message);
    }
    break;
  }
}


static void on_closed(cm_sub_t* sub, int status, void* user) {
  watch_t* w = user;
  (void) sub; /* freed by the main thread, which may still close it */
  w->closed_status = status;
  atomic_store(&w->is_closed, true);
  cli_wake(w->main_thread);
}


static int exit_code(const watch_t* w) {
  if (w->has_final) {
    switch (w->final_state) {
    case CM_JOB_COMPLETED:
      return CLI_EXIT_OK;
    case CM_JOB_CANCELLED:
      return CLI_EXIT_CANCELLED;
    case CM_JOB_FAILED:
    case CM_JOB_UNKNOWN:
    case CM_JOB_QUEUED:
    case CM_JOB_RUNNING:
      return CLI_EXIT_JOB_FAILED;
    }
  }
  if (w->closed_status == CM_ETLS || cm_is_tls_verify_error(w->closed_status)) {
    return CLI_EXIT_TLS;
  }
  switch (w->closed_status) {
  case CM_ENOTFOUND:
    return CLI_EXIT_NOT_FOUND;
  case CM_EUNAUTHORIZED:
    return CLI_EXIT_UNAUTHORIZED;
  case CM_EPROTO:
    return CLI_EXIT_PROTOCOL;
  default:
    return CLI_EXIT_LOST;
  }
}


static void on_log(cm_log_level_t level, const char* msg, void* user) {
  (void) level;
  (void) msg;
  (void) user; /* every event of interest also reaches a callback */
}


int cli_watch_job(cli_ctx_t* ctx,
                  const char* job_id,
                  const cli_watch_opts_t* opts) {
  if (opts->save_dir != NULL && mkdir(opts->save_dir, 0755) != 0 &&
      errno != EEXIST) {
    fprintf(stderr, "%s watch: cannot create %s: %s\n", ctx->prog,
            opts->save_dir, strerror(errno));
    return CLI_EXIT_IO;
  }
  cm_client_options_t copts;
  cm_client_options_init(&copts);
  copts.max_reconnect_attempts = opts->max_retries;
  copts.reconnect_max_ms = 5000;
  copts.preview_encoding = opts->encoding;
  if (opts->max_message_bytes > 0) {
    copts.max_message_bytes = opts->max_message_bytes;
  }
  copts.log = on_log;
  sigset_t old_mask;
  cli_signals_block(&old_mask); /* before the client thread starts */
  cm_client_t* client;
  int rc = cli_client_new(ctx, &copts, &client);
  if (rc != 0) {
    cli_signals_restore(&old_mask);
    return rc;
  }
  watch_t w = {
      .ctx = ctx,
      .opts = opts,
      .is_tty = isatty(STDOUT_FILENO) && !opts->no_progress && !ctx->json,
      .eta_s = -1,
      .main_thread = pthread_self(),
  };
  atomic_init(&w.is_closed, false);
  static const cm_sub_cbs_t cbs = {
      .on_state = on_state,
      .on_connected = on_connected,
      .on_progress = on_progress,
      .on_job_state = on_job_state,
      .on_preview = on_preview,
      .on_finished = on_finished,
      .on_error = on_error,
      .on_chunks = on_chunks,
      .on_closed = on_closed,
  };
  cm_sub_options_t sopts;
  cm_sub_options_init(&sopts);
  sopts.encoding = opts->encoding;
  sopts.scale = opts->scale;
  cm_sub_t* sub = NULL;
  int err = cm_client_start_thread(client);
  if (err == 0) {
    err = cm_sub_start_opts(client, job_id, &sopts, &cbs, &w, &sub);
  }
  if (err != 0) {
    cm_client_free(client);
    cli_signals_restore(&old_mask);
    return cli_fail(ctx, err, NULL, "watching the job");
  }
  bool is_interrupted = cli_wait_signal(&w.is_closed, 0) != 0;
  if (is_interrupted) {
    /* Ctrl-C: a clean close (1000, the server answers it); a second
     * Ctrl-C, or 5 s, stops waiting for it. */
    cm_sub_close(sub);
    cli_wait_signal(&w.is_closed, cli_now_ms() + 5000);
  }
  cm_client_free(client); /* joins the client thread: w is ours now */
  cm_sub_stats_t st;
  cm_sub_get_stats(sub, &st);
  cm_sub_free(sub);
  cli_signals_restore(&old_mask);
  clear_bar(&w);
  /* A job that ended while Ctrl-C was handled is reported as it ended. */
  is_interrupted = is_interrupted && !w.has_final;
  rc = is_interrupted ? CLI_EXIT_INTERRUPTED : exit_code(&w);
  if (rc == CLI_EXIT_TLS) {
    /* The sentence (on stderr, and with --json an error object first). */
    return cli_fail(ctx, w.closed_status, NULL, "watching the job");
  }
  if (ctx->json) {
    const char* state = w.has_final      ? cm_job_state_name(w.final_state)
                        : is_interrupted ? cm_job_state_name(w.state)
                                         : "unknown";
    emit_json(json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:i,s:b,s:i,s:I,s:I}", "event", "end",
        "job_id", job_id, "state", state, "previews", (json_int_t) w.previews,
        "skipped", (json_int_t) w.skipped, "saved", (json_int_t) w.saved,
        "reconnects", (int) w.reconnects, "interrupted", is_interrupted,
        "exit_code", rc, "bytes_received", (json_int_t) st.wire_bytes,
        "message_bytes", (json_int_t) st.bytes));
    return rc;
  }
  switch (rc) {
  case CLI_EXIT_INTERRUPTED:
    printf(
        "stopped watching job %s at %.1f%% (%s; %llu previews received, %u "
        "reconnects): it goes on on the server; `%s watch %s` follows it "
        "again\n",
        job_id, w.progress * 100, cm_job_state_name(w.state),
        (unsigned long long) w.previews, w.reconnects, ctx->prog, job_id);
    break;
  case CLI_EXIT_OK:
    if (w.skipped > 0) {
      printf(
          "job %s completed: %llu previews received, %llu skipped as too "
          "large, %u reconnects\n",
          job_id, (unsigned long long) w.previews,
          (unsigned long long) w.skipped, w.reconnects);
    } else {
      printf("job %s completed: %llu previews received, %u reconnects\n",
             job_id, (unsigned long long) w.previews, w.reconnects);
    }
    break;
  case CLI_EXIT_JOB_FAILED:
    printf("job %s failed: %s%s%s\n", job_id, w.error_message,
           w.error_code[0] != '\0' ? " " : "",
           w.error_code[0] != '\0' ? w.error_code : "");
    break;
  case CLI_EXIT_CANCELLED:
    printf("job %s cancelled\n", job_id);
    break;
  case CLI_EXIT_NOT_FOUND:
    fprintf(stderr, "%s watch: no job %s on %s\n", ctx->prog, job_id,
            ctx->server);
    break;
  case CLI_EXIT_UNAUTHORIZED:
    fprintf(stderr,
            "%s watch: the server refused the token (401); set "
            "--token or CRYOMAMBA_TOKEN\n",
            ctx->prog);
    break;
  default:
    fprintf(stderr, "%s watch: lost the connection to %s for good (%s)\n",
            ctx->prog, ctx->server, cm_strerror(w.closed_status));
    break;
  }
  return rc;
}
