/* chunk_jobs.c: tables made on demand, an ended job's table built from its
 * artifact, and the pass readers. See chunk_jobs.h. */
#include "server/chunk_jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/mrc.h"
#include "server/cluster_chunks.h"
#include "server/file_io.h"
#include "server/jobs.h"
#include "server/log.h"


/* The file is shorter than the volume: -EIO. */
static int chunk_read(int fd, uint8_t* p, size_t n, uint64_t off) {
  int rc = srv_pread_full(fd, p, n, off, NULL);
  return rc == SRV_PREAD_SHORT ? -EIO : rc;
}


int srv_chunk_read_mem(void* ctx, const core_box_t* b, uint8_t* out) {
  const srv_chunk_mem_t* m = ctx;
  core_box_t all = {{0, 0, 0}, {m->vol.d[0], m->vol.d[1], m->vol.d[2]}};
  core_chunk_cut(m->mask, &all, b, out);
  return 0;
}


int srv_chunk_read_file(void* ctx, const core_box_t* b, uint8_t* out) {
  const srv_chunk_file_t* f = ctx;
  uint64_t row = f->vol.d[2];
  uint64_t plane = (uint64_t) f->vol.d[1] * row;
  size_t nx = b->hi[2] - b->lo[2];
  size_t ny = b->hi[1] - b->lo[1];
  for (uint32_t z = b->lo[0]; z < b->hi[0]; z++) {
    uint64_t base = f->offset + z * plane;
    if (nx == row) { /* whole rows: one read for the plane's band */
      int rc = chunk_read(f->fd, out, ny * nx, base + b->lo[1] * row);
      if (rc != 0) {
        return rc;
      }
      out += ny * nx;
      continue;
    }
    for (uint32_t y = b->lo[1]; y < b->hi[1]; y++) {
      int rc = chunk_read(f->fd, out, nx, base + y * row + b->lo[2]);
      if (rc != 0) {
        return rc;
      }
      out += nx;
    }
  }
  return 0;
}


/* ---- an ended job's table from its artifact ---- */

typedef struct {
  uv_work_t req;
  srv_job_t* job; /* a reference */
  srv_chunk_pass_t* pass;
  char path[1200];
  int err;
} build_t;


static void build_work(uv_work_t* req) {
  build_t* b = req->data;
  srv_chunk_file_t f;
  f.fd = open(b->path, O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    b->err = -errno;
    return;
  }
  uint8_t head[CORE_MRC_HEADER_LEN];
  core_mrc_header_t h;
  char why[160];
  struct stat st;
  b->err =
      fstat(f.fd, &st) != 0 ? -errno : chunk_read(f.fd, head, sizeof(head), 0);
  if (b->err == 0 &&
      core_mrc_header_parse(head, sizeof(head), (uint64_t) st.st_size, &h, why,
                            sizeof(why)) != 0) {
    b->err = -EINVAL;
  }
  if (b->err == 0) {
    f.offset = core_mrc_data_offset(&h);
    f.vol = b->job->shape; /* the artifact is the job's full mask */
    srv_chunk_pass_run(b->pass, srv_chunk_read_file, &f);
    b->err = srv_chunk_pass_error(b->pass);
  }
  close(f.fd);
}


static void build_done(uv_work_t* req, int status) {
  build_t* b = req->data;
  srv_job_t* job = b->job;
  if (status != 0 && b->err == 0) {
    b->err = status;
  }
  uint32_t seq =
      (uint32_t) (job->final_preview_seq != 0 ? job->final_preview_seq
                                              : job->seq);
  srv_chunks_t* t = job->chunks;
  srv_chunks_pass_end(t, b->pass, b->err == 0 ? seq : 0);
  if (b->err != 0) {
    srv_log(&job->ctx->log, SRV_LOG_WARN, "chunks.build_failed", "s:job_id",
            job->id, "s:error", strerror(-b->err), NULL);
    /* Subscribers get an empty table and the terminal message rather than
     * nothing at all. */
    t->all_dirty = false;
    t->box_count = 0;
    srv_chunks_set_ready(t, seq);
  }
  srv_job_unref(job);
  free(b);
}


static void build_from_artifact(srv_job_t* job) {
  srv_chunks_t* t = job->chunks;
  build_t* b = calloc(1, sizeof(*b));
  if (b != NULL && srv_job_artifact_path(job, b->path, sizeof(b->path)) == 0) {
    srv_chunks_mark_all(t);
    b->pass = srv_chunks_pass_begin(t);
  }
  if (b == NULL || b->pass == NULL) {
    free(b);
    srv_chunks_set_ready(t, (uint32_t) job->seq);
    return;
  }
  b->job = srv_job_ref(job);
  b->req.data = b;
  if (uv_queue_work(job->ctx->loop, &b->req, build_work, build_done) != 0) {
    srv_chunks_pass_end(t, b->pass, 0);
    srv_job_unref(job);
    free(b);
    t->all_dirty = false;
    srv_chunks_set_ready(t, (uint32_t) job->seq);
  }
}


srv_chunks_t* srv_chunks_for_job(srv_job_t* job) {
  if (job->ctx->cfg.role == SRV_ROLE_GATEWAY) {
    return srv_cluster_chunks_for_mirror(job); /* filled from Redis */
  }
  if (job->chunks == NULL) {
    job->chunks = srv_chunks_new(&job->shape, job->topic.held);
    if (job->chunks == NULL) {
      return NULL;
    }
    if (job->state == CORE_JOB_RUNNING) {
      srv_chunks_mark_all(job->chunks); /* the next preview's pass */
    }
  }
  srv_chunks_t* t = job->chunks;
  if (t->pass_in_flight) {
    return t;
  }
  switch (job->state) {
  case CORE_JOB_QUEUED:
    if (!t->is_ready) {
      srv_chunks_set_ready(t, (uint32_t) job->seq); /* nothing written yet */
    }
    break;
  case CORE_JOB_RUNNING:
    break; /* the engine's next preview carries the pass */
  case CORE_JOB_COMPLETED:
    if (!t->is_ready || srv_chunks_wants_pass(t)) {
      build_from_artifact(job);
    }
    break;
  default: /* cancelled, failed: what the table has is all there is */
    if (!srv_chunks_is_settled(t) || !t->is_ready) {
      t->all_dirty = false;
      t->box_count = 0;
      srv_chunks_set_ready(t, (uint32_t) job->seq);
    }
    break;
  }
  return t;
}
