/* signals.c: how a command waits on its main thread while a libcryomamba
 * client works on its own thread (upload, watch): SIGINT, SIGTERM and the
 * wake-up SIGUSR1 are blocked before the client thread starts (it inherits
 * the mask, so no signal lands there) and taken with sigtimedwait here;
 * callbacks wake the main thread with cli_wake(). See cli.h. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "cli/cli.h"


uint64_t cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


static void waited(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGUSR1);
}


void cli_signals_block(sigset_t* old) {
  sigset_t set;
  waited(&set);
  pthread_sigmask(SIG_BLOCK, &set, old);
}


void cli_signals_restore(const sigset_t* old) {
  /* A wake-up still pending would kill the process once unblocked. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&usr1, NULL, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, old, NULL);
}


void cli_wake(pthread_t main_thread) {
  pthread_kill(main_thread, SIGUSR1);
}


int cli_wait_signal(atomic_bool* flag, uint64_t until_ms) {
  sigset_t set;
  waited(&set);
  while (!atomic_load(flag)) {
    /* The flag is set before the wake-up is sent, so a wake-up that came
     * before this wait began is seen at the next check: at most 200 ms
     * late, never lost. */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
    int sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      return sig;
    }
    if (until_ms != 0 && cli_now_ms() >= until_ms) {
      return -1;
    }
  }
  return 0;
}
