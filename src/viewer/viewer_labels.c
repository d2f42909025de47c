/* viewer_labels.c: label volumes for the overlay (viewer_labels.h):
 * upsampling of previews, reading the final mask artifact, exporting. */
#include "viewer/viewer_labels.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mrc.h"


int viewer_labels_upsample(const uint8_t* preview,
                           const uint32_t pshape[3],
                           const uint32_t scale[3],
                           const core_shape_t* shape,
                           uint8_t* out) {
  for (int a = 0; a < 3; a++) {
    if (scale[a] == 0 || pshape[a] != (shape->d[a] + scale[a] - 1) / scale[a]) {
      return -EINVAL;
    }
  }
  if (scale[0] == scale[1] && scale[1] == scale[2]) {
    core_shape_upsample_u8(preview, shape, scale[0], out);
    return 0;
  }
  /* Anisotropic factors (not sent by today's servers): the same nearest-
   * origin rule, axis by axis. */
  const size_t nz = shape->d[0], ny = shape->d[1], nx = shape->d[2];
  for (size_t z = 0; z < nz; z++) {
    const uint8_t* pplane = preview + (z / scale[0]) * pshape[1] * pshape[2];
    for (size_t y = 0; y < ny; y++) {
      const uint8_t* prow = pplane + (y / scale[1]) * pshape[2];
      uint8_t* row = out + (z * ny + y) * nx;
      for (size_t x = 0; x < nx; x++) {
        row[x] = prow[x / scale[2]];
      }
    }
  }
  return 0;
}


static int read_all(int fd, uint8_t* buf, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = pread(fd, buf, len, off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    if (n == 0) {
      return -EIO;
    }
    buf += n;
    len -= (size_t) n;
    off += n;
  }
  return 0;
}


int viewer_labels_read_mrc(const char* path,
                           const core_shape_t* shape,
                           uint8_t* out,
                           char* err,
                           size_t err_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, err_len, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  uint8_t head[CORE_MRC_HEADER_LEN];
  core_mrc_header_t h;
  char why[256];
  int rc = fstat(fd, &st) != 0 ? -errno : 0;
  if (rc == 0) {
    rc = read_all(fd, head, sizeof(head), 0);
  }
  if (rc != 0) {
    snprintf(err, err_len, "cannot read %s: %s", path, strerror(-rc));
  } else if (core_mrc_header_parse(head, sizeof(head), (uint64_t) st.st_size,
                                   &h, why, sizeof(why)) != 0) {
    snprintf(err, err_len, "%s: %s", path, why);
    rc = -EINVAL;
  } else if (h.mode != CORE_MRC_MODE_INT8) {
    snprintf(err, err_len, "%s: a mask must be mode 0 (uint8 labels), not %d",
             path, h.mode);
    rc = -EINVAL;
  } else if (memcmp(h.shape.d, shape->d, sizeof(shape->d)) != 0) {
    snprintf(err, err_len,
             "%s: mask shape %ux%ux%u differs from the volume's %ux%ux%u", path,
             h.shape.d[0], h.shape.d[1], h.shape.d[2], shape->d[0], shape->d[1],
             shape->d[2]);
    rc = -EINVAL;
  } else {
    rc = read_all(fd, out, (size_t) core_shape_voxels(shape),
                  (off_t) core_mrc_data_offset(&h));
    if (rc != 0) {
      snprintf(err, err_len, "cannot read %s: %s", path, strerror(-rc));
    }
  }
  close(fd);
  return rc;
}


static int write_all(int fd, const uint8_t* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    buf += n;
    len -= (size_t) n;
  }
  return 0;
}


void viewer_labels_histogram(const uint8_t* labels,
                             size_t count,
                             uint64_t counts[256]) {
  memset(counts, 0, 256 * sizeof(counts[0]));
  for (size_t i = 0; i < count; i++) {
    counts[labels[i]]++;
  }
}


int viewer_labels_write_mrc(const char* path,
                            const uint8_t* labels,
                            const core_shape_t* shape,
                            const double voxel_size[3]) {
  size_t n = (size_t) core_shape_voxels(shape);
  uint64_t counts[256];
  viewer_labels_histogram(labels, n, counts);
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = *shape;
  h.mode = CORE_MRC_MODE_INT8;
  for (int i = 0; i < 3; i++) {
    h.voxel_size[i] = voxel_size[i] > 0 ? voxel_size[i] : 1.0;
  }
  double sum = 0;
  int lo = -1, hi = 0;
  for (int l = 0; l < 256; l++) {
    if (counts[l] > 0) {
      lo = lo < 0 ? l : lo;
      hi = l;
      sum += (double) l * (double) counts[l];
    }
  }
  h.dmin = (float) (lo < 0 ? 0 : lo);
  h.dmax = (float) hi;
  h.dmean = n > 0 ? (float) (sum / (double) n) : 0;
  h.rms = -1; /* not computed, as MRC2014 allows */
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, header);

  char tmp[4200];
  if ((size_t) snprintf(tmp, sizeof(tmp), "%s.part", path) >= sizeof(tmp)) {
    return -ENAMETOOLONG;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return -errno;
  }
  int err = write_all(fd, header, sizeof(header));
  if (err == 0) {
    err = write_all(fd, labels, n);
  }
  if (close(fd) != 0 && err == 0) {
    err = -errno;
  }
  if (err == 0 && rename(tmp, path) != 0) {
    err = -errno;
  }
  if (err != 0) {
    unlink(tmp);
  }
  return err;
}
