/* log.c: JSON log lines via jansson. See log.h. The calling thread formats a
 * line and copies it into one bounded ring under a mutex held only for the
 * copy; the logger thread writes the ring to stderr outside the mutex, so a
 * slow stderr (a pipe nobody reads, a terminal on a slow link) delays only
 * that thread. One ring and one writer keep lines whole and in order. At
 * exit an atexit() handler waits (bounded) for the ring to drain; a fatal
 * signal handler writes what is left without the mutex. */
#include "server/log.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/timefmt.h"

#define FLUSH_TIMEOUT_MS 2000 /* a stalled stderr must not hang the exit */
#define FATAL_WAIT_MS 100     /* for the logger thread's write in flight */
#define FATAL_POLL_MS 200     /* per chunk, once stderr stops taking bytes */
#define WRITE_CHUNK_BYTES (64 * 1024) /* per write() of the logger thread */

static const char* level_names[] = {"debug", "info", "warn", "error"};

/* Who may write the ring to stderr: the logger thread (a chunk at a time)
 * until a fatal signal handler takes over for good. */
enum {
  WRITER_IDLE,
  WRITER_BUSY, /* the logger thread is writing [written, writing) */
  WRITER_DYING /* the signal handler writes; the logger thread stops */
};

/* Byte positions count from the start (ring offset = position % size) and
 * are atomic so the fatal signal handler may read them without the mutex;
 * everything else is under `mu`. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t has_data;        /* the logger thread waits for lines */
  pthread_cond_t drained;         /* srv_log_flush() waits for the logger */
  _Atomic uint64_t queued;        /* end of the last line copied in */
  _Atomic uint64_t writing;       /* end of the chunk being written */
  _Atomic uint64_t written;       /* all before it is on stderr */
  _Atomic int writer;             /* WRITER_* */
  _Atomic bool is_writer_stopped; /* it saw WRITER_DYING after a write() */
  uint64_t dropped;               /* lines dropped since the last log.dropped */
  _Atomic uint64_t dropped_total;
  bool is_direct; /* no logger thread: write() on the caller, the old way */
  char ring[SRV_LOG_RING_BYTES];
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .has_data = PTHREAD_COND_INITIALIZER};

static pthread_once_t start_once = PTHREAD_ONCE_INIT;


/* Writes everything, waiting for a non-blocking stderr if need be. Gives up
 * when stderr is gone (EPIPE, EBADF): nothing can be said about that. */
static void write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t) w;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
        return;
      }
    } else if (w == 0 || errno != EINTR) {
      return;
    }
  }
}


static void* logger_main(void* arg) {
  (void) arg;
  pthread_mutex_lock(&g.mu);
  for (;;) {
    while (g.queued == g.written) {
      pthread_cond_wait(&g.has_data, &g.mu);
    }
    uint64_t start = g.written;
    size_t off = (size_t) (start % SRV_LOG_RING_BYTES);
    uint64_t avail = g.queued - start;
    size_t n = SRV_LOG_RING_BYTES - off;
    if (avail < n) {
      n = (size_t) avail;
    }
    if (n > WRITE_CHUNK_BYTES) {
      n = WRITE_CHUNK_BYTES;
    }
    g.writing = start + n;
    pthread_mutex_unlock(&g.mu);
    int idle = WRITER_IDLE;
    if (!atomic_compare_exchange_strong(&g.writer, &idle, WRITER_BUSY)) {
      break; /* the process is dying; the handler writes the rest */
    }
    /* One write() per turn, so `written` is exact whenever a fatal signal
     * handler looks. Producers copy only into free space, never into
     * [written, queued). */
    ssize_t w = write(STDERR_FILENO, g.ring + off, n);
    if (w > 0) {
      g.written = start + (uint64_t) w;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
      poll(&pfd, 1, -1); /* a non-blocking stderr: wait, then try again */
    } else if (errno != EINTR) {
      g.written = start + n; /* stderr is gone (EPIPE, EBADF): discard */
    }
    int busy = WRITER_BUSY;
    if (!atomic_compare_exchange_strong(&g.writer, &busy, WRITER_IDLE)) {
      g.is_writer_stopped = true;
      break;
    }
    pthread_mutex_lock(&g.mu);
    pthread_cond_broadcast(&g.drained);
  }
  for (;;) {
    pause(); /* until the handler's raise() ends the process */
  }
  return NULL;
}


/* Writes at most `n` bytes while stderr takes them within FATAL_POLL_MS:
 * a dying process must not hang on a stalled stderr. Signal-safe. */
static void write_bounded(const char* p, size_t n) {
  while (n > 0) {
    struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
    if (poll(&pfd, 1, FATAL_POLL_MS) <= 0) {
      return;
    }
    ssize_t w = write(STDERR_FILENO, p, n < 4096 ? n : 4096);
    if (w > 0) {
      p += w;
      n -= (size_t) w;
    } else if (w == 0 || errno != EINTR) {
      return;
    }
  }
}


/* SIGABRT (assert, abort) or a fault: write what the logger thread has not,
 * then die of the same signal. The mutex may belong to the thread that
 * crashed, so only the atomic positions are used. */
static void on_fatal_signal(int sig) {
  int was = atomic_exchange(&g.writer, WRITER_DYING);
  uint64_t from = g.written; /* final: the logger thread writes no more */
  if (was == WRITER_BUSY) {
    /* Let its write() in flight return rather than repeat those bytes; if
     * stderr does not take them soon, skip them (they may land later). */
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < FATAL_WAIT_MS && !g.is_writer_stopped; i++) {
      nanosleep(&ms, NULL);
    }
    from = g.is_writer_stopped ? g.written : g.writing;
  }
  uint64_t to = g.queued;
  if (was != WRITER_DYING && to - from <= SRV_LOG_RING_BYTES) {
    while (from < to) {
      size_t off = (size_t) (from % SRV_LOG_RING_BYTES);
      size_t n = to - from < SRV_LOG_RING_BYTES - off
                     ? (size_t) (to - from)
                     : SRV_LOG_RING_BYTES - off;
      write_bounded(g.ring + off, n);
      from += n;
    }
  }
  signal(sig, SIG_DFL);
  raise(sig);
}


static bool flush_for(int timeout_ms) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&g.mu);
  uint64_t target = g.queued;
  while (g.written < target && !g.is_direct) {
    if (pthread_cond_timedwait(&g.drained, &g.mu, &deadline) == ETIMEDOUT) {
      break;
    }
  }
  bool is_drained = g.written >= target;
  pthread_mutex_unlock(&g.mu);
  return is_drained;
}


/* Formats the stand-in for `count` dropped lines; returns its length. */
static size_t format_dropped(char* out, size_t cap, uint64_t count) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format((int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000,
                        ts);
  int n = snprintf(out, cap,
                   "{\"ts\":\"%s\",\"level\":\"warn\",\"event\":"
                   "\"log.dropped\",\"lines\":%llu}\n",
                   ts, (unsigned long long) count);
  return n > 0 && (size_t) n < cap ? (size_t) n : 0;
}


/* Copies `len` bytes in at the queued end; the caller checked the room. */
static void ring_put(const char* p, size_t len) {
  size_t off = (size_t) (g.queued % SRV_LOG_RING_BYTES);
  size_t first =
      len < SRV_LOG_RING_BYTES - off ? len : SRV_LOG_RING_BYTES - off;
  memcpy(g.ring + off, p, first);
  memcpy(g.ring, p + first, len - first);
  g.queued += len;
}


/* The last lines before exit() (or a return from main) reach stderr, and a
 * count of lines dropped at the end is not lost. */
static void at_exit(void) {
  flush_for(FLUSH_TIMEOUT_MS);
  pthread_mutex_lock(&g.mu);
  if (g.dropped > 0) {
    char note[160];
    size_t len = format_dropped(note, sizeof(note), g.dropped);
    if (len <= SRV_LOG_RING_BYTES - (g.queued - g.written)) {
      ring_put(note, len);
      g.dropped = 0;
      pthread_cond_signal(&g.has_data);
    }
  }
  pthread_mutex_unlock(&g.mu);
  flush_for(FLUSH_TIMEOUT_MS);
}


static void start(void) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0 ||
      pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
      pthread_cond_init(&g.drained, &attr) != 0) {
    g.is_direct = true;
    return;
  }
  pthread_condattr_destroy(&attr);
  /* The logger thread takes no asynchronous signals (SIGINT and SIGTERM
   * belong to the loop). */
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  int err = pthread_create(&thread, NULL, logger_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    g.is_direct = true;
    return;
  }
  pthread_detach(thread);
  atexit(at_exit); /* if it fails, the end of the log may be lost */
  /* Only where nobody else (a sanitizer, a debugger) handles them. */
  static const int fatal[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
    struct sigaction sa;
    if (sigaction(fatal[i], NULL, &sa) == 0 &&
        (sa.sa_flags & SA_SIGINFO) == 0 && sa.sa_handler == SIG_DFL) {
      memset(&sa, 0, sizeof(sa));
      sa.sa_handler = on_fatal_signal;
      sa.sa_flags = (int) (SA_RESETHAND | SA_NODEFER);
      sigemptyset(&sa.sa_mask);
      sigaction(fatal[i], &sa, NULL);
    }
  }
}


static void push(const char* line, size_t len) {
  pthread_once(&start_once, start);
  pthread_mutex_lock(&g.mu);
  if (g.is_direct) {
    write_all(line, len); /* under the mutex: lines stay whole, in order */
    pthread_mutex_unlock(&g.mu);
    return;
  }
  char note[160];
  size_t note_len =
      g.dropped > 0 ? format_dropped(note, sizeof(note), g.dropped) : 0;
  uint64_t room = SRV_LOG_RING_BYTES - (g.queued - g.written);
  if (note_len + len > room) {
    g.dropped++;
    g.dropped_total++;
  } else {
    if (note_len > 0) {
      ring_put(note, note_len);
      g.dropped = 0;
    }
    ring_put(line, len);
    pthread_cond_signal(&g.has_data);
  }
  pthread_mutex_unlock(&g.mu);
}


void srv_log_flush(void) {
  pthread_once(&start_once, start);
  flush_for(FLUSH_TIMEOUT_MS);
}


uint64_t srv_log_dropped_total(void) {
  return g.dropped_total;
}


int srv_log_enabled(const srv_logger_t* lg, srv_log_level_t level) {
  return (int) level >= lg->min_level;
}


void srv_log(const srv_logger_t* lg,
             srv_log_level_t level,
             const char* event,
             ...) {
  if (!srv_log_enabled(lg, level)) {
    return;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  char ts[CORE_TIMESTAMP_LEN + 1];
  core_timestamp_format((int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000,
                        ts);
  json_t* line = json_object();
  if (line == NULL) {
    return;
  }
  json_object_set_new(line, "ts", json_string(ts));
  json_object_set_new(line, "level", json_string(level_names[level]));
  json_object_set_new(line, "event", json_string(event));
  va_list ap;
  va_start(ap, event);
  const char* key;
  while ((key = va_arg(ap, const char*)) != NULL) {
    if (strlen(key) < 3 || key[1] != ':') {
      break; /* a malformed call site; stop rather than misread varargs */
    }
    json_t* value = NULL;
    switch (key[0]) {
    case 's': {
      const char* s = va_arg(ap, const char*);
      value = s != NULL ? json_string(s) : json_null();
      if (value == NULL) {
        value = json_string("<invalid utf-8>");
      }
      break;
    }
    case 'i':
      value = json_integer((json_int_t) va_arg(ap, int64_t));
      break;
    case 'f':
      value = json_real(va_arg(ap, double));
      break;
    default:
      break;
    }
    if (value == NULL) {
      break;
    }
    json_object_set_new(line, key + 2, value);
  }
  va_end(ap);
  char* text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(line);
  if (text == NULL) {
    return;
  }
  size_t len = strlen(text);
  text[len] = '\n'; /* replaces the NUL; we queue exactly len + 1 bytes */
  push(text, len + 1);
  free(text);
}
