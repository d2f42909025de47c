/* cmd_watch_int.h: one `cryomamba watch`'s state, shared by the command
 * (cmd_watch.c: the subscription's callbacks, the wait, the exit status)
 * and how it is shown (cmd_watch_show.c: the progress bar or plain lines,
 * notes, NDJSON events, previews saved and drawn). Private to those two
 * files. */
#ifndef CLI_CMD_WATCH_INT_H
#define CLI_CMD_WATCH_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

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

/* Erases the progress bar (on a terminal) so that a line can be printed. */
void cli_watch_clear_bar(watch_t* w);

/* Prints obj as one NDJSON line on stdout; takes obj (NULL: nothing). */
void cli_watch_emit_json(json_t* obj);

/* A sentence for the user: on stderr, above the progress bar. */
void cli_watch_note(watch_t* w, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The progress bar (terminal) or a plain progress line; nothing with
 * --json. */
void cli_watch_show(watch_t* w, cm_sub_t* sub);

/* Sets the latency shown from an event's server timestamp. */
void cli_watch_note_latency(watch_t* w, int64_t ts_us);

/* A preview, or with chunks the mask of a complete delta (chunks: how many
 * chunks it took, else -1): saved with --save, told, drawn with --slice. */
void cli_watch_got_preview(watch_t* w,
                           cm_sub_t* sub,
                           const cm_preview_t* ev,
                           json_int_t chunks);

#endif
