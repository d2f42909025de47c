/* cmd_upload.c: `cryomamba upload FILE.mrc`: a libcryomamba upload on the
 * client's own thread while this thread waits for signals (sigwait): the
 * upload's end (SIGUSR1 from on_done) or the user's Ctrl-C (SIGINT,
 * SIGTERM: pause, keep the resume record, exit 130). Progress goes to
 * stderr: a bar on a terminal, plain lines otherwise. cli_upload_file() is
 * also `submit FILE.mrc`'s first step. */
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include <uv.h>

static const char upload_help[] =
    "Usage: cryomamba upload FILE.mrc [options]\n"
    "Uploads an MRC file (tus, resumable, checksummed) and prints the volume "
    "it\nbecomes (id, shape, sha256; with --json the volume object). A file "
    "the\nserver already has (same sha256) is not sent again. Ctrl-C stops "
    "cleanly\n(exit 130); running the same command again resumes where it "
    "stopped.\n"
    "  --parallel N     streams at once (1..16; uses tus concatenation "
    "when the\n"
    "                   server offers it); default 1\n"
    "  --chunk-mib N    MiB per request (and in memory per stream); default "
    "16\n"
    "  --max-retries N  failed attempts in a row before giving up (default "
    "10;\n"
    "                   0: never)\n"
    "  --no-resume      start afresh: neither use nor keep a resume record\n"
    "  --no-progress    plain progress lines even on a terminal\n"
    "Exit: 0 done, 4 refused (e.g. not a valid MRC file, too large), 6 token\n"
    "missing or wrong, 7 unreachable (resumable), 9 local file error (or no\n"
    "file: a directory, a FIFO, empty), 10 the server is out of storage\n"
    "(resumable), 130 interrupted (resumable).\n";

typedef struct {
  const cli_ctx_t* ctx;
  const cli_upload_opts_t* opts;
  pthread_t main_thread;
  bool is_tty;
  bool bar_shown;
  bool resume_told;
  bool dedup_told;
  uint64_t last_line_ms;
  cm_upload_phase_t last_phase;
  uint64_t durable;
  uint64_t total;
  /* Set on the client thread, read after the wake-up. */
  atomic_bool is_done;
  atomic_bool is_paused;
  int status;
  bool has_volume;
  cm_volume_t volume;
  cm_reply_t reply;
} up_view_t;


static void wake_main(up_view_t* v) {
  cli_wake(v->main_thread);
}


static void clear_bar(up_view_t* v) {
  if (v->bar_shown) {
    fputs("\r\x1b[K", stderr);
    v->bar_shown = false;
  }
}


static void say(up_view_t* v, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(up_view_t* v, const char* fmt, ...) {
  if (v->ctx->quiet) {
    return;
  }
  clear_bar(v);
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", v->ctx->prog);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}


static void show(up_view_t* v, const cm_upload_progress_t* p) {
  char done[32], total[32], rate[32] = "", eta[32] = "";
  cli_human_bytes(p->bytes_done, done, sizeof(done));
  cli_human_bytes(p->bytes_total, total, sizeof(total));
  double pct = p->bytes_total > 0
                   ? 100.0 * (double) p->bytes_done / (double) p->bytes_total
                   : (p->phase == CM_UPLOAD_DONE ? 100.0 : 0.0);
  if (p->rate_bps > 0) {
    snprintf(rate, sizeof(rate), "%.1f MB/s", p->rate_bps / 1e6);
  }
  if (p->eta_s >= 0) {
    snprintf(eta, sizeof(eta), "ETA %.0fs", p->eta_s);
  }
  const char* phase = cm_upload_phase_name(p->phase);
  if (v->is_tty) {
    char bar[31];
    int filled = (int) (pct * 0.3 + 0.5);
    for (int i = 0; i < 30; i++) {
      bar[i] = i < filled ? '#' : '.';
    }
    bar[30] = '\0';
    fprintf(stderr, "\r\x1b[K[%s] %5.1f%%  %-10s %s / %s  %s  %s", bar, pct,
            phase, done, total, rate, eta);
    if (p->retries > 0) {
      fprintf(stderr, "  retries %u", p->retries);
    }
    v->bar_shown = true;
    return;
  }
  /* Plain lines: at most one a second, and each change of phase. */
  uint64_t now = cli_now_ms();
  if (p->phase == v->last_phase && now - v->last_line_ms < 1000) {
    return;
  }
  v->last_line_ms = now;
  fprintf(stderr,
          "upload %.1f%% phase=%s durable=%llu total=%llu rate_mbps=%.1f "
          "eta=%s retries=%u\n",
          pct, phase, (unsigned long long) p->bytes_done,
          (unsigned long long) p->bytes_total, p->rate_bps / 1e6,
          p->eta_s >= 0 ? eta + 4 : "?", p->retries);
}


static void on_progress(cm_upload_t* up,
                        const cm_upload_progress_t* p,
                        void* user) {
  up_view_t* v = user;
  if (p->phase != CM_UPLOAD_HASHING) {
    v->durable = p->bytes_done; /* hashing counts bytes hashed */
  }
  v->total = p->bytes_total;
  cm_upload_info_t info;
  cm_upload_get_info(up, &info);
  if (info.is_resumed && !v->resume_told) {
    v->resume_told = true;
    char at[32], all[32];
    say(v, "resuming at %s of %s (%llu of %llu bytes are on the server)",
        cli_human_bytes(info.resumed_at, at, sizeof(at)),
        cli_human_bytes(info.size, all, sizeof(all)),
        (unsigned long long) info.resumed_at, (unsigned long long) info.size);
  }
  if (info.is_deduplicated && !v->dedup_told) {
    v->dedup_told = true;
    say(v, "the server already has this file (same sha256): nothing to send");
  }
  if (p->phase == CM_UPLOAD_RETRYING) {
    say(v, "%s; retrying in %.1f s (retry %u)", cm_strerror(p->last_error),
        p->delay_ms / 1000.0, p->retries);
  } else if (!v->ctx->quiet && p->phase != CM_UPLOAD_PAUSED) {
    show(v, p);
  }
  v->last_phase = p->phase;
  if (p->phase == CM_UPLOAD_PAUSED) {
    atomic_store(&v->is_paused, true);
    wake_main(v);
  }
}


static void on_done(cm_upload_t* up,
                    int status,
                    const cm_volume_t* volume,
                    const cm_reply_t* reply,
                    void* user) {
  (void) up;
  up_view_t* v = user;
  clear_bar(v);
  v->status = status;
  v->reply = *reply; /* the envelope's fields; body, lists: not kept */
  v->reply.body = NULL;
  v->reply.jobs = NULL;
  v->reply.volumes = NULL;
  if (volume != NULL) {
    v->has_volume = true;
    v->volume = *volume;
  }
  atomic_store(&v->is_done, true);
  wake_main(v);
}


/* The one line of a failed upload. What a later run may get past (the
 * server gone, out of room, a token) keeps the resume record: it says so
 * and what to do; the exit code says which (docs/cli.md). */
static int report_failure(up_view_t* v,
                          const char* path,
                          const cm_upload_info_t* info) {
  const cli_ctx_t* ctx = v->ctx;
  const cm_reply_t* reply = v->reply.http_status > 0 ? &v->reply : NULL;
  int h = reply != NULL ? reply->http_status : 0;
  char what[4200], then[512] = "", at[32], all[32];
  snprintf(what, sizeof(what), "uploading %s", path);
  if (v->status == UV_ECANCELED) {
    cli_fail(ctx, v->status, reply, what);
    return CLI_EXIT_INTERRUPTED;
  }
  cli_human_bytes(v->durable, at, sizeof(at));
  cli_human_bytes(v->total, all, sizeof(all));
  const char* again = v->opts->no_resume
                          ? "run the same command again to upload it afresh"
                          : "run the same command again to resume";
  if (h == 507) {
    snprintf(then, sizeof(then),
             "%s of %s are on the server and the resume record is kept: once "
             "the server has room, %s",
             at, all, again);
  } else if (h == 0 &&
             (cli_is_network_error(v->status) || v->status == UV_EPROTO)) {
    /* The network, after --max-retries failed attempts in a row (a server
     * dying mid-answer leaves a broken response: UV_EPROTO). */
    snprintf(then, sizeof(then),
             "gave up after %u %s with %s of %s on the "
             "server; %s",
             info->retries, info->retries == 1 ? "retry" : "retries", at, all,
             again);
  }
  return cli_fail_then(ctx, v->status, reply, what,
                       then[0] != '\0' ? then : NULL);
}


int cli_upload_file(const cli_ctx_t* ctx,
                    const char* path,
                    const cli_upload_opts_t* o,
                    cm_volume_t* out,
                    cm_upload_info_t* info) {
  uint32_t shape[3];
  double voxel[3];
  int rc = cli_read_mrc_header(ctx, "upload", path, shape, voxel);
  if (rc != 0) {
    return rc;
  }
  /* Signals: SIGINT/SIGTERM and the wake-up go to sigtimedwait on this
   * thread only; the client thread inherits the mask. */
  sigset_t old;
  cli_signals_block(&old);
  cm_client_t* client;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    cli_signals_restore(&old);
    return rc;
  }
  up_view_t* v = calloc(1, sizeof(*v));
  if (v == NULL) {
    cm_client_free(client);
    cli_signals_restore(&old);
    return CLI_EXIT_IO;
  }
  v->ctx = ctx;
  v->opts = o;
  v->main_thread = pthread_self();
  v->is_tty = isatty(STDERR_FILENO) && !o->no_progress;
  v->last_phase = CM_UPLOAD_STARTING;
  cm_upload_options_t uo;
  cm_upload_options_init(&uo);
  uo.path = path;
  uo.parallel = o->parallel;
  uo.chunk_bytes = o->chunk_bytes;
  uo.max_retries = o->max_retries;
  uo.resume = !o->no_resume;
  cm_upload_cbs_t cbs = {.on_progress = on_progress, .on_done = on_done};
  cm_upload_t* up = NULL;
  int err = cm_client_start_thread(client);
  if (err == 0) {
    err = cm_upload_start(client, &uo, &cbs, v, &up);
  }
  if (err != 0) {
    cm_client_free(client);
    cli_signals_restore(&old);
    free(v);
    return cli_fail(ctx, err, NULL, "starting the upload");
  }
  int sig = cli_wait_signal(&v->is_done, 0);
  bool interrupted = sig != 0;
  if (interrupted) {
    /* Pause: the request in flight is aborted, what is durable stays on
     * the server and the record stays here. A second Ctrl-C, or 10 s,
     * ends the wait. */
    cm_upload_pause(up);
    cli_wait_signal(atomic_load(&v->is_done) ? &v->is_done : &v->is_paused,
                    cli_now_ms() + 10000);
  }
  cm_client_free(client); /* joins the client thread: no callback after */
  cli_signals_restore(&old);
  cm_upload_info_t got;
  cm_upload_get_info(up, &got);
  if (info != NULL) {
    *info = got;
  }
  bool done = atomic_load(&v->is_done);
  cm_upload_free(up);
  if (interrupted && !(done && v->status == 0)) {
    char at[32], all[32];
    clear_bar(v);
    fprintf(stderr,
            "%s: interrupted at %s of %s; run the same command again to "
            "resume\n",
            ctx->prog, cli_human_bytes(v->durable, at, sizeof(at)),
            cli_human_bytes(v->total, all, sizeof(all)));
    free(v);
    return CLI_EXIT_INTERRUPTED;
  }
  if (v->status != 0) {
    rc = report_failure(v, path, &got);
  } else {
    *out = v->volume;
    rc = CLI_EXIT_OK;
  }
  free(v);
  return rc;
}


json_t* cli_volume_json(const cm_volume_t* vol) {
  return json_pack(
      "{s:s, s:s, s:[i,i,i], s:[f,f,f], s:i, s:[f,f,f], s:I, s:s, s:s}",
      "volume_id", vol->volume_id, "sha256", vol->sha256, "shape",
      (int) vol->shape[0], (int) vol->shape[1], (int) vol->shape[2],
      "voxel_size", vol->voxel_size[0], vol->voxel_size[1], vol->voxel_size[2],
      "mode", (int) vol->mode, "origin", vol->origin[0], vol->origin[1],
      vol->origin[2], "size_bytes", (json_int_t) vol->size_bytes, "filename",
      vol->filename, "created_at", vol->created_at);
}


void cli_print_volume(const cli_ctx_t* ctx,
                      const cm_volume_t* vol,
                      const cm_upload_info_t* info) {
  if (ctx->json) {
    json_t* obj = cli_volume_json(vol);
    if (obj != NULL && info != NULL) {
      json_object_set_new(
          obj, "upload",
          json_pack("{s:s, s:s, s:b, s:I, s:b, s:I, s:i, s:i, s:i}",
                    "upload_url", info->upload_url, "server", info->server,
                    "resumed", info->is_resumed, "resumed_at",
                    (json_int_t) info->resumed_at, "deduplicated",
                    info->is_deduplicated, "bytes_sent",
                    (json_int_t) info->bytes_sent, "streams",
                    (int) info->streams, "retries", (int) info->retries,
                    "failovers", (int) info->failovers));
    }
    char* text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (text != NULL) {
      printf("%s\n", text);
    }
    free(text);
    json_decref(obj);
    return;
  }
  char size[32];
  printf("volume     %s\n", vol->volume_id);
  printf(
      "shape      %u x %u x %u (Z,Y,X), voxel %.3g x %.3g x %.3g A, "
      "mode %d\n",
      vol->shape[0], vol->shape[1], vol->shape[2], vol->voxel_size[0],
      vol->voxel_size[1], vol->voxel_size[2], (int) vol->mode);
  printf("sha256     %s\n", vol->sha256);
  printf("file       %s (%s)\n", vol->filename,
         cli_human_bytes(vol->size_bytes, size, sizeof(size)));
  printf("created    %s\n", vol->created_at);
}


int cli_parse_upload_opt(cli_ctx_t* ctx,
                         const char* cmd,
                         int opt,
                         const char* value,
                         cli_upload_opts_t* o) {
  char* end;
  unsigned long v = strtoul(value != NULL ? value : "", &end, 10);
  bool ok = value != NULL && end != value && *end == '\0';
  switch (opt) {
  case CLI_OPT_PARALLEL:
    if (!ok || v < 1 || v > 16) {
      return cli_usage_error(ctx, cmd, "--parallel wants 1..16, not \"%s\"",
                             value);
    }
    o->parallel = (unsigned) v;
    return 0;
  case CLI_OPT_CHUNK:
    if (!ok || v < 1 || v > 1024) {
      return cli_usage_error(ctx, cmd, "--chunk-mib wants 1..1024, not \"%s\"",
                             value);
    }
    o->chunk_bytes = (uint64_t) v << 20;
    return 0;
  case CLI_OPT_RETRIES:
    if (!ok || v > 1000000) {
      return cli_usage_error(ctx, cmd,
                             "--max-retries wants an integer >= 0, not "
                             "\"%s\"",
                             value);
    }
    o->max_retries = (unsigned) v;
    return 0;
  case CLI_OPT_NO_RESUME:
    o->no_resume = true;
    return 0;
  case CLI_OPT_NO_PROGRESS:
    o->no_progress = true;
    return 0;
  }
  return cli_usage_error(ctx, cmd, "unknown option");
}


void cli_upload_opts_init(cli_upload_opts_t* o) {
  memset(o, 0, sizeof(*o));
  o->parallel = 1;
  o->chunk_bytes = (uint64_t) 16 << 20;
  o->max_retries = 10;
}


int cli_cmd_upload(cli_ctx_t* ctx, int argc, char** argv) {
  static const struct option longs[] = {
      {"help", no_argument, NULL, 'h'},
      {"parallel", required_argument, NULL, CLI_OPT_PARALLEL},
      {"chunk-mib", required_argument, NULL, CLI_OPT_CHUNK},
      {"max-retries", required_argument, NULL, CLI_OPT_RETRIES},
      {"no-resume", no_argument, NULL, CLI_OPT_NO_RESUME},
      {"no-progress", no_argument, NULL, CLI_OPT_NO_PROGRESS},
      {NULL, 0, NULL, 0}};
  cli_upload_opts_t o;
  cli_upload_opts_init(&o);
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    if (c == 'h') {
      fputs(upload_help, stdout);
      return CLI_EXIT_OK;
    }
    if (c == '?' || c == ':') {
      return cli_usage_error(ctx, argv[0],
                             "unknown option or missing value: \"%s\"",
                             argv[optind - 1]);
    }
    int rc = cli_parse_upload_opt(ctx, argv[0], c, optarg, &o);
    if (rc != 0) {
      return rc;
    }
  }
  if (optind >= argc) {
    return cli_usage_error(ctx, argv[0], "missing FILE.mrc");
  }
  if (optind + 1 < argc) {
    return cli_usage_error(ctx, argv[0], "unexpected argument \"%s\"",
                           argv[optind + 1]);
  }
  cm_volume_t vol;
  cm_upload_info_t info;
  int rc = cli_upload_file(ctx, argv[optind], &o, &vol, &info);
  if (rc == CLI_EXIT_OK) {
    cli_print_volume(ctx, &vol, &info);
  }
  return rc;
}
