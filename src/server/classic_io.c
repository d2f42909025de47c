/* classic_io.c: a classic run's files, on the worker pool. See
 * classic_io.h. Touches only its srv_classic_io_t. */
#include "server/classic_io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mrc.h"
#include "server/file_io.h"
#include "server/volume.h"


void srv_classic_io_init(srv_classic_io_t* io) {
  io->vol_fd = -1;
  io->mask_fd = -1;
  io->mask = NULL;
  io->mask_len = 0;
}


bool srv_classic_io_is_open(const srv_classic_io_t* io) {
  return io->vol_fd >= 0 || io->mask_fd >= 0 || io->mask != NULL;
}


/* len bytes at `off` of fd into buf: 0, SRV_CLASSIC_ESHORT when the file
 * ends first, or -errno. */
static int pread_full(int fd, uint8_t* buf, size_t len, uint64_t off) {
  int rc = srv_pread_full(fd, buf, len, off, NULL);
  return rc == SRV_PREAD_SHORT ? SRV_CLASSIC_ESHORT : rc;
}


static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static int fail(srv_classic_io_t* io, int err, const char* what) {
  snprintf(io->why, sizeof(io->why), "%s", what);
  return err;
}


/* core_seg_read_cb over the volume's descriptor: the box [lo, lo + n), a
 * pread per row, or per plane when the rows are whole. On the pool, from
 * several windows at once (pread shares no file offset; io is read only). */
static int read_volume(void* user,
                       const uint32_t lo[3],
                       const uint32_t n[3],
                       void* out) {
  const srv_classic_io_t* io = user;
  const core_shape_t* s = &io->shape;
  uint8_t* dst = out;
  uint32_t rows = n[2] == s->d[2] ? n[1] : 1; /* per pread */
  size_t len = (size_t) rows * n[2] * io->itemsize;
  for (uint32_t z = 0; z < n[0]; z++) {
    for (uint32_t y = 0; y < n[1]; y += rows) {
      uint64_t voxel =
          ((uint64_t) (lo[0] + z) * s->d[1] + lo[1] + y) * s->d[2] + lo[2];
      int err = pread_full(io->vol_fd, dst, len,
                           io->data_offset + voxel * io->itemsize);
      if (err != 0) {
        return err;
      }
      dst += len;
    }
  }
  return 0;
}


static srv_classic_stamp_t stamp_of(const struct stat* st) {
  return (srv_classic_stamp_t){(int64_t) st->st_size, st->st_mtim};
}


int srv_classic_io_check_unchanged(const srv_classic_io_t* io) {
  struct stat st;
  if (fstat(io->vol_fd, &st) != 0) {
    return -errno;
  }
  srv_classic_stamp_t now = stamp_of(&st);
  const srv_classic_stamp_t* was = &io->stamp;
  bool same = now.size == was->size && now.mtime.tv_sec == was->mtime.tv_sec &&
              now.mtime.tv_nsec == was->mtime.tv_nsec;
  return same ? 0 : SRV_CLASSIC_ECHANGED;
}


srv_classic_failure_t srv_classic_io_failure(int err) {
  switch (err) {
  case SRV_CLASSIC_ESHORT:
  case SRV_CLASSIC_ECHANGED:
    return (srv_classic_failure_t){
        "volume_changed", false,
        "the file was changed while the job read it; submit the job again "
        "once it is complete"};
  case -ENOMEM:
    return (srv_classic_failure_t){"insufficient_memory", true, "retry later"};
  case -ENOSPC:
  case -EDQUOT:
    return (srv_classic_failure_t){
        "insufficient_storage", false,
        "the server's disk is full: delete volumes or jobs, then submit the "
        "job again"};
  case -EINVAL:
    return (srv_classic_failure_t){"internal", false, "see the server log"};
  default:
    return (srv_classic_failure_t){"engine_failed", false,
                                   "check the volume; submit the job again"};
  }
}


void srv_classic_io_describe(const srv_classic_io_t* io,
                             int err,
                             char* msg,
                             size_t msg_len) {
  if (err == SRV_CLASSIC_ESHORT) {
    snprintf(msg, msg_len,
             "%.300s changed while the job read it: it is shorter than its "
             "header says (truncated?)",
             io->name);
  } else if (err == SRV_CLASSIC_ECHANGED) {
    snprintf(msg, msg_len,
             "%.300s changed while the job read it: its size or modification "
             "time is not what it was when the job started",
             io->name);
  } else if (err == -ENOMEM) {
    snprintf(msg, msg_len, "out of memory in the classic segmenter");
  } else if (err == -EINVAL) {
    snprintf(msg, msg_len, "the segmenter refused its input (a bug)");
  } else {
    snprintf(msg, msg_len, "cannot read %.300s: %s", io->name, strerror(-err));
  }
}


/* The volume: opened, its header checked against the job, its stat kept. */
static int open_volume(srv_classic_io_t* io) {
  char what[sizeof(io->why)];
  int fd = io->is_beneath ? srv_volume_open_beneath(io->root_fd, io->path)
                          : open(io->path, O_RDONLY | O_CLOEXEC);
  if (fd == -1 && !io->is_beneath) {
    fd = -errno;
  }
  io->vol_fd = fd;
  if (io->vol_fd < 0) {
    int err = io->vol_fd;
    io->vol_fd = -1;
    snprintf(what, sizeof(what), "cannot open %.300s: %s%s", io->name,
             strerror(-err),
             err == -ENOENT && !io->is_beneath ? " (was it deleted?)" : "");
    return fail(io, err, what);
  }
  struct stat st;
  if (fstat(io->vol_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(what, sizeof(what), "%.300s is not a regular file any more",
             io->name);
    return fail(io, SRV_CLASSIC_ECHANGED, what);
  }
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_t h;
  char err[200];
  int rc = pread_full(io->vol_fd, header, sizeof(header), 0);
  if (rc != 0) {
    snprintf(what, sizeof(what), "cannot read the header of %.300s: %s",
             io->name,
             rc == SRV_CLASSIC_ESHORT ? "it is shorter than an MRC header"
                                      : strerror(-rc));
    return fail(io, rc == SRV_CLASSIC_ESHORT ? SRV_CLASSIC_ECHANGED : rc, what);
  }
  if (core_mrc_header_parse(header, sizeof(header), (uint64_t) st.st_size, &h,
                            err, sizeof(err)) != 0) {
    snprintf(what, sizeof(what),
             "%.200s is not a valid MRC file any more: %.150s", io->name, err);
    return fail(io, SRV_CLASSIC_ECHANGED, what);
  }
  if (h.shape.d[0] != io->shape.d[0] || h.shape.d[1] != io->shape.d[1] ||
      h.shape.d[2] != io->shape.d[2]) {
    snprintf(what, sizeof(what),
             "the shape of %.300s is not the job's any more (the file "
             "changed since the job was created)",
             io->name);
    return fail(io, SRV_CLASSIC_ECHANGED, what);
  }
  io->stamp = stamp_of(&st);
  io->data_offset = core_mrc_data_offset(&h);
  io->itemsize = core_mrc_mode_itemsize(h.mode);
  assert(io->itemsize > 0); /* the header parser takes supported modes only */
  io->in = (core_seg_input_t){
      .mode = h.mode, .shape = h.shape, .read = read_volume, .user = io};
  return 0;
}


/* The mask file mask_run.c made: exactly z*y*x bytes, mapped shared. */
static int open_mask(srv_classic_io_t* io) {
  char what[sizeof(io->why)];
  io->mask_fd = open(io->mask_path, O_RDWR | O_CLOEXEC);
  if (io->mask_fd < 0) {
    int e = -errno;
    io->mask_fd = -1;
    snprintf(what, sizeof(what), "cannot open the mask file: %s", strerror(-e));
    return fail(io, e, what);
  }
  struct stat st;
  uint64_t voxels = core_shape_voxels(&io->shape);
  if (fstat(io->mask_fd, &st) != 0 || (uint64_t) st.st_size != voxels) {
    return fail(io, -EIO, "the mask file is not the volume's size");
  }
  io->mask_len = (size_t) voxels;
  /* Blocks for every page first: a write into a hole of a full disk would
   * SIGBUS through the mapping (glibc emulates this where the filesystem
   * cannot, writing only where the file is zero, as it all is). */
  int rc = posix_fallocate(io->mask_fd, 0, (off_t) io->mask_len);
  if (rc != 0) {
    snprintf(what, sizeof(what),
             "cannot allocate the mask file (%zu bytes): %s", io->mask_len,
             strerror(rc));
    return fail(io, -rc, what);
  }
  void* map = mmap(NULL, io->mask_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   io->mask_fd, 0);
  if (map == MAP_FAILED) {
    int e = -errno;
    snprintf(what, sizeof(what), "cannot map the mask file: %s", strerror(-e));
    return fail(io, e, what);
  }
  io->mask = map;
  return 0;
}


int srv_classic_io_open(srv_classic_io_t* io) {
  double t0 = now_s();
  int err = open_volume(io);
  if (err == 0) {
    err = open_mask(io);
  }
  if (err != 0) {
    return err;
  }
  err = core_seg_plan_init(&io->plan, &io->shape, &io->params);
  if (err == 0) {
    err = core_seg_stats(&io->in, &io->params, &io->stats);
  }
  if (err == -ENOMEM || err == -EINVAL) {
    return fail(io, err,
                err == -ENOMEM ? "out of memory computing the volume's "
                                 "statistics"
                               : "the segmenter refused the volume or its "
                                 "parameters");
  }
  if (err != 0) {
    srv_classic_io_describe(io, err, io->why, sizeof(io->why));
    return err;
  }
  io->scratch_bytes = core_seg_scratch_bytes(&io->plan);
  io->open_s = now_s() - t0;
  return 0;
}


void srv_classic_io_close(srv_classic_io_t* io) {
  if (io->mask != NULL) {
    munmap(io->mask, io->mask_len);
    io->mask = NULL;
  }
  if (io->mask_fd >= 0) {
    close(io->mask_fd);
    io->mask_fd = -1;
  }
  if (io->vol_fd >= 0) {
    close(io->vol_fd);
    io->vol_fd = -1;
  }
}
