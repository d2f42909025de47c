/* exec_io.c: an exec engine run's I/O with its process. See exec_io.h.
 * Loop thread only; the log file is written by libuv's pool. */
#include "server/exec_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_proto.h"
#include "server/jobs.h"


void srv_exec_on_handle_closed(uv_handle_t* h) {
  srv_exec_run_t* run = h->data;
  run->open_handles--;
  srv_exec_run_maybe_free(run);
}


void srv_exec_io_init(srv_exec_run_t* run) {
  uv_loop_t* loop = run->job->ctx->loop;
  run->log_fd = -1;
  uv_timer_init(loop, &run->wall);
  uv_timer_init(loop, &run->grace);
  uv_timer_init(loop, &run->drain);
  run->wall.data = run->grace.data = run->drain.data = run;
  run->open_handles = 3;
}


/* ---- the log file ---- */

static void log_kick(srv_exec_run_t* run);


static void on_log_closed(uv_fs_t* req) {
  srv_exec_run_t* run = req->data;
  uv_fs_req_cleanup(req);
  run->fs_pending--;
  srv_exec_run_maybe_free(run);
}


static void log_close(srv_exec_run_t* run) {
  if (run->log_fd < 0 || run->log_inflight != NULL) {
    return; /* closed after the write in flight */
  }
  run->fs_close.data = run;
  if (uv_fs_close(run->job->ctx->loop, &run->fs_close, run->log_fd,
                  on_log_closed) == 0) {
    run->fs_pending++;
  }
  run->log_fd = -1;
}


static void on_log_written(uv_fs_t* req) {
  srv_exec_run_t* run = req->data;
  if (req->result > 0) {
    run->log_written += (uint64_t) req->result;
  }
  uv_fs_req_cleanup(req);
  run->fs_pending--;
  free(run->log_inflight);
  run->log_inflight = NULL;
  run->log_inflight_len = 0;
  if (run->is_closed) {
    log_close(run);
    srv_exec_run_maybe_free(run);
    return;
  }
  log_kick(run);
}


static void on_err_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
static void on_alloc(uv_handle_t* h, size_t hint, uv_buf_t* buf);


/* Starts a write of what is pending unless one is in flight; resumes
 * reading stderr when there is room again. */
static void log_kick(srv_exec_run_t* run) {
  if (run->log_inflight == NULL && run->log_pend_len > 0 && run->log_fd >= 0) {
    uv_buf_t b = uv_buf_init(run->log_pend, (unsigned) run->log_pend_len);
    run->fs_write.data = run;
    if (uv_fs_write(run->job->ctx->loop, &run->fs_write, run->log_fd, &b, 1, -1,
                    on_log_written) == 0) {
      run->fs_pending++;
      run->log_inflight = run->log_pend;
      run->log_inflight_len = run->log_pend_len;
      run->log_pend = NULL;
      run->log_pend_len = 0;
    }
  }
  if (run->is_err_paused && run->log_pend_len < SRV_EXEC_LOG_CHUNK &&
      !run->is_closed && !run->err_eof && !run->is_abandoned) {
    run->is_err_paused = false;
    uv_read_start((uv_stream_t*) &run->err, on_alloc, on_err_read);
  }
}


/* Keeps `n` bytes of stderr: in the tail, and in the log up to its cap. */
static void keep_stderr(srv_exec_run_t* run, const char* p, size_t n) {
  if (n >= SRV_EXEC_TAIL_MAX) {
    memcpy(run->tail, p + n - SRV_EXEC_TAIL_MAX, SRV_EXEC_TAIL_MAX);
    run->tail_len = SRV_EXEC_TAIL_MAX;
  } else {
    size_t keep = SRV_EXEC_TAIL_MAX - n;
    if (run->tail_len > keep) {
      memmove(run->tail, run->tail + run->tail_len - keep, keep);
      run->tail_len = keep;
    }
    memcpy(run->tail + run->tail_len, p, n);
    run->tail_len += n;
  }
  uint64_t cap = run->job->ctx->cfg.engines.log_bytes;
  uint64_t held = run->log_written + run->log_pend_len + run->log_inflight_len;
  size_t room = held >= cap ? 0 : (size_t) (cap - held);
  size_t take = n < room ? n : room;
  if (take > SRV_EXEC_LOG_CHUNK - run->log_pend_len) {
    take = SRV_EXEC_LOG_CHUNK - run->log_pend_len;
  }
  if (take > 0 && run->log_pend == NULL &&
      (run->log_pend = malloc(SRV_EXEC_LOG_CHUNK)) == NULL) {
    take = 0;
  }
  if (take > 0) {
    memcpy(run->log_pend + run->log_pend_len, p, take);
    run->log_pend_len += take;
  }
  run->log_dropped += n - take;
  if (run->log_pend_len == SRV_EXEC_LOG_CHUNK) {
    /* Back-pressure: the engine waits on its stderr, not our memory. */
    uv_read_stop((uv_stream_t*) &run->err);
    run->is_err_paused = true;
  }
  log_kick(run);
}


static void on_log_open(uv_fs_t* req) {
  srv_exec_run_t* run = req->data;
  int fd = (int) req->result;
  uv_fs_req_cleanup(req);
  run->fs_pending--;
  if (fd >= 0) {
    run->log_fd = fd;
  }
  if (run->is_abandoned) {
    log_close(run);
    srv_exec_run_maybe_free(run);
    return;
  }
  if (fd < 0) {
    srv_exec_fail(run, "internal", true, "could not create the engine's log");
    return;
  }
  srv_exec_spawn(run);
}


int srv_exec_io_open_log(srv_exec_run_t* run) {
  srv_job_t* job = run->job;
  char path[1200];
  snprintf(path, sizeof(path), "%s/artifacts/%s-engine.log",
           job->ctx->cfg.state_dir, job->id);
  run->fs_open.data = run;
  int err =
      uv_fs_open(job->ctx->loop, &run->fs_open, path,
                 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644, on_log_open);
  if (err == 0) {
    run->fs_pending++;
  }
  return err;
}


/* ---- stdout ---- */

static void violation(srv_exec_run_t* run, const char* why) {
  if (run->is_violated) {
    return;
  }
  run->is_violated = true;
  srv_exec_io_stop_reading(run);
  char what[512];
  snprintf(what, sizeof(what), "engine '%s' broke the protocol: %s",
           run->job->engine->name, why);
  srv_exec_fail(run, "engine_protocol", false, what);
}


/* One line per token; `max_lines_per_s` tokens a second, as many at once. */
static bool take_token(srv_exec_run_t* run) {
  double rate = run->job->ctx->cfg.engines.max_lines_per_s;
  uint64_t now = uv_hrtime();
  run->tokens += (double) (now - run->tokens_ns) / 1e9 * rate;
  run->tokens = run->tokens > rate ? rate : run->tokens;
  run->tokens_ns = now;
  if (run->tokens < 1) {
    return false;
  }
  run->tokens -= 1;
  return true;
}


static void handle_line(srv_exec_run_t* run, const char* line, size_t len) {
  char why[300];
  core_engine_msg_t m;
  int rc = core_engine_msg_parse(line, len, &m, why, sizeof(why));
  if (rc == -ENODATA || run->mask == NULL) {
    return;
  }
  if (!take_token(run)) {
    snprintf(why, sizeof(why), "it printed more than %u lines a second",
             run->job->ctx->cfg.engines.max_lines_per_s);
    violation(run, why);
    return;
  }
  if (rc != 0) {
    violation(run, why);
    return;
  }
  switch (m.type) {
  case CORE_ENGINE_MSG_PROGRESS:
    srv_mask_run_progress(run->mask, m.progress,
                          m.has_message ? m.message : NULL);
    break;
  case CORE_ENGINE_MSG_MESSAGE:
    srv_mask_run_progress(run->mask, NAN, m.message);
    srv_log(&run->job->ctx->log, SRV_LOG_INFO, "engine.message", "s:job_id",
            run->job->id, "s:message", m.message, NULL);
    break;
  case CORE_ENGINE_MSG_REGION: {
    core_box_t b = {{m.box[0], m.box[1], m.box[2]},
                    {m.box[3], m.box[4], m.box[5]}};
    if (srv_mask_run_region(run->mask, &b) != 0) {
      const core_shape_t* s = &run->job->shape;
      snprintf(why, sizeof(why),
               "region [%u,%u,%u,%u,%u,%u] is not a non-empty box within "
               "the volume [%u,%u,%u]",
               m.box[0], m.box[1], m.box[2], m.box[3], m.box[4], m.box[5],
               s->d[0], s->d[1], s->d[2]);
      violation(run, why);
      return;
    }
    if (m.has_progress) {
      srv_mask_run_progress(run->mask, m.progress, NULL);
    }
    break;
  }
  case CORE_ENGINE_MSG_STATS:
    srv_mask_run_set_stats(run->mask, m.stats);
    break;
  }
}


/* Splits what stdout gave into lines, none longer than the bound. */
static void feed(srv_exec_run_t* run, const char* p, size_t n) {
  size_t max = run->job->ctx->cfg.engines.max_line_bytes;
  while (n > 0 && !run->is_violated && !run->is_abandoned) {
    const char* nl = memchr(p, '\n', n);
    size_t take = nl != NULL ? (size_t) (nl - p) : n;
    if (run->line_len + take > max) {
      char why[96];
      snprintf(why, sizeof(why), "a stdout line is longer than %zu bytes", max);
      violation(run, why);
      return;
    }
    memcpy(run->line + run->line_len, p, take);
    run->line_len += take;
    if (nl == NULL) {
      return;
    }
    handle_line(run, run->line, run->line_len);
    run->line_len = 0;
    p += take + 1;
    n -= take + 1;
  }
}


static void on_alloc(uv_handle_t* h, size_t hint, uv_buf_t* buf) {
  (void) hint;
  srv_exec_run_t* run = h->data;
  char* base = h == (uv_handle_t*) &run->out ? run->out_buf : run->err_buf;
  *buf = uv_buf_init(base, SRV_EXEC_READ_BUF);
}


static void maybe_decide(srv_exec_run_t* run) {
  if (run->has_exited && run->out_eof && run->err_eof) {
    uv_timer_stop(&run->drain);
    srv_exec_decide(run);
  }
}


void srv_exec_on_drain(uv_timer_t* t) {
  srv_exec_decide(t->data);
}


static void close_handle(srv_exec_run_t* run, uv_handle_t* h) {
  (void) run;
  if (!uv_is_closing(h)) {
    uv_close(h, srv_exec_on_handle_closed);
  }
}


static void on_out_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  srv_exec_run_t* run = s->data;
  if (nread > 0) {
    feed(run, buf->base, (size_t) nread);
    return;
  }
  if (nread == 0) {
    return;
  }
  if (run->line_len > 0 && !run->is_violated && !run->is_abandoned) {
    handle_line(run, run->line, run->line_len); /* a last unended line */
    run->line_len = 0;
  }
  run->out_eof = true;
  close_handle(run, (uv_handle_t*) &run->out);
  maybe_decide(run);
}


static void on_err_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  srv_exec_run_t* run = s->data;
  if (nread > 0) {
    keep_stderr(run, buf->base, (size_t) nread);
    return;
  }
  if (nread == 0) {
    return;
  }
  run->err_eof = true;
  close_handle(run, (uv_handle_t*) &run->err);
  maybe_decide(run);
}


static void on_request_written(uv_write_t* req, int status) {
  (void) status; /* an engine may exit without reading it */
  srv_exec_run_t* run = req->data;
  free(run->request);
  run->request = NULL;
  close_handle(run, (uv_handle_t*) &run->in); /* EOF for the engine */
}


int srv_exec_io_spawn(srv_exec_run_t* run,
                      char** args,
                      char** env,
                      char* request) {
  uv_loop_t* loop = run->job->ctx->loop;
  uv_pipe_init(loop, &run->in, 0);
  uv_pipe_init(loop, &run->out, 0);
  uv_pipe_init(loop, &run->err, 0);
  run->in.data = run->out.data = run->err.data = run;
  run->has_pipes = true;
  run->open_handles += 3;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t*) &run->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t*) &run->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t*) &run->err;
  uv_process_options_t opt;
  memset(&opt, 0, sizeof(opt));
  opt.file = args[0];
  opt.args = args;
  opt.env = env;
  opt.flags = UV_PROCESS_DETACHED; /* setsid: its own process group */
  opt.stdio_count = 3;
  opt.stdio = stdio;
  opt.exit_cb = srv_exec_on_exit;
  run->proc.data = run;
  int err = uv_spawn(loop, &run->proc, &opt);
  run->open_handles++;
  if (err != 0) {
    close_handle(run, (uv_handle_t*) &run->proc);
    run->has_exited = true; /* nothing to wait for */
    run->is_decided = true;
    run->out_eof = run->err_eof = true;
    close_handle(run, (uv_handle_t*) &run->in);
    close_handle(run, (uv_handle_t*) &run->out);
    close_handle(run, (uv_handle_t*) &run->err);
    return err;
  }
  run->tokens = run->job->ctx->cfg.engines.max_lines_per_s;
  run->tokens_ns = uv_hrtime();
  uv_read_start((uv_stream_t*) &run->out, on_alloc, on_out_read);
  uv_read_start((uv_stream_t*) &run->err, on_alloc, on_err_read);
  run->request = request;
  run->request_req.data = run;
  size_t len = strlen(request);
  request[len] = '\n'; /* the NUL becomes the line's end */
  uv_buf_t b = uv_buf_init(request, (unsigned) len + 1);
  if (uv_write(&run->request_req, (uv_stream_t*) &run->in, &b, 1,
               on_request_written) != 0) {
    free(run->request);
    run->request = NULL;
    close_handle(run, (uv_handle_t*) &run->in);
  }
  return 0;
}


void srv_exec_io_stop_reading(srv_exec_run_t* run) {
  if (!run->has_pipes) {
    return;
  }
  if (!uv_is_closing((uv_handle_t*) &run->out)) {
    uv_read_stop((uv_stream_t*) &run->out);
  }
  if (!uv_is_closing((uv_handle_t*) &run->err)) {
    uv_read_stop((uv_stream_t*) &run->err);
  }
}


void srv_exec_io_close(srv_exec_run_t* run) {
  if (run->is_closed) {
    return;
  }
  run->is_closed = true;
  close_handle(run, (uv_handle_t*) &run->wall);
  close_handle(run, (uv_handle_t*) &run->grace);
  close_handle(run, (uv_handle_t*) &run->drain);
  if (run->has_pipes) {
    close_handle(run, (uv_handle_t*) &run->in);
    close_handle(run, (uv_handle_t*) &run->out);
    close_handle(run, (uv_handle_t*) &run->err);
  }
  free(run->log_pend);
  run->log_pend = NULL;
  run->log_pend_len = 0;
  log_close(run);
}


void srv_exec_io_tail(const srv_exec_run_t* run,
                      char* out,
                      size_t cap,
                      size_t max) {
  size_t n = run->tail_len;
  while (n > 0 && (run->tail[n - 1] == '\n' || run->tail[n - 1] == ' ' ||
                   run->tail[n - 1] == '\r' || run->tail[n - 1] == '\t')) {
    n--;
  }
  size_t from = n > max ? n - max : 0;
  if (from > 0) {
    const char* nl = memchr(run->tail + from, '\n', n - from);
    from = nl != NULL && nl + 1 < run->tail + n ? (size_t) (nl + 1 - run->tail)
                                                : from;
  }
  size_t k = 0;
  for (size_t i = from; i < n && k + 1 < cap; i++) {
    unsigned char c = (unsigned char) run->tail[i];
    out[k++] = c == '\n' ? '\n' : (c < 0x20 || c >= 0x7f) ? '?' : (char) c;
  }
  out[k] = '\0';
}
