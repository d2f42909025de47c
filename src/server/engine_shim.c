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
 *     descendants instead of going to init, even one that left the group
 *     (setsid, setpgid): the shim finds those through /proc, forwards the
 *     SIGTERM to them, and SIGKILLs every descendant, in the group or not,
 *     when the server says so (SIGUSR1, at the end of the grace), when the
 *     server dies, and before it exits: nothing outlives the job;
 *   - forks and execs the engine with the stdio it got, and exits as the
 *     engine did (its exit code, or by the same signal) once it exits;
 *     after a SIGTERM (the server stopping the job; the engine's whole
 *     group got it too) only once every descendant has exited, so the
 *     grace before the server's SIGKILL holds for all of them.
 * It reads and writes nothing of the engine's. See docs/engines.md. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Rounds of "find the descendants, kill them" before giving up (each one
 * finds what forked since the last). */
#define KILL_ROUNDS 1000

typedef struct {
  pid_t pid, ppid, pgrp;
} proc_t;

/* What waitpid() told of the engine, whoever reaped it. */
typedef struct {
  pid_t engine;
  bool engine_done;
  int engine_status;
} shim_t;


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


/* Every live process's pid, parent and group from /proc (zombies left
 * out: nothing to signal). *out is malloc'ed, the caller's; -1 on no
 * memory or no /proc. */
static int scan_procs(proc_t** out, size_t* count) {
  DIR* dir = opendir("/proc");
  if (dir == NULL) {
    return -1;
  }
  size_t n = 0, cap = 256;
  proc_t* v = malloc(cap * sizeof(*v));
  struct dirent* e;
  while (v != NULL && (e = readdir(dir)) != NULL) {
    char* end = NULL;
    long pid = strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') {
      continue;
    }
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE* f = fopen(path, "re");
    if (f == NULL) {
      continue; /* gone meanwhile */
    }
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* pid (comm) state ppid pgrp ...: comm may hold anything, ')' too. */
    char* rp = strrchr(buf, ')');
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (rp == NULL ||
        sscanf(rp + 1, " %c %ld %ld", &state, &ppid, &pgrp) != 3 ||
        state == 'Z' || state == 'X') {
      continue;
    }
    if (n == cap) {
      proc_t* bigger = realloc(v, 2 * cap * sizeof(*v));
      if (bigger == NULL) {
        free(v);
        v = NULL;
        break;
      }
      v = bigger;
      cap *= 2;
    }
    v[n++] = (proc_t){(pid_t) pid, (pid_t) ppid, (pid_t) pgrp};
  }
  closedir(dir);
  if (v == NULL) {
    return -1;
  }
  *out = v;
  *count = n;
  return 0;
}


/* Sends `sig` to every live descendant of the shim (outside its group
 * only, if `outside_only`). Returns how many got it, -1 if /proc could not
 * be read. */
static int signal_descendants(int sig, bool outside_only) {
  proc_t* v = NULL;
  size_t n = 0;
  if (scan_procs(&v, &n) != 0) {
    return -1;
  }
  pid_t self = getpid(), group = getpgrp();
  /* mark[i]: v[i] descends from the shim. A parent may come after its
   * child in /proc's order: repeat until nothing changes. */
  bool* mark = calloc(n > 0 ? n : 1, sizeof(*mark));
  if (mark == NULL) {
    free(v);
    return -1;
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < n; i++) {
      if (mark[i]) {
        continue;
      }
      bool is_desc = v[i].ppid == self;
      for (size_t j = 0; !is_desc && j < n; j++) {
        is_desc = mark[j] && v[j].pid == v[i].ppid;
      }
      if (is_desc) {
        mark[i] = changed = true;
      }
    }
  }
  int sent = 0;
  for (size_t i = 0; i < n; i++) {
    if (mark[i] && (!outside_only || v[i].pgrp != group) &&
        kill(v[i].pid, sig) == 0) {
      sent++;
    }
  }
  free(mark);
  free(v);
  return sent;
}


/* Reaps every child that has ended, noting the engine's status. True when
 * the shim has no child left. */
static bool reap(shim_t* sh) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == sh->engine) {
      sh->engine_done = true;
      sh->engine_status = status;
    }
  }
  return pid < 0 && errno == ECHILD;
}


/* SIGKILLs every descendant until none is left (orphans come to the shim
 * as their parents die, and are reaped here). */
static void kill_descendants(shim_t* sh, const sigset_t* waited) {
  for (int round = 0; round < KILL_ROUNDS; round++) {
    int sent = signal_descendants(SIGKILL, false);
    if (sent < 0) {
      kill(0, SIGKILL); /* no /proc: the group at least, and the shim */
    }
    if (reap(sh) && sent == 0) {
      return;
    }
    /* Until the next child ends (or 10 ms: a killed grandchild is not
     * ours to be told about). */
    struct timespec tick = {0, 10 * 1000 * 1000};
    sigtimedwait(waited, NULL, &tick);
  }
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
  sigaddset(&set, SIGUSR1);
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
  shim_t sh = {.engine = engine};
  bool is_stopping = false; /* SIGTERM/SIGINT came: the group is stopping */
  for (;;) {
    int sig = sigwaitinfo(&set, NULL);
    if ((sig == SIGHUP && getppid() != server) || sig == SIGUSR1) {
      /* The server died, or its grace ended: every descendant goes. */
      kill_descendants(&sh, &set);
      break;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      is_stopping = true; /* the engine's group got it too; the others: */
      signal_descendants(SIGTERM, true);
    }
    bool none_left = reap(&sh);
    /* Stopping, the engine's descendants get the grace too (SIGUSR1 after
     * it); otherwise its end is the job's end, and theirs. */
    if (sh.engine_done && (!is_stopping || none_left)) {
      kill_descendants(&sh, &set);
      break;
    }
  }
  if (!sh.engine_done) {
    _exit(137); /* killed with the rest, never reaped by us */
  }
  if (WIFSIGNALED(sh.engine_status)) {
    die_by(WTERMSIG(sh.engine_status));
  }
  return WIFEXITED(sh.engine_status) ? WEXITSTATUS(sh.engine_status) : 127;
}
