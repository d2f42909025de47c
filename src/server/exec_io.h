/* exec_io.h: an exec engine run's state (srv_exec_run_t) and its I/O with
 * the process (exec_io.c): the spawn with three pipes, the request written
 * to stdin, stdout read into a bounded line buffer and parsed line by line
 * (engine_proto.h) under a line-rate bound, stderr kept as a tail in
 * memory and written to the job's log file on the pool (one write in
 * flight; stderr is not read while a write is pending and the next buffer
 * is full), and the closing of it all. The lifecycle (start, stop, exit,
 * the outcome) is engine_exec.c, whose entry points exec_io.c calls are
 * declared here too. Nothing here blocks the loop or grows without bound.
 * Loop thread only. */
#ifndef SRV_EXEC_IO_H
#define SRV_EXEC_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/job.h"
#include "server/mask_run.h"

#define SRV_EXEC_TAIL_MAX 2048         /* stderr bytes kept for the error */
#define SRV_EXEC_DRAIN_MS 2000         /* after exit, wait this for EOFs */
#define SRV_EXEC_READ_BUF (64 * 1024)  /* one read, per pipe */
#define SRV_EXEC_LOG_CHUNK (64 * 1024) /* stderr buffered for one write */

/* Owned by the engine: created at start, freed once the job let go of it,
 * the process exited and no handle or file operation is left; holds a job
 * reference until then. job->run points here until the job lets go. */
typedef struct srv_exec_run_s {
  srv_job_t* job;
  srv_mask_run_t* mask; /* until the job lets go */
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_timer_t wall, grace, drain;
  uv_write_t request_req;
  char* request; /* malloc'd; freed when written */
  unsigned open_handles;
  unsigned fs_pending; /* log open, write, close in flight */
  int device;          /* slot index, or -1 */
  double wall_time_s;  /* 0: none */
  bool has_pipes;      /* in, out, err initialised */
  bool is_spawned;
  bool has_exited;
  bool out_eof, err_eof;
  bool is_abandoned;  /* the job let go (its ops->stop) */
  bool is_decided;    /* the outcome was taken */
  bool is_killing;    /* SIGTERM sent, SIGKILL after the grace */
  bool is_kill_asked; /* the grace ended: the shim was told to kill all */
  bool is_violated;   /* a protocol violation ended reading */
  bool is_closed;     /* srv_exec_io_close() ran */
  int64_t exit_status;
  int term_signal;
  /* stdout: the line being received and the line-rate bucket. */
  char* line; /* max_line_bytes */
  size_t line_len;
  double tokens;
  uint64_t tokens_ns;
  /* stderr: the tail, and the log file. */
  char tail[SRV_EXEC_TAIL_MAX];
  size_t tail_len;
  uv_fs_t fs_open, fs_write, fs_close;
  uv_file log_fd; /* -1 until open */
  char* log_pend; /* SRV_EXEC_LOG_CHUNK, what the next write takes */
  size_t log_pend_len;
  char* log_inflight; /* what the write in flight writes */
  size_t log_inflight_len;
  bool is_err_paused;
  uint64_t log_written, log_dropped;
  char out_buf[SRV_EXEC_READ_BUF];
  char err_buf[SRV_EXEC_READ_BUF];
} srv_exec_run_t;

/* ---- exec_io.c ---- */

/* Initialises the run's timers (no process yet). */
void srv_exec_io_init(srv_exec_run_t* run);

/* Opens the job's log file on the pool; then srv_exec_spawn(). Returns 0
 * or a libuv error. */
int srv_exec_io_open_log(srv_exec_run_t* run);

/* Spawns `args` (the shim first) with `env` detached (its own group), the
 * three pipes, reads stdout and stderr and writes `request` (taken) to
 * stdin. Returns 0 or a libuv error (request not taken then). */
int srv_exec_io_spawn(srv_exec_run_t* run,
                      char** args,
                      char** env,
                      char* request);

/* Stops reading stdout and stderr (a stopped or misbehaving engine). */
void srv_exec_io_stop_reading(srv_exec_run_t* run);

/* Closes what is still open: pipes, timers, the log file. Idempotent. */
void srv_exec_io_close(srv_exec_run_t* run);

/* The last `max` bytes of stderr (from a line start when cut), printable,
 * trailing blanks trimmed, into `out`. */
void srv_exec_io_tail(const srv_exec_run_t* run,
                      char* out,
                      size_t cap,
                      size_t max);

/* Close callback of every run handle; the drain timer's callback. */
void srv_exec_on_handle_closed(uv_handle_t* h);
void srv_exec_on_drain(uv_timer_t* t);

/* ---- engine_exec.c ---- */

/* Fails the job (code, retryable) with `what` and stderr's tail, unless it
 * already let go. */
void srv_exec_fail(srv_exec_run_t* run,
                   const char* code,
                   bool retryable,
                   const char* what);

/* Takes the outcome once the process exited (and its output ended). */
void srv_exec_decide(srv_exec_run_t* run);

/* The log file is open: starts the process. */
void srv_exec_spawn(srv_exec_run_t* run);

/* The process's exit callback. */
void srv_exec_on_exit(uv_process_t* proc, int64_t status, int term_signal);

/* Frees the run if nothing refers to it any more. */
void srv_exec_run_maybe_free(srv_exec_run_t* run);

#endif
