/* log_child.c: a process that logs through src/server/log.c as cryomambad
 * does, for test_log.c (which runs it with stderr on a small pipe and reads
 * its lines). `log_child MODE COUNT` logs COUNT "test.line" lines (fields
 * seq and thread; from 4 threads at once in mode "threads"), prints "done"
 * on stdout once every srv_log() call has returned, waits for a byte on
 * stdin (the reader starts then, so the lines are still queued), and ends
 * by MODE:
 *   stall:   waits for the ring to drain, logs "test.end", returns;
 *   exit:    calls exit(3), as a fatal configuration error would;
 *   abort:   calls abort(), as a failed assert() would;
 *   threads: returns from main. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/log.h"

#define THREADS 4

static const srv_logger_t logger = {.min_level = SRV_LOG_DEBUG};
static int line_count;


static void* log_lines(void* arg) {
  int64_t thread = (int64_t) (intptr_t) arg;
  /* About 170 bytes a line. */
  static const char pad[] =
      "................................................................";
  for (int i = 0; i < line_count; i++) {
    srv_log(&logger, SRV_LOG_INFO, "test.line", "i:seq", (int64_t) i,
            "i:thread", thread, "s:pad", pad, NULL);
  }
  return NULL;
}


static void die_of_config(void) {
  exit(3);
}


int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: log_child stall|exit|abort|threads COUNT\n");
    return 64;
  }
  const char* mode = argv[1];
  line_count = atoi(argv[2]);
  int thread_count = strcmp(mode, "threads") == 0 ? THREADS : 1;
  pthread_t threads[THREADS];
  for (int t = 0; t < thread_count; t++) {
    if (pthread_create(&threads[t], NULL, log_lines, (void*) (intptr_t) t) !=
        0) {
      return 1;
    }
  }
  for (int t = 0; t < thread_count; t++) {
    pthread_join(threads[t], NULL);
  }
  printf("done\n");
  fflush(stdout);
  char go;
  if (read(STDIN_FILENO, &go, 1) != 1) {
    return 1;
  }
  if (strcmp(mode, "exit") == 0) {
    die_of_config();
  }
  if (strcmp(mode, "abort") == 0) {
    abort();
  }
  if (strcmp(mode, "stall") == 0) {
    srv_log_flush(); /* the reader is draining the ring now */
    srv_log(&logger, SRV_LOG_INFO, "test.end", NULL);
  }
  return 0;
}
