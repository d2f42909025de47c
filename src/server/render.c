/* render.c: the worker side of renders. See render.h. Runs on libuv's
 * worker pool (and, for large previews, one helper thread per base64);
 * touches only its srv_render_t. */
#include "server/render.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/mrc.h"
#include "server/chunk_jobs.h"
#include "server/file_sync.h"

static int write_all(int fd, const uint8_t* p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}


/* Writes the final mask as MRC mode 0 via a temporary file and rename, so a
 * crash never leaves a half-written artifact under the real name. */
static int write_artifact(srv_render_t* r, const uint8_t* mask) {
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = r->spec.shape;
  h.mode = CORE_MRC_MODE_INT8;
  memcpy(h.voxel_size, r->voxel_size, sizeof(h.voxel_size));
  h.dmin = 0;
  h.dmax = r->counts[2] > 0 ? 2.0f : (r->counts[1] > 0 ? 1.0f : 0.0f);
  uint64_t n = core_shape_voxels(&r->spec.shape);
  double mean = (double) (r->counts[1] + 2 * r->counts[2]) / (double) n;
  double mean_sq = (double) (r->counts[1] + 4 * r->counts[2]) / (double) n;
  h.dmean = (float) mean;
  h.rms = (float) sqrt(mean_sq - mean * mean > 0 ? mean_sq - mean * mean : 0);
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, header);
  char tmp[1300];
  snprintf(tmp, sizeof(tmp), "%s.tmp", r->artifact_path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return -errno;
  }
  int err = write_all(fd, header, sizeof(header));
  if (err == 0) {
    err = write_all(fd, mask, n);
  }
  if (err == 0 && fsync(fd) != 0) {
    err = -errno;
  }
  close(fd);
  if (err == 0 && rename(tmp, r->artifact_path) != 0) {
    err = -errno;
  }
  if (err == 0) {
    err = srv_fsync_parent(r->artifact_path); /* the name, before the record */
  }
  if (err != 0) {
    unlink(tmp);
    return err;
  }
  r->artifact_bytes = sizeof(header) + n;
  return 0;
}


#define ZSTD_LEVEL 1 /* previews favour speed: masks compress well anyway */


void srv_render_release_frames(srv_render_t* r) {
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    net_frame_unref(r->frames[e]);
    r->frames[e] = NULL;
  }
}


/* Frees a render (its frames, if still held, and its pool reference). */
void srv_render_free(srv_render_t* r) {
  if (r->chunk_pass != NULL) { /* not published: looked at again later */
    srv_chunks_pass_end(r->job->chunks, r->chunk_pass, 0);
    r->chunk_pass = NULL;
  }
  srv_render_release_frames(r);
  net_frame_pool_unref(r->pool);
  free(r);
}


net_frame_t* srv_frame_for(net_frame_pool_t* pool, size_t len) {
  return pool != NULL ? net_frame_pool_get(pool, SRV_FRAME_HEADROOM, len)
                      : net_frame_new(SRV_FRAME_HEADROOM, len);
}


static net_frame_t* frame_for(srv_render_t* r, size_t len) {
  return srv_frame_for(r->pool, len);
}


/* Allocates the raw frame; the mask is rendered straight into it. */
static uint8_t* alloc_raw(srv_render_t* r, size_t n) {
  r->frames[CORE_ENC_RAW] = frame_for(r, n);
  return r->frames[CORE_ENC_RAW] != NULL ? r->frames[CORE_ENC_RAW]->data : NULL;
}


/* Large previews are base64-encoded by two threads, each half of the
 * input; below this the thread start costs more than it saves. */
#define PARALLEL_BASE64_MIN ((size_t) 2 << 20)

typedef struct {
  const uint8_t* src;
  size_t n;
  char* dst;
} b64_part_t;


static void encode_part(void* arg) {
  b64_part_t* part = arg;
  core_base64_encode(part->src, part->n, part->dst);
}


/* Encodes `n` bytes into `dst` (as core_base64_encode), splitting at a
 * multiple of 3 so each half produces exactly its share of the output. The
 * helper encodes the first half but its last 3 bytes, so its trailing NUL
 * lands on characters only this thread writes, after the join; no byte is
 * written by both threads. */
static void base64_encode_parallel(const uint8_t* src, size_t n, char* dst) {
  uv_thread_t helper;
  size_t split = n / 2 / 3 * 3;
  b64_part_t first = {src, split - 3, dst};
  if (n < PARALLEL_BASE64_MIN ||
      uv_thread_create(&helper, encode_part, &first) != 0) {
    core_base64_encode(src, n, dst);
    return;
  }
  core_base64_encode(src + split, n - split, dst + split / 3 * 4);
  uv_thread_join(&helper);
  char last[8];
  core_base64_encode(src + split - 3, 3, last);
  memcpy(dst + (split - 3) / 3 * 4, last, 4);
}


int srv_frames_encode(net_frame_t* frames[CORE_ENC_COUNT],
                      net_frame_pool_t* pool,
                      bool want_zstd) {
  static const char suffix[] = "\"}}";
  const uint8_t* mask = frames[CORE_ENC_RAW]->data;
  size_t n = frames[CORE_ENC_RAW]->len;
  size_t b64_len = core_base64_encoded_len(n);
  net_frame_t* text = srv_frame_for(pool, b64_len + sizeof(suffix) - 1);
  if (text == NULL) {
    return -ENOMEM;
  }
  base64_encode_parallel(mask, n, (char*) text->data);
  memcpy(text->data + b64_len, suffix, sizeof(suffix) - 1);
  frames[CORE_ENC_BASE64] = text;
  if (want_zstd) {
    size_t cap = core_zstd_bound(n);
    net_frame_t* z = srv_frame_for(pool, cap);
    if (z == NULL) {
      return -ENOMEM;
    }
    long zlen = core_zstd_compress(mask, n, z->data, cap, ZSTD_LEVEL);
    if (zlen < 0) {
      net_frame_unref(z);
      return -EIO;
    }
    z->len = (size_t) zlen;
    frames[CORE_ENC_ZSTD] = z;
  }
  return 0;
}


static int encode_frames(srv_render_t* r) {
  return srv_frames_encode(r->frames, r->pool, r->want_zstd);
}


/* A pass reader that draws the simulator's mask a slab of planes at a
 * time: the pass reads strip by strip, a chunk row (32 planes) after
 * another, so one slab is held, never the whole volume. */
typedef struct {
  const core_mask_spec_t* spec;
  double progress;
  uint64_t tick;
  uint8_t* slab;   /* CORE_CHUNK_EDGE planes */
  uint32_t z0, z1; /* the planes in slab; z0 == z1: none yet */
} slab_reader_t;


static int read_slab(void* ctx, const core_box_t* b, uint8_t* out) {
  slab_reader_t* sr = ctx;
  const core_shape_t* v = &sr->spec->shape;
  if (b->hi[0] - b->lo[0] > CORE_CHUNK_EDGE) {
    return -EINVAL; /* the pass reads one chunk row at a time */
  }
  if (b->lo[0] != sr->z0 || b->hi[0] != sr->z1) {
    core_mask_render_planes(sr->spec, sr->progress, sr->tick, b->lo[0],
                            b->hi[0], sr->slab);
    sr->z0 = b->lo[0];
    sr->z1 = b->hi[0];
  }
  core_box_t held = {{sr->z0, 0, 0}, {sr->z1, v->d[1], v->d[2]}};
  core_chunk_cut(sr->slab, &held, b, out);
  return 0;
}


/* The chunk pass on the full-resolution mask: `full` when the render has
 * it, else drawn slab by slab for the pass alone. Its failure is the
 * pass's (the chunks are looked at again later), never the preview's. */
static void run_chunks(srv_render_t* r,
                       const uint8_t* full,
                       double progress,
                       uint64_t tick) {
  if (full != NULL) {
    srv_chunk_mem_t m = {.mask = full, .vol = r->spec.shape};
    srv_chunk_pass_run(r->chunk_pass, srv_chunk_read_mem, &m);
    return;
  }
  slab_reader_t sr = {.spec = &r->spec, .progress = progress, .tick = tick};
  sr.slab = malloc((size_t) CORE_CHUNK_EDGE * r->spec.shape.d[1] *
                   r->spec.shape.d[2]);
  if (sr.slab == NULL) {
    return; /* the pass did not run: srv_chunks_pass_end marks it again */
  }
  srv_chunk_pass_run(r->chunk_pass, read_slab, &sr);
  free(sr.slab);
}


void srv_render_work(uv_work_t* req) {
  srv_render_t* r = req->data;
  uint64_t t0 = uv_hrtime();
  size_t n_preview = (size_t) core_shape_voxels(&r->preview_shape);
  uint8_t* preview = alloc_raw(r, n_preview);
  if (preview == NULL) {
    r->err = -ENOMEM;
    r->err_what = "allocating the preview";
    return;
  }
  if (r->kind == SRV_RENDER_PREVIEW) {
    core_mask_render(&r->spec, r->progress, r->scale, r->tick, preview);
    if (r->chunk_pass != NULL) {
      run_chunks(r, r->scale == 1 ? preview : NULL, r->progress, r->tick);
    }
    r->err = encode_frames(r);
    r->err_what = "encoding the preview";
    r->render_ns = uv_hrtime() - t0;
    return;
  }
  /* Final and rebuild: the full mask, then its exact downsampling, so the
   * last preview and the artifact agree voxel for voxel. */
  size_t n_full = (size_t) core_shape_voxels(&r->spec.shape);
  uint8_t* full = r->scale > 1 ? malloc(n_full) : preview;
  if (full == NULL) {
    r->err = -ENOMEM;
    r->err_what = "allocating the final mask";
    return;
  }
  core_mask_render(&r->spec, 1.0, 1, CORE_MASK_FINAL_TICK, full);
  if (r->scale > 1) {
    core_shape_downsample_u8(full, &r->spec.shape, r->scale, preview);
  }
  r->err = encode_frames(r);
  r->err_what = "encoding the final preview";
  if (r->err == 0 && r->chunk_pass != NULL) {
    run_chunks(r, full, 1.0, CORE_MASK_FINAL_TICK);
  }
  if (r->err == 0 && r->kind == SRV_RENDER_FINAL) {
    core_mask_count_labels(full, n_full, r->counts, 3);
    r->err = write_artifact(r, full);
    r->err_what = "writing the mask artifact";
  }
  if (full != preview) {
    free(full);
  }
  r->render_ns = uv_hrtime() - t0;
}
