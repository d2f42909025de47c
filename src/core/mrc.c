/* mrc.c: MRC2014 header parsing and writing (little-endian files only; the
 * format is described at https://www.ccpem.ac.uk/mrc_format/mrc2014.php).
 * Bytes are read and written one by one, so the host's byte order does not
 * matter. Pure: the server and clients do the file I/O. */
#include "core/mrc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/fail.h"

/* Word offsets in the 1024-byte header. */
enum {
  OFF_NX = 0,
  OFF_MODE = 12,
  OFF_NXSTART = 16,
  OFF_MX = 28,
  OFF_CELLA = 40,
  OFF_CELLB = 52,
  OFF_MAPC = 64,
  OFF_DMIN = 76,
  OFF_DMAX = 80,
  OFF_DMEAN = 84,
  OFF_ISPG = 88,
  OFF_NSYMBT = 92,
  OFF_EXTTYP = 104,
  OFF_NVERSION = 108,
  OFF_ORIGIN = 196,
  OFF_MAP = 208,
  OFF_MACHST = 212,
  OFF_RMS = 216,
  OFF_NLABL = 220,
  OFF_LABELS = 224
};

#define MRC_LABEL_LEN 80
#define MRC_NVERSION 20140


static uint32_t rd_u32(const uint8_t* p) {
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
         (uint32_t) p[3] << 24;
}


static int32_t rd_i32(const uint8_t* p) {
  return (int32_t) rd_u32(p);
}


static float rd_f32(const uint8_t* p) {
  uint32_t u = rd_u32(p);
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}


static void wr_u32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t) v;
  p[1] = (uint8_t) (v >> 8);
  p[2] = (uint8_t) (v >> 16);
  p[3] = (uint8_t) (v >> 24);
}


static void wr_f32(uint8_t* p, float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  wr_u32(p, u);
}


size_t core_mrc_mode_itemsize(int32_t mode) {
  switch (mode) {
  case CORE_MRC_MODE_INT8:
    return 1;
  case CORE_MRC_MODE_INT16:
  case CORE_MRC_MODE_UINT16:
  case CORE_MRC_MODE_FLOAT16:
    return 2;
  case CORE_MRC_MODE_FLOAT32:
    return 4;
  default:
    return 0;
  }
}


uint64_t core_mrc_data_offset(const core_mrc_header_t* h) {
  return CORE_MRC_HEADER_LEN + (uint64_t) h->ext_header_len;
}


uint64_t core_mrc_file_len(const core_mrc_header_t* h) {
  return core_mrc_data_offset(h) +
         core_shape_voxels(&h->shape) * core_mrc_mode_itemsize(h->mode);
}


/* cella / m, or 1 Angstrom when the header leaves the cell unset (many
 * tools write zeros) or says something meaningless. */
static double voxel_size(float cell, int32_t m) {
  if (m <= 0 || !isfinite(cell) || cell <= 0) {
    return 1.0;
  }
  return (double) cell / m;
}


int core_mrc_header_parse(const uint8_t* buf,
                          size_t len,
                          uint64_t file_len,
                          core_mrc_header_t* out,
                          char* err,
                          size_t err_len) {
  if (err_len > 0) {
    err[0] = '\0';
  }
  if (len < CORE_MRC_HEADER_LEN) {
    return core_fail(err, err_len,
                     "not an MRC file: %zu bytes, a header needs %d", len,
                     CORE_MRC_HEADER_LEN);
  }
  if (memcmp(buf + OFF_MAP, "MAP ", 4) != 0) {
    return core_fail(err, err_len,
                     "not an MRC2014 file: no \"MAP \" at byte 208");
  }
  /* The stamp's first byte gives the float and integer byte order: 0x44
   * little-endian (0x44 0x44, or 0x44 0x41 from older writers), 0x11
   * big-endian. Some old writers leave it zero; the checks below still catch
   * a byte-swapped header, as its dimensions or mode come out absurd. */
  const uint8_t* st = buf + OFF_MACHST;
  if (st[0] == 0x11) {
    return core_fail(err, err_len, "big-endian MRC files are not supported");
  }

  int32_t mode = rd_i32(buf + OFF_MODE);
  if (core_mrc_mode_itemsize(mode) == 0) {
    return core_fail(err, err_len,
                     "unsupported MRC mode %d (supported: 0, 1, 2, 6, 12)",
                     mode);
  }
  int32_t n[3];
  for (int i = 0; i < 3; i++) {
    n[i] = rd_i32(buf + OFF_NX + 4 * i); /* nx, ny, nz */
    if (n[i] < 1 || n[i] > (int32_t) CORE_SHAPE_MAX_DIM) {
      return core_fail(err, err_len, "MRC dimension n%c = %d is outside 1..%u",
                       "xyz"[i], n[i], CORE_SHAPE_MAX_DIM);
    }
  }
  int32_t nsymbt = rd_i32(buf + OFF_NSYMBT);
  if (nsymbt < 0) {
    return core_fail(err, err_len, "negative extended header size %d", nsymbt);
  }

  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  for (int i = 0; i < 3; i++) {
    h.shape.d[2 - i] = (uint32_t) n[i];
    int32_t m = rd_i32(buf + OFF_MX + 4 * i);
    h.voxel_size[2 - i] = voxel_size(rd_f32(buf + OFF_CELLA + 4 * i), m);
  }
  h.mode = mode;
  h.ext_header_len = (uint32_t) nsymbt;
  h.dmin = rd_f32(buf + OFF_DMIN);
  h.dmax = rd_f32(buf + OFF_DMAX);
  h.dmean = rd_f32(buf + OFF_DMEAN);
  h.rms = rd_f32(buf + OFF_RMS);

  uint64_t need = core_mrc_file_len(&h);
  if (file_len > 0 && file_len < need) {
    return core_fail(
        err, err_len,
        "truncated MRC file: header announces %llu bytes, file has "
        "%llu",
        (unsigned long long) need, (unsigned long long) file_len);
  }
  *out = h;
  return 0;
}


void core_mrc_header_write(const core_mrc_header_t* h,
                           uint8_t out[CORE_MRC_HEADER_LEN]) {
  memset(out, 0, CORE_MRC_HEADER_LEN);
  for (int i = 0; i < 3; i++) {
    uint32_t n = h->shape.d[2 - i]; /* x, y, z */
    wr_u32(out + OFF_NX + 4 * i, n);
    wr_u32(out + OFF_NXSTART + 4 * i, 0);
    wr_u32(out + OFF_MX + 4 * i, n);
    wr_f32(out + OFF_CELLA + 4 * i, (float) (h->voxel_size[2 - i] * n));
    wr_f32(out + OFF_CELLB + 4 * i, 90.0f);
    wr_u32(out + OFF_MAPC + 4 * i, (uint32_t) i + 1);
    wr_f32(out + OFF_ORIGIN + 4 * i, 0.0f);
  }
  wr_u32(out + OFF_MODE, (uint32_t) h->mode);
  wr_f32(out + OFF_DMIN, h->dmin);
  wr_f32(out + OFF_DMAX, h->dmax);
  wr_f32(out + OFF_DMEAN, h->dmean);
  wr_u32(out + OFF_ISPG, 1); /* a single volume, not an image stack */
  wr_u32(out + OFF_NSYMBT, h->ext_header_len);
  wr_u32(out + OFF_NVERSION, MRC_NVERSION);
  memcpy(out + OFF_MAP, "MAP ", 4);
  out[OFF_MACHST] = 0x44;
  out[OFF_MACHST + 1] = 0x44;
  wr_f32(out + OFF_RMS, h->rms);
  wr_u32(out + OFF_NLABL, 1);
  /* Labels are space-padded text in the MRC tradition; the rest stay NUL. */
  char label[MRC_LABEL_LEN + 1];
  snprintf(label, sizeof(label), "%-80s", "cryomamba: written by libcmcore");
  memcpy(out + OFF_LABELS, label, MRC_LABEL_LEN);
}
