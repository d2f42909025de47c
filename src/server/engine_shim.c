/* engine_shim.c: cryomamba-engine-shim, what cryomambad starts for every
 * exec engine job: `cryomamba-engine-shim SERVER_PID -- PROGRAM ARG...`.
 * The server spawns it detached (setsid), so it leads the job's own
 * process group, and everything the engine starts stays in that group
 * unless it moves out on purpose. The shim
 *   - asks the kernel for SIGHUP when the server dies (PR_SET_PDEATHSIG;
 *     libuv offers no pre-exec hook, so this small program is the hook),
 *     and then SIGKILLs its whole group: the engine dies with the server,
 *     even with kill -9;
 *   - becomes a child subreaper, so the engine's orphans stay its
 *     descendants (and in the group) instead of going to init;
 *   - forks and execs the engine with the stdio it got, and exits as the
 *     engine did (its exit code, or by the same signal) once it exits;
 *     after a SIGTERM (the server stopping the job; the engine's whole
 *     group got it too) only once every descendant has exited, so the
 *     grace before the server's SIGKILL holds for all of them.
 * It reads and writes nothing of the engine's. See docs/engines.md. */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>


static void die_by(int sig) {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none); /* the engine may have dumped; not us */
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  _exit(128 + sig);
}


int main(int argc, char** argv) {
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: cryomamba-engine-shim SERVER_PID -- PROGRAM...\n");
    return 127;
  }
  pid_t server = (pid_t) strtol(argv[1], NULL, 10);
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old);
  if (prctl(PR_SET_PDEATHSIG, SIGHUP) != 0 || getppid() != server) {
    return 127; /* the server is already gone: run nothing */
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t engine = fork();
  if (engine < 0) {
    fprintf(stderr, "cryomamba-engine-shim: fork: %s\n", strerror(errno));
    return 127;
  }
  if (engine == 0) {
    prctl(PR_SET_PDEATHSIG, 0);
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[3], argv + 3);
    fprintf(stderr, "cryomamba-engine-shim: %s: %s\n", argv[3],
            strerror(errno));
    _exit(127);
  }
  bool is_stopping = false; /* SIGTERM/SIGINT came: the group is stopping */
  bool engine_done = false;
  int engine_status = 0;
  for (;;) {
    int sig = sigwaitinfo(&set, NULL);
    if (sig == SIGHUP && getppid() != server) {
      kill(0, SIGKILL); /* the server died: the whole group goes */
      _exit(137);
    }
    if (sig == SIGTERM || sig == SIGINT) {
      is_stopping = true; /* the engine got it too */
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == engine) {
        engine_done = true;
        engine_status = status;
      }
    }
    bool none_left = pid < 0 && errno == ECHILD;
    /* Stopping, the engine's descendants get the grace too (the server
     * SIGKILLs the group after it); otherwise its end is the job's end. */
    if (engine_done && (!is_stopping || none_left)) {
      if (WIFSIGNALED(engine_status)) {
        die_by(WTERMSIG(engine_status));
      }
      return WIFEXITED(engine_status) ? WEXITSTATUS(engine_status) : 127;
    }
  }
}
