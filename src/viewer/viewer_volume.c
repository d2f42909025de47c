/* viewer_volume.c: MRC tomograms mapped read-only (mmap), voxel conversion
 * from every supported mode, statistics and samples. The file is never read
 * whole: slices touch only the pages they need, so a volume of several GB
 * opens at once. See viewer_volume.h. Any thread. */
#include "viewer/viewer_volume.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


const char* viewer_mode_name(int32_t mode) {
  switch (mode) {
  case CORE_MRC_MODE_INT8:
    return "int8";
  case CORE_MRC_MODE_INT16:
    return "int16";
  case CORE_MRC_MODE_FLOAT32:
    return "float32";
  case CORE_MRC_MODE_UINT16:
    return "uint16";
  case CORE_MRC_MODE_FLOAT16:
    return "float16";
  default:
    return "unknown";
  }
}


int viewer_volume_open(const char* path,
                       viewer_volume_t* out,
                       char* err,
                       size_t err_len) {
  memset(out, 0, sizeof(*out));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, err_len, "cannot open %s: %s", path, strerror(e));
    return -e;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    snprintf(err, err_len, "cannot stat %s: %s", path, strerror(e));
    close(fd);
    return -e;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, err_len, "%s is not a regular file", path);
    close(fd);
    return -EINVAL;
  }
  uint8_t head[CORE_MRC_HEADER_LEN];
  ssize_t n = pread(fd, head, sizeof(head), 0);
  if (n < (ssize_t) sizeof(head)) {
    snprintf(err, err_len,
             "%s is not an MRC file: %lld bytes, shorter than the 1024-byte "
             "header",
             path, (long long) st.st_size);
    close(fd);
    return -EINVAL;
  }
  char why[256];
  if (core_mrc_header_parse(head, sizeof(head), (uint64_t) st.st_size,
                            &out->header, why, sizeof(why)) != 0) {
    snprintf(err, err_len, "%s: %s", path, why);
    close(fd);
    return -EINVAL;
  }
  void* map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd); /* the mapping keeps the file */
  if (map == MAP_FAILED) {
    snprintf(err, err_len, "cannot map %s: %s", path, strerror(e));
    memset(out, 0, sizeof(*out));
    return -e;
  }
  /* Slices along Y and X jump through the file; read-ahead would fetch
   * pages nobody looks at. */
  madvise(map, (size_t) st.st_size, MADV_RANDOM);
  out->map = map;
  out->map_len = (size_t) st.st_size;
  out->file_len = (uint64_t) st.st_size;
  out->shape = out->header.shape;
  out->mode = out->header.mode;
  out->itemsize = core_mrc_mode_itemsize(out->mode);
  out->data = out->map + core_mrc_data_offset(&out->header);
  return 0;
}


void viewer_volume_close(viewer_volume_t* vol) {
  if (vol->map != NULL) {
    munmap((void*) vol->map, vol->map_len);
  }
  memset(vol, 0, sizeof(*vol));
}


float viewer_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t) (h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      /* Subnormal: mant * 2^-24. */
      float f = (float) mant * 5.9604644775390625e-8f;
      return sign != 0 ? -f : f;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}


void viewer_convert_to_float(const uint8_t* src,
                             int32_t mode,
                             size_t count,
                             float* out) {
  switch (mode) {
  case CORE_MRC_MODE_INT8:
    for (size_t i = 0; i < count; i++) {
      out[i] = (float) (int8_t) src[i];
    }
    break;
  case CORE_MRC_MODE_INT16:
    for (size_t i = 0; i < count; i++) {
      int16_t v;
      memcpy(&v, src + 2 * i, 2);
      out[i] = (float) v;
    }
    break;
  case CORE_MRC_MODE_UINT16:
    for (size_t i = 0; i < count; i++) {
      uint16_t v;
      memcpy(&v, src + 2 * i, 2);
      out[i] = (float) v;
    }
    break;
  case CORE_MRC_MODE_FLOAT16:
    for (size_t i = 0; i < count; i++) {
      uint16_t v;
      memcpy(&v, src + 2 * i, 2);
      out[i] = viewer_half_to_float(v);
    }
    break;
  case CORE_MRC_MODE_FLOAT32:
    memcpy(out, src, count * sizeof(float));
    break;
  default:
    assert(false && "unsupported mode");
  }
}


double viewer_volume_value(const viewer_volume_t* vol,
                           uint32_t z,
                           uint32_t y,
                           uint32_t x) {
  assert(z < vol->shape.d[0] && y < vol->shape.d[1] && x < vol->shape.d[2]);
  size_t i = ((size_t) z * vol->shape.d[1] + y) * vol->shape.d[2] + x;
  float f;
  viewer_convert_to_float(vol->data + i * vol->itemsize, vol->mode, 1, &f);
  return f;
}


int viewer_volume_stats(const viewer_volume_t* vol,
                        const atomic_bool* cancel,
                        void (*progress)(double fraction, void* user),
                        void* user,
                        viewer_stats_t* out) {
  memset(out, 0, sizeof(*out));
  size_t plane = (size_t) vol->shape.d[1] * vol->shape.d[2];
  enum {
    CHUNK = 65536
  };
  float buf[CHUNK];
  double lo = INFINITY, hi = -INFINITY, sum = 0, sum2 = 0;
  uint64_t count = 0;
  for (uint32_t z = 0; z < vol->shape.d[0]; z++) {
    if (cancel != NULL && atomic_load(cancel)) {
      return -ECANCELED;
    }
    const uint8_t* p = vol->data + (size_t) z * plane * vol->itemsize;
    /* Per-slice partial sums keep the double accumulation accurate. */
    double s = 0, s2 = 0;
    for (size_t off = 0; off < plane; off += CHUNK) {
      size_t n = plane - off < CHUNK ? plane - off : CHUNK;
      viewer_convert_to_float(p + off * vol->itemsize, vol->mode, n, buf);
      for (size_t i = 0; i < n; i++) {
        float v = buf[i];
        if (!isfinite(v)) {
          continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        s += v;
        s2 += (double) v * v;
        count++;
      }
    }
    sum += s;
    sum2 += s2;
    if (progress != NULL) {
      progress((double) (z + 1) / vol->shape.d[0], user);
    }
  }
  out->count = count;
  if (count > 0) {
    out->min = lo;
    out->max = hi;
    out->mean = sum / (double) count;
    double var = sum2 / (double) count - out->mean * out->mean;
    out->stddev = var > 0 ? sqrt(var) : 0;
  }
  return 0;
}


size_t viewer_volume_sample(const viewer_volume_t* vol,
                            size_t max_count,
                            float* out) {
  uint64_t total = core_shape_voxels(&vol->shape);
  if (max_count == 0 || total == 0) {
    return 0;
  }
  /* An odd stride avoids sampling the same column of every row. */
  uint64_t stride = total / max_count;
  if (stride < 1) {
    stride = 1;
  } else if (stride % 2 == 0 && stride > 1) {
    stride++;
  }
  size_t n = 0;
  for (uint64_t i = 0; i < total && n < max_count; i += stride) {
    float v;
    viewer_convert_to_float(vol->data + i * vol->itemsize, vol->mode, 1, &v);
    if (isfinite(v)) {
      out[n++] = v;
    }
  }
  return n;
}


/* Hoare-style quickselect: afterwards vals[k] is the k-th smallest. */
static void select_kth(float* vals, size_t count, size_t k) {
  size_t left = 0, right = count - 1;
  while (left < right) {
    float pivot = vals[left + (right - left) / 2];
    size_t i = left, j = right;
    while (i <= j) {
      while (vals[i] < pivot) {
        i++;
      }
      while (vals[j] > pivot) {
        j--;
      }
      if (i <= j) {
        float t = vals[i];
        vals[i] = vals[j];
        vals[j] = t;
        i++;
        if (j == 0) {
          break;
        }
        j--;
      }
    }
    if (k <= j) {
      right = j;
    } else if (k >= i) {
      left = i;
    } else {
      return;
    }
  }
}


static size_t rank_of(double p, size_t count) {
  if (p <= 0) {
    return 0;
  }
  if (p >= 100) {
    return count - 1;
  }
  double r = p / 100.0 * (double) (count - 1);
  return (size_t) (r + 0.5);
}


int viewer_percentiles(float* vals,
                       size_t count,
                       double p_lo,
                       double p_hi,
                       double* lo,
                       double* hi) {
  if (count == 0) {
    return -EINVAL;
  }
  size_t klo = rank_of(p_lo, count), khi = rank_of(p_hi, count);
  select_kth(vals, count, klo);
  *lo = vals[klo];
  /* Everything above klo is >= vals[klo]: select in that part only. */
  if (khi > klo) {
    select_kth(vals + klo + 1, count - klo - 1, khi - klo - 1);
  }
  *hi = vals[khi];
  return 0;
}
