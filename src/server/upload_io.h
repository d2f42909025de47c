/* upload_io.h: the pool side of a PATCH, driven by upload_writer.c: a write
 * (open or create the upload's file, pwrite a buffer at an offset and start
 * its writeback, fdatasync, close) and a hash (feed a buffer to the PATCH's
 * Upload-Checksum digest). One
 * operation of each kind at a time per PATCH; the loop touches neither the
 * buffer, the fd nor the digests until the operation's callback. */
#ifndef SRV_UPLOAD_IO_H
#define SRV_UPLOAD_IO_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct srv_upload_io_s srv_upload_io_t;

/* The operation's outcome, on the loop thread: io->status is 0 or -errno. */
typedef void (*srv_upload_io_cb)(srv_upload_io_t* io);

struct srv_upload_io_s {
  uv_work_t req;
  char path[1200];    /* the file; opened (created) when fd is -1 */
  int fd;             /* kept open between operations; -1 before */
  const uint8_t* buf; /* borrowed until the callback; len may be 0 */
  size_t len;
  uint64_t off;     /* where buf goes in the file */
  bool sync;        /* fdatasync after the write */
  bool close_after; /* close the fd after the rest */
  bool is_busy;     /* an operation is in flight */
  int status;
  srv_upload_io_cb cb;
  void* data; /* the caller's */
};

typedef struct srv_upload_hash_s srv_upload_hash_t;

/* A hash's outcome, on the loop thread: h->status is 0 or -ENOMEM. */
typedef void (*srv_upload_hash_cb)(srv_upload_hash_t* h);

struct srv_upload_hash_s {
  uv_work_t req;
  const uint8_t* buf; /* borrowed until the callback */
  size_t len;
  EVP_MD_CTX* sum; /* Upload-Checksum's digest (borrowed) */
  bool is_busy;
  int status;
  srv_upload_hash_cb cb;
  void* data; /* the caller's */
};

/* Prepares `io` for the file at `path` (not opened yet). */
void srv_upload_io_init(srv_upload_io_t* io, const char* path, void* data);

/* Runs the write described by buf/len/off/sync/close_after on the pool; cb
 * runs on the loop. Returns 0 or a libuv error (cb then does not run). */
int srv_upload_io_submit(uv_loop_t* loop,
                         srv_upload_io_t* io,
                         srv_upload_io_cb cb);

/* Feeds buf/len to h->sum on the pool; cb runs on the loop. Returns 0 or a
 * libuv error (cb then does not run). */
int srv_upload_hash_submit(uv_loop_t* loop,
                           srv_upload_hash_t* h,
                           srv_upload_hash_cb cb);

#endif
