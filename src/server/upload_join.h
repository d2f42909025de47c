/* upload_join.h: the join of a final upload (tus concatenation) on libuv's
 * worker pool: its parts' files copied one after the other into the
 * final's file (copy_file_range, else read/write), then fdatasync. The work
 * goes in steps of at most SRV_JOIN_STEP_BYTES, each opening and closing
 * what it touches, so the loop may stop a join between steps (termination,
 * shutdown) without any file work of its own. A join always starts from an
 * empty file: redone after a crash, it gives the same bytes. Which parts,
 * and what follows the join: upload_complete.c. */
#ifndef SRV_UPLOAD_JOIN_H
#define SRV_UPLOAD_JOIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SRV_JOIN_STEP_BYTES (256u << 20)

typedef struct srv_upload_join_s srv_upload_join_t;

/* A step's outcome, on the loop thread: j->status is 0 or -errno (then
 * j->why says what failed); j->is_done once the file is complete and
 * durable. */
typedef void (*srv_upload_join_cb)(srv_upload_join_t* j);

typedef struct {
  char path[1200];
  uint64_t len; /* the part's Upload-Length: the bytes taken from it */
} srv_join_part_t;

struct srv_upload_join_s {
  uv_work_t req;
  char dst[1200]; /* the final's file */
  unsigned count;
  unsigned index;   /* the part being copied */
  uint64_t in_off;  /* within that part */
  uint64_t out_off; /* within dst */
  bool is_started;  /* dst was created (truncated) by a step */
  bool is_done;
  bool is_busy; /* a step is in flight */
  int status;
  char why[160];
  srv_upload_join_cb cb;
  void* data;              /* the caller's */
  srv_join_part_t parts[]; /* count of them */
};

/* A join into `dst` of `count` parts (to be filled in by the caller), or
 * NULL on ENOMEM. Freed with free() when no step is in flight. */
srv_upload_join_t* srv_upload_join_new(const char* dst,
                                       unsigned count,
                                       void* data);

/* Runs the next step on the pool; cb runs on the loop. Returns 0 or a
 * libuv error (cb then does not run). */
int srv_upload_join_step(uv_loop_t* loop,
                         srv_upload_join_t* j,
                         srv_upload_join_cb cb);

#endif
