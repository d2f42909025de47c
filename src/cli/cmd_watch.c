/* cmd_watch.c: `cryomamba watch JOB`: follows a job over a libcryomamba
 * subscription and shows it (cmd_watch_show.c, over cmd_watch_int.h): a
 * one-line progress bar on a terminal, plain lines otherwise, NDJSON events
 * with --json. The client runs on its own thread (every callback, so every
 * line, comes from there) while this thread waits for the end or a Ctrl-C
 * (signals.c): SIGINT/SIGTERM close the subscription (close 1000), print a
 * summary and exit 130; the job goes on. Exit status from how the job ended
 * (cli.h). The command line: cmd_watch_opts.c. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_watch_int.h"


static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* user) {
  watch_t* w = user;
  (void) sub;
  if (w->ctx->json) {
    cli_watch_emit_json(
        json_pack("{s:s,s:s,s:i,s:i,s:s,s:i}", "event", "connection", "state",
                  cm_conn_state_name(ev->state), "attempt", (int) ev->attempt,
                  "delay_ms", (int) ev->delay_ms, "reason",
                  ev->reason != 0 ? cm_strerror(ev->reason) : "", "close_code",
                  (int) ev->close_code));
  }
  if (ev->state == CM_CONN_RECONNECTING) {
    if (ev->close_code != 0) {
      cli_watch_note(w,
                     "connection lost (close code %u); reconnecting in %.1f s "
                     "(attempt %u)",
                     ev->close_code, ev->delay_ms / 1000.0, ev->attempt);
    } else {
      cli_watch_note(
          w, "connection lost (%s); reconnecting in %.1f s (attempt %u)",
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
    cli_watch_emit_json(json_pack(
        "{s:s,s:s,s:f,s:I,s:b,s:[i,i,i],s:i}", "event", "connected", "state",
        cm_job_state_name(ev->state), "progress", ev->progress, "last_seq",
        (json_int_t) ev->last_seq, "reconnect", ev->is_reconnect, "shape",
        (int) ev->shape[0], (int) ev->shape[1], (int) ev->shape[2],
        "preview_scale", (int) ev->preview_scale));
    return;
  }
  if (ev->is_reconnect) {
    cli_watch_note(w, "reconnected to job %s (state %s, %.1f%%)",
                   cm_sub_job_id(sub), cm_job_state_name(ev->state),
                   ev->progress * 100);
  } else {
    cli_watch_note(w,
                   "watching job %s: %s, %.1f%%, volume %ux%ux%u, previews "
                   "%ux%ux%u",
                   cm_sub_job_id(sub), cm_job_state_name(ev->state),
                   ev->progress * 100, ev->shape[0], ev->shape[1], ev->shape[2],
                   ev->preview_shape[0], ev->preview_shape[1],
                   ev->preview_shape[2]);
  }
  cli_watch_show(w, sub);
}


static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* user) {
  watch_t* w = user;
  w->state = ev->state;
  w->progress = ev->progress;
  w->eta_s = ev->eta_s;
  cli_watch_note_latency(w, ev->timestamp_us);
  if (w->ctx->json) {
    cli_watch_emit_json(json_pack("{s:s,s:I,s:f,s:s,s:f,s:f}", "event",
                                  "progress", "seq", (json_int_t) ev->seq,
                                  "progress", ev->progress, "state",
                                  cm_job_state_name(ev->state), "eta_s",
                                  ev->eta_s, "latency_ms", w->latency_ms));
    return;
  }
  cli_watch_show(w, sub);
}


static void on_job_state(cm_sub_t* sub,
                         const cm_state_change_t* ev,
                         void* user) {
  watch_t* w = user;
  w->state = ev->state;
  if (w->ctx->json) {
    cli_watch_emit_json(json_pack("{s:s,s:I,s:s,s:s}", "event", "state", "seq",
                                  (json_int_t) ev->seq, "state",
                                  cm_job_state_name(ev->state), "previous",
                                  cm_job_state_name(ev->previous)));
    return;
  }
  cli_watch_show(w, sub);
}


static void on_preview(cm_sub_t* sub, cm_preview_t* ev, void* user) {
  cli_watch_got_preview(user, sub, ev, -1);
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
  cli_watch_got_preview(w, sub, &p, (json_int_t) w->delta_chunks);
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
    cli_watch_emit_json(json_pack(
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
    cli_watch_emit_json(json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:b}", "event",
                                  "error", "kind", kinds[ev->kind], "seq",
                                  (json_int_t) ev->seq, "code", ev->code,
                                  "message", ev->message, "hint", ev->hint,
                                  "retryable", ev->is_retryable));
    return;
  }
  switch (ev->kind) {
  case CM_SUB_ERR_JOB:
    cli_watch_note(w, "job failed: %s (%s)%s%s", ev->message, ev->code,
                   ev->hint[0] != '\0' ? "; hint: " : "", ev->hint);
    break;
  case CM_SUB_ERR_SERVER:
    cli_watch_note(w, "server error: %s", ev->message);
    break;
  case CM_SUB_ERR_INVALID:
  case CM_SUB_ERR_UNKNOWN:
    cli_watch_note(w, "warning: %s", ev->message);
    break;
  case CM_SUB_ERR_SKIPPED:
    /* One sentence, not one per preview: at 1 Hz it would bury the rest;
     * the progress line counts them. */
    if (w->skipped == 1) {
      cli_watch_note(
          w,
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
  cli_watch_clear_bar(&w);
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
    cli_watch_emit_json(json_pack(
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
