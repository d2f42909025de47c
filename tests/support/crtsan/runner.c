/* runner.c: main() of the Criterion stand-in (criterion/criterion.h) used by
 * ThreadSanitizer builds of the unit tests. Runs each registered test in a
 * forked child (so a failing assertion, a crash or a TSan report ends only
 * that test, as with Criterion), one at a time, with its .timeout scaled by
 * $CRTSAN_TIMEOUT_SCALE (TSan slows code 5-15x). Prints one line per test
 * and exits 1 if any failed. The parent never starts a thread, so forking is
 * safe under TSan. */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SKIP_STATUS 77 /* the child's exit status for cr_skip_test() */

static crtsan_test_t* tests;
static crtsan_test_t** tail = &tests;


void crtsan_register(crtsan_test_t* test) {
  /* Constructors run in file order; keep it, as Criterion's listing does. */
  *tail = test;
  tail = &test->next;
}


void crtsan_fail(const char* file,
                 int line,
                 const char* expr,
                 const char* fmt,
                 ...) {
  fprintf(stderr, "%s:%d: Assertion failed: %s;", file, line, expr);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  /* Not exit(): other threads of the test may still run, and destructors
   * racing with them would only add noise to the report. */
  _exit(1);
}


void crtsan_skip(const char* fmt, ...) {
  fprintf(stderr, "skipped:");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(NULL);
  _exit(SKIP_STATUS);
}


static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


/* Returns 0 (passed), 1 (failed) or 2 (skipped). */
static int run_one(const crtsan_test_t* t, double scale) {
  fflush(NULL);
  double start = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "[FAIL] %s::%s: fork: %s\n", t->suite, t->name,
            strerror(errno));
    return 1;
  }
  if (pid == 0) {
    if (t->opts.timeout > 0) {
      /* SIGALRM's default action ends the child; the parent reports it. */
      alarm((unsigned) ceil(t->opts.timeout * scale));
    }
    if (t->opts.init != NULL) {
      t->opts.init();
    }
    t->fn();
    if (t->opts.fini != NULL) {
      t->opts.fini();
    }
    exit(0); /* exit(), so TSan's end-of-process checks run */
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "[FAIL] %s::%s: waitpid: %s\n", t->suite, t->name,
              strerror(errno));
      return 1;
    }
  }
  double took = now_s() - start;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    printf("[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, took);
    return 0;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS) {
    printf("[SKIP] %s::%s\n", t->suite, t->name);
    return 2;
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
    printf("[FAIL] %s::%s: timed out after %.2fs\n", t->suite, t->name, took);
  } else if (WIFSIGNALED(status)) {
    printf("[FAIL] %s::%s: killed by signal %d\n", t->suite, t->name,
           WTERMSIG(status));
  } else {
    printf("[FAIL] %s::%s: exit status %d\n", t->suite, t->name,
           WEXITSTATUS(status));
  }
  return 1;
}


int main(int argc, char** argv) {
  /* An optional argument runs only the tests whose "suite::name" contains
   * it, like a rough --filter. */
  const char* filter = argc > 1 ? argv[1] : NULL;
  double scale = 1.0;
  const char* s = getenv("CRTSAN_TIMEOUT_SCALE");
  if (s != NULL && atof(s) > 0) {
    scale = atof(s);
  }
  int counts[3] = {0, 0, 0};
  for (const crtsan_test_t* t = tests; t != NULL; t = t->next) {
    char full[256];
    snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
    if (filter != NULL && strstr(full, filter) == NULL) {
      continue;
    }
    counts[run_one(t, scale)]++;
  }
  printf("Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n",
         counts[0] + counts[1] + counts[2], counts[0], counts[1], counts[2]);
  return counts[1] > 0 ? 1 : 0;
}
