/* volume.h: server-side volumes named by jobs (volume_path), probed off the
 * loop thread: opened beneath the data root's directory descriptor
 * (openat2 RESOLVE_BENEATH: no "..", absolute path or symlink leads out),
 * with O_NONBLOCK so a FIFO or a device never blocks, fstat()ed to be a
 * regular file, and only its 1 KiB MRC header read. */
#ifndef SRV_VOLUME_H
#define SRV_VOLUME_H

#include <stddef.h>
#include <uv.h>

#include "core/job_request.h"
#include "core/shape.h"

typedef struct srv_volume_probe_s srv_volume_probe_t;

/* The probe's outcome, on the loop thread: rc 0 with the shape and voxel
 * size filled, or -1 with a sentence in `why`. The probe is freed after. */
typedef void (*srv_volume_cb)(srv_volume_probe_t* probe,
                              int rc,
                              const core_shape_t* shape,
                              const double voxel_size[3],
                              const char* why);

struct srv_volume_probe_s {
  uv_work_t req;
  int root_fd; /* borrowed: the data root, O_PATH | O_DIRECTORY */
  char rel[CORE_VOLUME_PATH_MAX];
  srv_volume_cb cb;
  void* data; /* the caller's */
  int rc;
  core_shape_t shape;
  double voxel_size[3];
  char why[CORE_VOLUME_PATH_MAX + 320];
};

/* Probes `rel` beneath `root_fd` (-1: the server has no data root) on the
 * worker pool; cb runs on the loop thread. Returns 0 or a libuv error (cb
 * then does not run). */
int srv_volume_probe(uv_loop_t* loop,
                     int root_fd,
                     const char* rel,
                     srv_volume_cb cb,
                     void* data);

/* Worker: opens `rel` read-only beneath `root_fd`, never leaving it (-EXDEV
 * when it would), never blocking on the open (O_NONBLOCK). Returns the fd
 * or -errno. */
int srv_volume_open_beneath(int root_fd, const char* rel);

/* Opens the data root for probes (O_PATH | O_DIRECTORY). Returns the fd or
 * -errno. */
int srv_volume_open_root(const char* path);

#endif
