/* download.c: chunked file responses. See download.h. The srv_download_t
 * owns itself once started: it is freed after its file is closed, which may
 * be after its connection is gone (conn == NULL then). */
#include "server/download.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES (256 * 1024)

typedef struct {
  srv_stream_t stream; /* conn->stream while attached */
  srv_conn_t* conn;    /* NULL once the connection closed */
  srv_http_mode_t mode;
  uv_loop_t* loop;
  uv_fs_t req;
  uv_file fd;
  uint64_t size;
  uint64_t offset;
  net_frame_t* chunk; /* being read into; ours until pushed */
  const char* content_type;
  const char* missing_code;
  bool is_io_busy;
} download_t;

static void read_next(download_t* d);


static void on_closed(uv_fs_t* req) {
  download_t* d = req->data;
  uv_fs_req_cleanup(req);
  net_frame_unref(d->chunk);
  free(d);
}


/* Closes the file and frees the download (asynchronously). */
static void destroy(download_t* d) {
  if (d->fd >= 0) {
    d->req.data = d;
    if (uv_fs_close(d->loop, &d->req, d->fd, on_closed) == 0) {
      return;
    }
  }
  net_frame_unref(d->chunk);
  free(d);
}


/* Detaches from the connection; `resume` lets it go on with requests,
 * otherwise it is closed (a promised length could not be kept). */
static void finish(download_t* d, bool resume) {
  srv_conn_t* conn = d->conn;
  conn->stream = NULL;
  d->conn = NULL;
  destroy(d);
  if (resume) {
    srv_conn_resume(conn);
  } else {
    srv_conn_close(conn);
  }
}


static void on_read_chunk(uv_fs_t* req) {
  download_t* d = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  d->is_io_busy = false;
  if (d->conn == NULL) {
    destroy(d);
    return;
  }
  if (n <= 0) {
    finish(d, false); /* the file shrank or failed under us */
    return;
  }
  net_frame_t* chunk = d->chunk;
  d->chunk = NULL;
  chunk->len = (size_t) n;
  d->offset += (uint64_t) n;
  d->is_io_busy = true; /* a close inside send must not free us yet */
  srv_conn_send(d->conn, chunk, NET_WQ_ESSENTIAL);
  net_frame_unref(chunk);
  d->is_io_busy = false;
  if (d->conn == NULL) {
    destroy(d);
    return;
  }
  if (srv_conn_wait_drain(d->conn)) {
    read_next(d); /* the chunk went out at once */
  }
}


static void read_next(download_t* d) {
  if (d->offset >= d->size) {
    finish(d, true);
    return;
  }
  uint64_t left = d->size - d->offset;
  size_t want = left < CHUNK_BYTES ? (size_t) left : CHUNK_BYTES;
  d->chunk = net_frame_new(0, want);
  if (d->chunk == NULL) {
    finish(d, false);
    return;
  }
  uv_buf_t buf = uv_buf_init((char*) d->chunk->data, (unsigned) want);
  d->req.data = d;
  d->is_io_busy = true;
  if (uv_fs_read(d->loop, &d->req, d->fd, &buf, 1, (int64_t) d->offset,
                 on_read_chunk) != 0) {
    d->is_io_busy = false;
    finish(d, false);
  }
}


static void on_stream_drain(srv_stream_t* stream) {
  download_t* d = CORE_CONTAINER_OF(stream, download_t, stream);
  if (!d->is_io_busy && d->chunk == NULL) {
    read_next(d);
  }
}


static void on_stream_close(srv_stream_t* stream) {
  download_t* d = CORE_CONTAINER_OF(stream, download_t, stream);
  d->conn = NULL;
  if (!d->is_io_busy) {
    destroy(d);
  }
}


static void on_fstat(uv_fs_t* req) {
  download_t* d = req->data;
  int64_t result = req->result;
  uint64_t size = req->statbuf.st_size;
  uv_fs_req_cleanup(req);
  d->is_io_busy = false;
  if (d->conn == NULL) {
    destroy(d);
    return;
  }
  if (result < 0) {
    srv_http_reply_error(d->conn, &d->mode, 500, "internal",
                         "cannot read the artifact", NULL, true, NULL);
    finish(d, true);
    return;
  }
  d->size = size;
  srv_http_reply_head(d->conn, &d->mode, 200, d->content_type, size, NULL);
  if (d->conn != NULL) {
    read_next(d);
  }
}


static void on_open(uv_fs_t* req) {
  download_t* d = req->data;
  int64_t result = req->result;
  uv_fs_req_cleanup(req);
  d->is_io_busy = false;
  d->fd = result >= 0 ? (uv_file) result : -1;
  if (d->conn == NULL) {
    destroy(d);
    return;
  }
  if (result < 0) {
    srv_http_reply_error(
        d->conn, &d->mode, 404, d->missing_code, "the artifact file is missing",
        "it may have been removed from the state directory", false, NULL);
    finish(d, true);
    return;
  }
  d->req.data = d;
  d->is_io_busy = true;
  if (uv_fs_fstat(d->loop, &d->req, d->fd, on_fstat) != 0) {
    d->is_io_busy = false;
    finish(d, false);
  }
}


int srv_download_start(srv_conn_t* conn,
                       const srv_http_mode_t* mode,
                       const char* path,
                       const char* content_type,
                       const char* missing_code) {
  download_t* d = calloc(1, sizeof(*d));
  if (d == NULL) {
    return UV_ENOMEM;
  }
  d->stream.on_drain = on_stream_drain;
  d->stream.on_close = on_stream_close;
  d->conn = conn;
  d->mode = *mode;
  d->loop = conn->ctx->loop;
  d->fd = -1;
  d->content_type = content_type;
  d->missing_code = missing_code;
  d->req.data = d;
  int err =
      uv_fs_open(d->loop, &d->req, path, O_RDONLY | O_CLOEXEC, 0, on_open);
  if (err != 0) {
    free(d);
    return err;
  }
  d->is_io_busy = true;
  conn->stream = &d->stream;
  return 0;
}
