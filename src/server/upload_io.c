/* upload_io.c: a PATCH's writes and hashes off the loop. See upload_io.h.
 * The work functions touch only their operation (and the buffer, file and
 * digests it borrows); everything else stays on the loop. */
#include "server/upload_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server/file_sync.h"


void srv_upload_io_init(srv_upload_io_t* io, const char* path, void* data) {
  memset(io, 0, sizeof(*io));
  snprintf(io->path, sizeof(io->path), "%s", path);
  io->fd = -1;
  io->data = data;
  io->req.data = io;
}


static int write_all(int fd, const uint8_t* buf, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t n = pwrite(fd, buf, len, (off_t) off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n < 0 ? -errno : -EIO;
    }
    buf += n;
    len -= (size_t) n;
    off += (uint64_t) n;
  }
  return 0;
}


static void io_work(uv_work_t* req) {
  srv_upload_io_t* io = req->data;
  io->status = 0;
  if (io->fd < 0) {
    /* A new file's name is synced now, before any record counts its bytes
     * (the offset commits after this PATCH's fdatasync). */
    io->fd = srv_open_or_create(io->path);
    if (io->fd < 0) {
      io->status = io->fd;
      io->fd = -1;
      return;
    }
  }
  if (io->len > 0) {
    io->status = write_all(io->fd, io->buf, io->len, io->off);
#ifdef SYNC_FILE_RANGE_WRITE
    /* Starts the writeback of what was just written, so the fdatasync at
     * the PATCH's end waits for the last few buffers only. A hint: an error
     * here shows again at that fdatasync, which decides. */
    if (io->status == 0) {
      (void) sync_file_range(io->fd, (off_t) io->off, (off_t) io->len,
                             SYNC_FILE_RANGE_WRITE);
    }
#endif
  }
  if (io->status == 0 && io->sync && fdatasync(io->fd) != 0) {
    io->status = -errno;
  }
  if (io->close_after) {
    close(io->fd);
    io->fd = -1;
  }
}


static void io_done(uv_work_t* req, int status) {
  srv_upload_io_t* io = req->data;
  io->is_busy = false;
  if (status != 0 && io->status == 0) {
    io->status = status;
  }
  io->cb(io);
}


int srv_upload_io_submit(uv_loop_t* loop,
                         srv_upload_io_t* io,
                         srv_upload_io_cb cb) {
  io->cb = cb;
  io->is_busy = true;
  io->req.data = io;
  int err = uv_queue_work(loop, &io->req, io_work, io_done);
  if (err != 0) {
    io->is_busy = false;
  }
  return err;
}


static void hash_work(uv_work_t* req) {
  srv_upload_hash_t* h = req->data;
  h->status = EVP_DigestUpdate(h->sum, h->buf, h->len) == 1 ? 0 : -ENOMEM;
}


static void hash_done(uv_work_t* req, int status) {
  srv_upload_hash_t* h = req->data;
  h->is_busy = false;
  if (status != 0 && h->status == 0) {
    h->status = status;
  }
  h->cb(h);
}


int srv_upload_hash_submit(uv_loop_t* loop,
                           srv_upload_hash_t* h,
                           srv_upload_hash_cb cb) {
  h->cb = cb;
  h->is_busy = true;
  h->req.data = h;
  int err = uv_queue_work(loop, &h->req, hash_work, hash_done);
  if (err != 0) {
    h->is_busy = false;
  }
  return err;
}
