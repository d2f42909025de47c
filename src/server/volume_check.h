/* volume_check.h: the validation of an upload's file on libuv's worker
 * pool, in steps: the first reads the MRC2014 header and checks it against
 * the file's size, then each step hashes the next SRV_CHECK_STEP_BYTES into
 * the whole file's sha256, the digest context carried from step to step
 * (the one step in flight owns it; the loop touches it only between steps).
 * Each step opens and closes the file, so the loop may stop a check between
 * steps (termination, shutdown) without file work of its own. What the
 * outcome becomes (a volume, dedup, 422): volumes.c. */
#ifndef SRV_VOLUME_CHECK_H
#define SRV_VOLUME_CHECK_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/mrc.h"

/* Bytes hashed per step: at 0.5-2 GB/s about 15-60 ms, so a termination
 * or a shutdown waits at most that long for a check of any size. */
#define SRV_CHECK_STEP_BYTES (32u << 20)

/* Test only: a directory; step k (0, 1, ...) of a check, with the file
 * open, reads one byte from the named pipe "<dir>/<k>" when there is one,
 * so a test knows a step is in flight and decides when it goes on (see
 * tests/integration/test_uploads.py). Read once per check, at its start. */
#define SRV_CHECK_TEST_FIFOS_ENV "CRYOMAMBA_TEST_CHECK_FIFOS"

typedef struct srv_volume_check_s srv_volume_check_t;

/* A step's outcome, on the loop thread: c->status is 0, -EINVAL (not a
 * valid MRC2014 file: c->why says why) or another negative errno;
 * c->is_done once the sha256 is complete (c->sha256, c->h, c->origin). */
typedef void (*srv_volume_check_cb)(srv_volume_check_t* c);

struct srv_volume_check_s {
  uv_work_t req;
  char path[1200];
  char test_fifos[256]; /* SRV_CHECK_TEST_FIFOS_ENV, or "" */
  unsigned steps;       /* steps run so far */
  EVP_MD_CTX* md;       /* owned; the step in flight uses it */
  bool is_started;      /* the header is checked, the size known */
  bool is_done;
  bool is_busy; /* a step is in flight */
  uint64_t size;
  uint64_t off; /* bytes hashed so far */
  int status;
  char why[256];
  char sha256[65]; /* lowercase hex, once done */
  core_mrc_header_t h;
  double origin[3]; /* Z, Y, X, from the header's origin field */
  srv_volume_check_cb cb;
  void* data; /* the caller's */
};

/* A check of the file at `path`, or NULL on ENOMEM. */
srv_volume_check_t* srv_volume_check_new(const char* path, void* data);

/* Runs the next step on the pool; cb runs on the loop. Returns 0 or a
 * libuv error (cb then does not run). */
int srv_volume_check_step(uv_loop_t* loop,
                          srv_volume_check_t* c,
                          srv_volume_check_cb cb);

/* Frees `c` (NULL-safe); never while a step is in flight. */
void srv_volume_check_free(srv_volume_check_t* c);

#endif
