/* upload_join.c: a final upload's join off the loop. See upload_join.h. The
 * work function touches only its srv_upload_join_t and the files it names;
 * the loop reads the struct only after a step's callback. */
#include "server/upload_join.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BUF (1u << 20)


srv_upload_join_t* srv_upload_join_new(const char* dst,
                                       unsigned count,
                                       void* data) {
  size_t size = sizeof(srv_upload_join_t) + count * sizeof(srv_join_part_t);
  srv_upload_join_t* j = calloc(1, size);
  if (j == NULL) {
    return NULL;
  }
  snprintf(j->dst, sizeof(j->dst), "%s", dst);
  j->count = count;
  j->data = data;
  j->req.data = j;
  return j;
}


/* Copies `len` bytes from `in` at *in_off to `out` at *out_off with
 * read/write (copy_file_range is not available between these files). */
static int copy_rw(int in,
                   uint64_t* in_off,
                   int out,
                   uint64_t* out_off,
                   uint64_t len) {
  uint8_t* buf = malloc(COPY_BUF);
  if (buf == NULL) {
    return -ENOMEM;
  }
  int rc = 0;
  while (len > 0 && rc == 0) {
    size_t want = len < COPY_BUF ? (size_t) len : COPY_BUF;
    ssize_t n = pread(in, buf, want, (off_t) *in_off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      rc = n < 0 ? -errno : -EIO; /* 0: the part is shorter than its length */
      break;
    }
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(out, buf + done, (size_t) (n - done),
                         (off_t) (*out_off + (uint64_t) done));
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        rc = w < 0 ? -errno : -EIO;
        break;
      }
      done += w;
    }
    if (rc == 0) {
      *in_off += (uint64_t) n;
      *out_off += (uint64_t) n;
      len -= (uint64_t) n;
    }
  }
  free(buf);
  return rc;
}


/* Copies `len` bytes in the kernel where the file systems allow it. */
static int copy_range(int in,
                      uint64_t* in_off,
                      int out,
                      uint64_t* out_off,
                      uint64_t len) {
  while (len > 0) {
    loff_t src = (loff_t) *in_off;
    loff_t dst = (loff_t) *out_off;
    size_t want = len < (1u << 30) ? (size_t) len : (1u << 30);
    ssize_t n = copy_file_range(in, &src, out, &dst, want, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
                  errno == EOPNOTSUPP || errno == EBADF)) {
      return copy_rw(in, in_off, out, out_off, len);
    }
    if (n <= 0) {
      return n < 0 ? -errno : -EIO; /* 0: the part is shorter */
    }
    *in_off += (uint64_t) n;
    *out_off += (uint64_t) n;
    len -= (uint64_t) n;
  }
  return 0;
}


/* One step: up to SRV_JOIN_STEP_BYTES of the parts, then (at the end)
 * fdatasync. */
static void join_work(uv_work_t* req) {
  srv_upload_join_t* j = req->data;
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (j->is_started ? 0 : O_TRUNC);
  int out = open(j->dst, flags, 0644);
  if (out < 0) {
    j->status = -errno;
    snprintf(j->why, sizeof(j->why), "the final upload's file cannot be made");
    return;
  }
  j->is_started = true;
  uint64_t budget = SRV_JOIN_STEP_BYTES;
  j->status = 0;
  while (j->status == 0 && budget > 0 && j->index < j->count) {
    srv_join_part_t* part = &j->parts[j->index];
    int in = open(part->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0 || (uint64_t) st.st_size < part->len) {
      j->status = in < 0 ? -errno : -EIO;
      snprintf(j->why, sizeof(j->why), "part %u of the final upload is %s",
               j->index + 1, in < 0 ? "missing" : "shorter than its length");
      if (in >= 0) {
        close(in);
      }
      break;
    }
    uint64_t left = part->len - j->in_off;
    uint64_t n = left < budget ? left : budget;
    j->status = copy_range(in, &j->in_off, out, &j->out_off, n);
    close(in);
    if (j->status != 0) {
      snprintf(j->why, sizeof(j->why), "part %u could not be copied: %s",
               j->index + 1, strerror(-j->status));
      break;
    }
    budget -= n;
    if (j->in_off == part->len) {
      j->index++;
      j->in_off = 0;
    }
  }
  if (j->status == 0 && j->index == j->count) {
    if (fdatasync(out) != 0) {
      j->status = -errno;
      snprintf(j->why, sizeof(j->why), "the final upload's file: %s",
               strerror(errno));
    } else {
      j->is_done = true;
    }
  }
  close(out);
}


static void join_done(uv_work_t* req, int status) {
  srv_upload_join_t* j = req->data;
  j->is_busy = false;
  if (status != 0 && j->status == 0) {
    j->status = status;
    snprintf(j->why, sizeof(j->why), "the join was cancelled");
  }
  j->cb(j);
}


int srv_upload_join_step(uv_loop_t* loop,
                         srv_upload_join_t* j,
                         srv_upload_join_cb cb) {
  j->cb = cb;
  j->is_busy = true;
  int err = uv_queue_work(loop, &j->req, join_work, join_done);
  if (err != 0) {
    j->is_busy = false;
  }
  return err;
}
