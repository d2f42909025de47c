/* cli.h: shared pieces of the `cryomamba` command-line client: the global
 * options, exit codes (docs/cli.md), error reporting, output helpers.
 * Commands live in cmd_*.c; main.c dispatches. Single-threaded. */
#ifndef CLI_CLI_H
#define CLI_CLI_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cryomamba/client.h"

/* Exit statuses; keep docs/cli.md and the --help text in step. */
enum {
  CLI_EXIT_OK = 0,           /* success; watch: the job completed */
  CLI_EXIT_JOB_FAILED = 1,   /* watch: the job failed */
  CLI_EXIT_CANCELLED = 2,    /* watch: the job was cancelled */
  CLI_EXIT_LOST = 3,         /* watch: connection lost for good */
  CLI_EXIT_REFUSED = 4,      /* the server refused the request (4xx/5xx) */
  CLI_EXIT_NOT_FOUND = 5,    /* no such job (404) */
  CLI_EXIT_UNAUTHORIZED = 6, /* 401: token missing or wrong */
  CLI_EXIT_UNREACHABLE = 7,  /* server down, wrong address, timeout */
  CLI_EXIT_PROTOCOL = 8,     /* the server's answer made no sense */
  CLI_EXIT_IO = 9,           /* a local file could not be read or written */
  CLI_EXIT_NO_ROOM = 10,     /* 507: the server is out of storage; an
                                upload resumes once it has room */
  CLI_EXIT_TLS = 11,         /* https: the server's certificate was refused
                                or the TLS handshake failed */
  CLI_EXIT_USAGE = 64,       /* bad command line */
  CLI_EXIT_INTERRUPTED = 130 /* Ctrl-C: upload (the same command resumes),
                                watch (the job goes on) */
};

typedef struct {
  const char* server; /* URL */
  const char* token;
  const char* cacert; /* --cacert / CRYOMAMBA_CACERT; NULL: system store */
  bool insecure_tls;  /* --insecure-skip-tls-verify */
  bool json;
  bool quiet;
  const char* prog;
} cli_ctx_t;

/* Makes a client for ctx's server; reports and returns an exit code on
 * failure (0 on success). */
int cli_client_new(const cli_ctx_t* ctx,
                   const cm_client_options_t* base,
                   cm_client_t** out);

/* Prints a clear sentence for `err` (with the reply's error envelope when
 * there is one) to stderr, and a JSON error object on stdout with --json.
 * `what` names the action ("getting job X"). Returns the exit code. */
int cli_fail(const cli_ctx_t* ctx,
             int err,
             const cm_reply_t* reply,
             const char* what);

/* cli_fail, the sentence followed by "; " and `then` (what to do next;
 * NULL: nothing), still one line. */
int cli_fail_then(const cli_ctx_t* ctx,
                  int err,
                  const cm_reply_t* reply,
                  const char* what,
                  const char* then);

/* Whether `err` says the server could not be reached or was lost
 * (refused, reset, timed out, name unknown...). */
bool cli_is_network_error(int err);

/* Prints a usage error and returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_ctx_t* ctx, const char* cmd, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "Z,Y,X" (or a single N for N,N,N) into shape (1..4096 each). */
bool cli_parse_shape(const char* s, uint32_t out[3]);

/* Writes a uint8 volume (mode 0) as an MRC2014 file. Returns 0 or -errno. */
int cli_write_mask_mrc(const char* path,
                       const uint32_t shape[3],
                       const double voxel_size[3],
                       const uint8_t* voxels);

/* Formats a byte count as "1.2 MB" into buf. */
const char* cli_human_bytes(uint64_t n, char* buf, size_t len);

/* Prints a job (plain text) to stdout. */
void cli_print_job(const cm_job_t* job);

/* Prints a reply's raw body (the server's JSON) and a newline. */
void cli_print_body(const cm_reply_t* r);

/* Reads FILE's MRC2014 header for its shape and voxel size (a voxel size
 * of 0 reads as 1). Returns 0, or prints why not ("CMD: ...") and returns
 * CLI_EXIT_IO. */
int cli_read_mrc_header(const cli_ctx_t* ctx,
                        const char* cmd,
                        const char* path,
                        uint32_t shape[3],
                        double voxel_size[3]);

/* How `upload` and `submit FILE` upload. */
typedef struct {
  unsigned parallel;    /* --parallel; 1 */
  uint64_t chunk_bytes; /* --chunk-mib; 16 MiB */
  unsigned max_retries; /* --max-retries; 10 */
  bool no_resume;       /* --no-resume */
  bool no_progress;     /* --no-progress */
} cli_upload_opts_t;

/* getopt values of the upload options (shared by upload and submit). */
enum {
  CLI_OPT_PARALLEL = 1000,
  CLI_OPT_CHUNK,
  CLI_OPT_RETRIES,
  CLI_OPT_NO_RESUME,
  CLI_OPT_NO_PROGRESS
};

void cli_upload_opts_init(cli_upload_opts_t* o);

/* Applies upload option `opt` (a CLI_OPT_*) with `value`. Returns 0, or
 * prints a usage error and returns its exit code. */
int cli_parse_upload_opt(cli_ctx_t* ctx,
                         const char* cmd,
                         int opt,
                         const char* value,
                         cli_upload_opts_t* o);

/* Uploads `path` (progress on stderr) into *out; *info (may be NULL) says
 * how. Returns an exit code: 0, CLI_EXIT_INTERRUPTED after Ctrl-C (the
 * upload paused, resumable), or a failure's (already reported). */
int cli_upload_file(const cli_ctx_t* ctx,
                    const char* path,
                    const cli_upload_opts_t* o,
                    cm_volume_t* out,
                    cm_upload_info_t* info);

/* A volume as the server's JSON object (new reference, NULL on ENOMEM). */
json_t* cli_volume_json(const cm_volume_t* vol);

/* Prints a volume: lines for people, or with --json the volume object
 * (plus "upload": how it got there, when info is not NULL). */
void cli_print_volume(const cli_ctx_t* ctx,
                      const cm_volume_t* vol,
                      const cm_upload_info_t* info);

/* The one JOB argument at argv[optind] of status/cancel/download/watch;
 * NULL with *rc = an exit code (usage message printed) when missing,
 * doubled or not a UUID. */
const char* cli_job_arg(cli_ctx_t* ctx, int argc, char** argv, int* rc);

/* Commands: argc/argv start at the command name. */
int cli_cmd_health(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_status(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_jobs(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_cancel(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_download(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_submit(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_watch(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_phantom(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_upload(cli_ctx_t* ctx, int argc, char** argv);
int cli_cmd_volumes(cli_ctx_t* ctx, int argc, char** argv);

/* watch's engine, also used by `submit --watch`. */
typedef struct {
  const char* save_dir;   /* --save-previews */
  unsigned max_retries;   /* 0: forever */
  bool no_progress;       /* plain lines even on a terminal */
  bool show_slice;        /* draw each preview's middle XY slice (terminal) */
  cm_encoding_t encoding; /* how previews travel */
  uint32_t scale;         /* chunks: the level's scale; 0: the default */
  uint64_t max_message_bytes; /* larger previews are skipped; 0: 1 GiB */
} cli_watch_opts_t;

/* Parses --encoding's value (base64, raw, zstd or chunks). Returns 0, or prints
 * a usage error and returns its exit code. */
int cli_parse_encoding(cli_ctx_t* ctx,
                       const char* cmd,
                       const char* value,
                       cm_encoding_t* out);

/* Parses --max-message-bytes's value: N, or N with K, M or G (times 1024,
 * 1024^2, 1024^3), at least 64K. Returns 0, or prints a usage error and
 * returns its exit code. */
int cli_parse_max_message(cli_ctx_t* ctx,
                          const char* cmd,
                          const char* value,
                          uint64_t* out);

int cli_watch_job(cli_ctx_t* ctx,
                  const char* job_id,
                  const cli_watch_opts_t* opts);

/* signals.c: the main thread waits while a client thread works. */

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t cli_now_ms(void);

/* Blocks SIGINT, SIGTERM and SIGUSR1 on this thread (before the client
 * thread starts: it inherits the mask); *old gets the mask to restore. */
void cli_signals_block(sigset_t* old);

/* Takes any wake-up still pending, then restores `old`. */
void cli_signals_restore(const sigset_t* old);

/* Wakes the main thread from a callback (set the flag first). */
void cli_wake(pthread_t main_thread);

/* Waits until *flag is set (0), SIGINT or SIGTERM arrives (the signal),
 * or until_ms passes (-1; 0: no deadline). Signals must be blocked. */
int cli_wait_signal(atomic_bool* flag, uint64_t until_ms);

/* Writes all `len` bytes to `fd`, retrying short writes and EINTR.
 * Returns 0 or -errno. */
int cli_write_all(int fd, const void* data, size_t len);

#endif
