/* classic_io.c: a classic run's files, on the worker pool. See
 * classic_io.h. Touches only its srv_classic_io_t. */
#include "server/classic_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mrc.h"
#include "server/volume.h"


void srv_classic_io_init(srv_classic_io_t* io) {
  io->vol_fd = -1;
  io->mask_fd = -1;
  io->vol_map = NULL;
  io->mask = NULL;
  io->vol_len = 0;
  io->mask_len = 0;
}


bool srv_classic_io_is_open(const srv_classic_io_t* io) {
  return io->vol_fd >= 0 || io->mask_fd >= 0 || io->vol_map != NULL ||
         io->mask != NULL;
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


/* The volume: opened, its header checked against the job, mapped. */
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
    return fail(io, -EINVAL, "the volume is not a regular file");
  }
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_t h;
  char err[200];
  if (pread(io->vol_fd, header, sizeof(header), 0) !=
      (ssize_t) sizeof(header)) {
    return fail(io, -EINVAL, "the volume is shorter than an MRC header");
  }
  if (core_mrc_header_parse(header, sizeof(header), (uint64_t) st.st_size, &h,
                            err, sizeof(err)) != 0) {
    snprintf(what, sizeof(what), "the volume is not a valid MRC file: %s", err);
    return fail(io, -EINVAL, what);
  }
  if (h.shape.d[0] != io->shape.d[0] || h.shape.d[1] != io->shape.d[1] ||
      h.shape.d[2] != io->shape.d[2]) {
    return fail(io, -EINVAL,
                "the volume's shape is not the job's any more (the file "
                "changed since the job was created)");
  }
  io->vol_len = (size_t) st.st_size;
  void* map = mmap(NULL, io->vol_len, PROT_READ, MAP_PRIVATE, io->vol_fd, 0);
  if (map == MAP_FAILED) {
    int e = -errno;
    snprintf(what, sizeof(what), "cannot map the volume (%zu bytes): %s",
             io->vol_len, strerror(errno));
    return fail(io, e, what);
  }
  io->vol_map = map;
  io->in.data = (const uint8_t*) map + core_mrc_data_offset(&h);
  io->in.mode = h.mode;
  io->in.shape = h.shape;
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
  if (err != 0) {
    return fail(io, err,
                err == -ENOMEM ? "out of memory computing the volume's "
                                 "statistics"
                               : "the segmenter refused the volume or its "
                                 "parameters");
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
  if (io->vol_map != NULL) {
    munmap(io->vol_map, io->vol_len);
    io->vol_map = NULL;
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
