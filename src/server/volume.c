/* volume.c: volume_path probes. See volume.h. The work runs on libuv's
 * worker pool and touches only its srv_volume_probe_t. */
#include "server/volume.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/mrc.h"


int srv_volume_open_root(const char* path) {
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}


int srv_volume_open_beneath(int root_fd, const char* rel) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = syscall(SYS_openat2, root_fd, rel, &how, sizeof(how));
  if (fd < 0) {
    return -errno;
  }
#if defined(__SANITIZE_THREAD__)
  /* TSan sees neither this raw openat2 nor libuv's raw close(2) on Linux, so
   * it would pair our fstat with the accept4 that last used this number on
   * the loop thread and report a race. Re-opening the same file through an
   * intercepted open() gives TSan a fresh descriptor record; the raw fd is
   * closed unseen, as it was opened. TSan builds only. */
  char self[64];
  snprintf(self, sizeof(self), "/proc/self/fd/%ld", fd);
  int seen = open(self, (int) how.flags);
  int err = errno;
  syscall(SYS_close, fd);
  return seen >= 0 ? seen : -err;
#else
  return (int) fd;
#endif
}


static void probe_work(uv_work_t* req) {
  srv_volume_probe_t* p = req->data;
  const char* rel = p->rel;
  if (p->root_fd < 0) {
    return; /* no data root: why is set */
  }
  p->rc = -1;
  int fd = srv_volume_open_beneath(p->root_fd, rel);
  if (fd == -EXDEV) {
    snprintf(p->why, sizeof(p->why),
             "volume_path '%s' leads outside the data root", rel);
    return;
  }
  if (fd < 0) {
    snprintf(p->why, sizeof(p->why),
             "volume_path '%s' does not exist under the data root (%s)", rel,
             strerror(-fd));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(p->why, sizeof(p->why), "volume_path '%s' is not a regular file",
             rel);
    return;
  }
  uint8_t header[CORE_MRC_HEADER_LEN];
  ssize_t n = pread(fd, header, sizeof(header), 0);
  close(fd);
  if (n != (ssize_t) sizeof(header)) {
    snprintf(p->why, sizeof(p->why),
             "volume_path '%s' is not an MRC file: shorter than a header", rel);
    return;
  }
  core_mrc_header_t h;
  char err[200];
  if (core_mrc_header_parse(header, sizeof(header), (uint64_t) st.st_size, &h,
                            err, sizeof(err)) != 0) {
    snprintf(p->why, sizeof(p->why),
             "volume_path '%s' is not a valid MRC file: %s", rel, err);
    return;
  }
  p->shape = h.shape;
  memcpy(p->voxel_size, h.voxel_size, sizeof(p->voxel_size));
  p->rc = 0;
}


static void probe_done(uv_work_t* req, int status) {
  srv_volume_probe_t* p = req->data;
  if (status != 0) {
    p->rc = -1;
    snprintf(p->why, sizeof(p->why), "the volume probe was cancelled");
  }
  p->cb(p, p->rc, &p->shape, p->voxel_size, p->why);
  free(p);
}


int srv_volume_probe(uv_loop_t* loop,
                     int root_fd,
                     const char* rel,
                     srv_volume_cb cb,
                     void* data) {
  srv_volume_probe_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return UV_ENOMEM;
  }
  p->root_fd = root_fd;
  snprintf(p->rel, sizeof(p->rel), "%s", rel);
  p->cb = cb;
  p->data = data;
  p->req.data = p;
  if (root_fd < 0) {
    p->rc = -1;
    snprintf(p->why, sizeof(p->why),
             "this server has no data root; start it with --data-root to use "
             "volume_path");
  }
  int err = uv_queue_work(loop, &p->req, probe_work, probe_done);
  if (err != 0) {
    free(p);
  }
  return err;
}
