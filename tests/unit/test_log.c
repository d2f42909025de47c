/* test_log.c: the server's logger (src/server/log.c) through log_child, a
 * process that logs like cryomambad with its stderr on a pipe read here: a
 * stalled stderr never blocks a caller, dropped lines are counted where
 * they went missing, every line is whole and in order, and the last lines
 * still come out at exit() and on abort(). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4 /* as in log_child.c */

typedef struct {
  pid_t pid;
  int in;  /* its stdin */
  int out; /* its stdout */
  int err; /* its stderr: the log */
} child_t;


/* Starts log_child MODE COUNT; `pipe_bytes` > 0 shrinks the log pipe. */
static void spawn(child_t* c, const char* mode, int count, int pipe_bytes) {
  const char* path = getenv("CRYOMAMBA_LOG_CHILD");
  cr_assert_not_null(path, "CRYOMAMBA_LOG_CHILD is not set");
  int in[2], out[2], err[2];
  cr_assert_eq(pipe(in), 0);
  cr_assert_eq(pipe(out), 0);
  cr_assert_eq(pipe(err), 0);
  if (pipe_bytes > 0) {
    cr_assert_geq(fcntl(err[1], F_SETPIPE_SZ, pipe_bytes), 0);
  }
  char count_text[16];
  snprintf(count_text, sizeof(count_text), "%d", count);
  c->pid = fork();
  cr_assert_geq(c->pid, 0);
  if (c->pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core); /* abort mode: no core file */
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (int fd = 3; fd < 64; fd++) {
      close(fd);
    }
    execl(path, path, mode, count_text, (char*) NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  c->in = in[1];
  c->out = out[0];
  c->err = err[0];
}


/* Reads `fd` to its end; the caller frees the NUL-terminated result. */
static char* read_all(int fd, size_t* len) {
  size_t cap = 1 << 16;
  char* buf = malloc(cap);
  cr_assert_not_null(buf);
  *len = 0;
  for (;;) {
    if (*len + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert_not_null(buf);
    }
    ssize_t n = read(fd, buf + *len, cap - 1 - *len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    cr_assert_geq(n, 0, "read: %s", strerror(errno));
    if (n == 0) {
      break;
    }
    *len += (size_t) n;
  }
  buf[*len] = '\0';
  return buf;
}


/* Waits for the child's "done" (all its srv_log() calls returned while
 * nobody read the log), lets it go on, and reads the whole log. */
static char* run(child_t* c) {
  struct pollfd pfd = {.fd = c->out, .events = POLLIN};
  int ready = poll(&pfd, 1, 10000);
  if (ready != 1) {
    kill(c->pid, SIGKILL);
  }
  cr_assert_eq(ready, 1, "srv_log() blocked on a stalled stderr");
  char done[5] = "";
  cr_assert_eq(read(c->out, done, 4), 4);
  cr_assert_str_eq(done, "done");
  cr_assert_eq(write(c->in, "g", 1), 1);
  size_t len = 0;
  return read_all(c->err, &len);
}


static int finish(child_t* c) {
  close(c->in);
  close(c->out);
  close(c->err);
  int status = 0;
  cr_assert_eq(waitpid(c->pid, &status, 0), c->pid);
  return status;
}


typedef struct {
  int lines[THREADS]; /* test.line lines seen, per thread */
  int next[THREADS];  /* the seq each thread's next line should have */
  long dropped;       /* sum of log.dropped counts */
  int ends;           /* test.end lines */
  bool is_end_last;   /* test.end was the last line */
} tally_t;


/* Checks every line is one JSON object ending in '\n' and that each
 * thread's lines come in order, each gap announced by the log.dropped line
 * just before it (one writer thread: only thread 0 may drop here). */
static void tally(const char* text, tally_t* t) {
  memset(t, 0, sizeof(*t));
  long pending_drop = 0;
  const char* p = text;
  while (*p != '\0') {
    const char* nl = strchr(p, '\n');
    cr_assert_not_null(nl, "a line without its newline: %.80s", p);
    json_error_t jerr;
    json_t* line = json_loadb(p, (size_t) (nl - p), 0, &jerr);
    cr_assert_not_null(line, "not JSON (%s): %.*s", jerr.text, (int) (nl - p),
                       p);
    const char* event = json_string_value(json_object_get(line, "event"));
    cr_assert_not_null(event);
    cr_assert_not_null(json_object_get(line, "ts"));
    t->is_end_last = false;
    if (strcmp(event, "log.dropped") == 0) {
      long n = (long) json_integer_value(json_object_get(line, "lines"));
      cr_assert_gt(n, 0);
      cr_assert_eq(pending_drop, 0, "two log.dropped lines in a row");
      pending_drop = n;
      t->dropped += n;
    } else if (strcmp(event, "test.line") == 0) {
      int th = (int) json_integer_value(json_object_get(line, "thread"));
      int seq = (int) json_integer_value(json_object_get(line, "seq"));
      cr_assert(th >= 0 && th < THREADS);
      cr_assert_eq(seq, t->next[th] + pending_drop,
                   "thread %d: seq %d after %d, %ld dropped", th, seq,
                   t->next[th], pending_drop);
      t->next[th] = seq + 1;
      t->lines[th]++;
      pending_drop = 0;
    } else {
      cr_assert_str_eq(event, "test.end");
      t->next[0] += (int) pending_drop; /* lines dropped before the end */
      pending_drop = 0;
      t->ends++;
      t->is_end_last = true;
    }
    json_decref(line);
    p = nl + 1;
  }
  t->next[0] += (int) pending_drop;
}


Test(log, never_blocks_on_a_stalled_stderr, .timeout = 30) {
  enum {
    COUNT = 20000 /* 3.4 MB: pipe and ring overflow */
  };
  child_t c;
  spawn(&c, "stall", COUNT, 4096);
  char* text = run(&c);
  int status = finish(&c);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  tally_t t;
  tally(text, &t);
  free(text);
  cr_expect_gt(t.dropped, 0, "a 4 KiB pipe and a 1 MiB ring held 3.4 MB");
  cr_expect_gt(t.lines[0], 1000, "only %d lines came out", t.lines[0]);
  cr_expect_eq(t.lines[0] + t.dropped, COUNT, "%d written + %ld dropped",
               t.lines[0], t.dropped);
  cr_expect_eq(t.ends, 1);
  cr_expect(t.is_end_last, "test.end is not the last line");
}


/* 3000 lines, 510 KB: they fit the ring, so none may be lost although
 * nearly all are still queued when the process ends. */
#define FITS 3000

Test(log, last_lines_reach_stderr_at_exit, .timeout = 30) {
  child_t c;
  spawn(&c, "exit", FITS, 4096);
  char* text = run(&c);
  int status = finish(&c);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "status %d", status);
  tally_t t;
  tally(text, &t);
  free(text);
  cr_expect_eq(t.dropped, 0);
  cr_expect_eq(t.lines[0], FITS, "%d of %d lines before exit()", t.lines[0],
               FITS);
}


Test(log, queued_lines_reach_stderr_on_abort, .timeout = 30) {
  child_t c;
  spawn(&c, "abort", FITS, 4096);
  char* text = run(&c);
  int status = finish(&c);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d",
            status);
  tally_t t;
  tally(text, &t);
  free(text);
  cr_expect_eq(t.dropped, 0);
  cr_expect_eq(t.lines[0], FITS, "%d of %d lines before abort()", t.lines[0],
               FITS);
}


Test(log, lines_from_threads_stay_whole_and_in_order, .timeout = 30) {
  enum {
    COUNT = 1000 /* per thread; 680 KB in all: fits the ring */
  };
  child_t c;
  spawn(&c, "threads", COUNT, 4096);
  char* text = run(&c);
  int status = finish(&c);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  tally_t t;
  tally(text, &t);
  free(text);
  cr_expect_eq(t.dropped, 0);
  for (int th = 0; th < THREADS; th++) {
    cr_expect_eq(t.lines[th], COUNT, "thread %d: %d lines", th, t.lines[th]);
  }
}
