/* mask_render.c: the worker side of mask engines' renders. See
 * mask_render.h. Runs on libuv's worker pool; touches only its render. */
#include "server/mask_render.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mrc.h"
#include "server/chunk_jobs.h"
#include "server/file_io.h"
#include "server/file_sync.h"
#include "server/jobs.h"
#include "server/render.h"


int srv_mask_path(const srv_job_t* job, char* out, size_t cap) {
  int n = snprintf(out, cap, "%s/artifacts/%s-mask.u8.tmp",
                   job->ctx->cfg.state_dir, job->id);
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}


srv_mask_render_t* srv_mask_render_new(srv_job_t* job,
                                       srv_mask_render_kind_t kind) {
  srv_mask_render_t* r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return NULL;
  }
  if (srv_mask_path(job, r->mask_path, sizeof(r->mask_path)) != 0 ||
      srv_job_artifact_path(job, r->artifact_path, sizeof(r->artifact_path)) !=
          0) {
    free(r);
    return NULL;
  }
  r->job = srv_job_ref(job);
  r->kind = kind;
  r->shape = job->shape;
  r->preview_shape = job->preview_shape;
  r->scale = job->params.preview_scale;
  r->method = job->params.preview_downsample;
  memcpy(r->voxel_size, job->voxel_size, sizeof(r->voxel_size));
  r->want_zstd = job->topic.sinks_by_enc[CORE_ENC_ZSTD] > 0;
  r->req.data = r;
  return r;
}


void srv_mask_render_free(srv_mask_render_t* r) {
  if (r->chunk_pass != NULL) { /* not published: looked at again later */
    srv_chunks_pass_end(r->job->chunks, r->chunk_pass, 0);
    r->chunk_pass = NULL;
  }
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    net_frame_unref(r->frames[e]);
  }
  net_frame_pool_unref(r->pool);
  if (r->owns_preview) {
    free(r->preview);
  }
  srv_job_unref(r->job);
  free(r);
}


static int fail(srv_mask_render_t* r,
                int err,
                bool engine,
                const char* fmt,
                ...) __attribute__((format(printf, 4, 5)));

static int fail(srv_mask_render_t* r,
                int err,
                bool engine,
                const char* fmt,
                ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof(r->why), fmt, ap);
  va_end(ap);
  r->err = err;
  r->is_engine_fault = engine;
  return err;
}


/* Reads exactly `len` bytes at `off`; a short read is the engine's fault
 * (its file is shorter than the volume). */
static int read_at(srv_mask_render_t* r,
                   int fd,
                   uint8_t* buf,
                   size_t len,
                   uint64_t off) {
  size_t done = 0;
  int rc = srv_pread_full(fd, buf, len, off, &done);
  if (rc < 0) {
    return fail(r, rc, false, "reading the mask: %s", strerror(-rc));
  }
  if (rc == SRV_PREAD_SHORT) {
    return fail(r, -EIO, true,
                "the mask file ends at byte %llu of %llu: it was truncated",
                (unsigned long long) (off + done),
                (unsigned long long) core_shape_voxels(&r->shape));
  }
  return 0;
}


/* Refreshes the preview box covering r->box from the file (data at
 * `data_off`), plane by plane, reading only the rows each needs. */
static int refresh(srv_mask_render_t* r, int fd, uint64_t data_off) {
  const core_shape_t* s = &r->shape;
  core_box_t pb = core_box_to_preview(&r->box, r->scale);
  size_t row = s->d[2];
  uint8_t* rows = malloc((size_t) s->d[1] * row);
  if (rows == NULL) {
    return fail(r, -ENOMEM, false, "out of memory");
  }
  uint64_t z_end = (uint64_t) pb.hi[0] * r->scale;
  uint32_t z1 = z_end < s->d[0] ? (uint32_t) z_end : s->d[0];
  int err = 0;
  for (uint32_t z = pb.lo[0] * r->scale; err == 0 && z < z1; z++) {
    uint32_t y_lo, y_hi;
    if (!core_downsample_rows_needed(r->method, &pb, z, r->scale, s, &y_lo,
                                     &y_hi)) {
      continue;
    }
    uint64_t off = data_off + ((uint64_t) z * s->d[1] + y_lo) * row;
    err = read_at(r, fd, rows, (size_t) (y_hi - y_lo) * row, off);
    if (err == 0) {
      core_downsample_fold(r->method, rows, z, y_lo, y_hi, s, r->scale, &pb,
                           r->preview);
    }
  }
  free(rows);
  return err;
}


static int write_all(int fd, const uint8_t* p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -errno;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}


/* The MRC header of the artifact, its statistics from the label counts. */
static void artifact_header(const srv_mask_render_t* r,
                            uint8_t out[CORE_MRC_HEADER_LEN]) {
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = r->shape;
  h.mode = CORE_MRC_MODE_INT8;
  memcpy(h.voxel_size, r->voxel_size, sizeof(h.voxel_size));
  double n = (double) core_shape_voxels(&r->shape);
  double sum = 0, sum_sq = 0;
  int max = 0;
  for (int l = 0; l < 256; l++) {
    sum += (double) l * (double) r->counts[l];
    sum_sq += (double) l * l * (double) r->counts[l];
    max = r->counts[l] > 0 ? l : max;
  }
  double mean = sum / n;
  double var = sum_sq / n - mean * mean;
  h.dmin = 0;
  h.dmax = (float) max;
  h.dmean = (float) mean;
  h.rms = (float) sqrt(var > 0 ? var : 0);
  core_mrc_header_write(&h, out);
}


/* Final: every plane once: counted, written to the artifact after the
 * header, folded into the preview. */
static int final_pass(srv_mask_render_t* r, int fd) {
  const core_shape_t* s = &r->shape;
  uint64_t n = core_shape_voxels(s);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return fail(r, -errno, false, "reading the mask: %s", strerror(errno));
  }
  if ((uint64_t) st.st_size != n) {
    return fail(r, -EIO, true,
                "the mask file has %lld bytes, the volume %llu voxels: the "
                "engine truncated or grew it",
                (long long) st.st_size, (unsigned long long) n);
  }
  char tmp[1300];
  snprintf(tmp, sizeof(tmp), "%s.tmp", r->artifact_path);
  int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    return fail(r, -errno, false, "writing the artifact: %s", strerror(errno));
  }
  size_t plane = (size_t) s->d[1] * s->d[2];
  uint8_t* buf = malloc(plane);
  uint8_t header[CORE_MRC_HEADER_LEN] = {0};
  int err = buf != NULL ? write_all(out, header, sizeof(header)) : -ENOMEM;
  core_box_t all = {{0, 0, 0}, {s->d[0], s->d[1], s->d[2]}};
  core_box_t pb = core_box_to_preview(&all, r->scale);
  for (uint32_t z = 0; err == 0 && z < s->d[0]; z++) {
    err = read_at(r, fd, buf, plane, (uint64_t) z * plane);
    if (err != 0) {
      break;
    }
    for (size_t i = 0; i < plane; i++) {
      r->counts[buf[i]]++;
    }
    err = write_all(out, buf, plane);
    uint32_t y_lo, y_hi;
    if (err == 0 && core_downsample_rows_needed(r->method, &pb, z, r->scale, s,
                                                &y_lo, &y_hi)) {
      core_downsample_fold(r->method, buf + (size_t) y_lo * s->d[2], z, y_lo,
                           y_hi, s, r->scale, &pb, r->preview);
    }
  }
  free(buf);
  if (err == 0) {
    artifact_header(r, header);
    err = pwrite(out, header, sizeof(header), 0) == (ssize_t) sizeof(header)
              ? 0
              : -EIO;
  }
  if (err == 0 && fsync(out) != 0) {
    err = -errno;
  }
  close(out);
  if (err == 0 && rename(tmp, r->artifact_path) != 0) {
    err = -errno;
  }
  if (err == 0) {
    /* The name too, before the terminal record says it exists. */
    err = srv_fsync_parent(r->artifact_path);
  }
  if (err != 0) {
    unlink(tmp);
    return r->err != 0 ? r->err
                       : fail(r, err, false, "writing the artifact: %s",
                              strerror(-err));
  }
  r->artifact_bytes = sizeof(header) + n;
  unlink(r->mask_path); /* the artifact holds it now */
  return 0;
}


/* The preview buffer into a raw frame, then the other encodings. */
static int encode(srv_mask_render_t* r) {
  size_t n = (size_t) core_shape_voxels(&r->preview_shape);
  r->frames[CORE_ENC_RAW] = srv_frame_for(r->pool, n);
  if (r->frames[CORE_ENC_RAW] == NULL) {
    return fail(r, -ENOMEM, false, "out of memory");
  }
  memcpy(r->frames[CORE_ENC_RAW]->data, r->preview, n);
  int err = srv_frames_encode(r->frames, r->pool, r->want_zstd);
  return err != 0 ? fail(r, err, false, "encoding the preview") : 0;
}


void srv_mask_render_work(uv_work_t* req) {
  srv_mask_render_t* r = req->data;
  uint64_t t0 = uv_hrtime();
  if (r->preview == NULL) {
    r->preview = calloc(1, (size_t) core_shape_voxels(&r->preview_shape));
    r->owns_preview = true;
    if (r->preview == NULL) {
      fail(r, -ENOMEM, false, "out of memory");
      return;
    }
  }
  const char* path =
      r->kind == SRV_MASK_REBUILD ? r->artifact_path : r->mask_path;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(r, -errno, r->kind != SRV_MASK_REBUILD && errno == ENOENT,
         "opening %s: %s",
         r->kind == SRV_MASK_REBUILD ? "the artifact" : "the mask file",
         strerror(errno));
    return;
  }
  int err = 0;
  switch (r->kind) {
  case SRV_MASK_PREVIEW: /* the box is empty when only chunks are due */
    err = core_box_is_empty(&r->box) ? 0 : refresh(r, fd, 0);
    break;
  case SRV_MASK_FINAL:
    err = final_pass(r, fd);
    break;
  case SRV_MASK_REBUILD:
    r->box =
        (core_box_t){{0, 0, 0}, {r->shape.d[0], r->shape.d[1], r->shape.d[2]}};
    err = refresh(r, fd, CORE_MRC_HEADER_LEN);
    break;
  }
  if (err == 0 && r->chunk_pass != NULL) {
    srv_chunk_file_t f = {.fd = fd, .offset = 0, .vol = r->shape};
    srv_chunk_pass_run(r->chunk_pass, srv_chunk_read_file, &f);
  }
  close(fd);
  if (err == 0) {
    encode(r);
  }
  r->render_ns = uv_hrtime() - t0;
}
