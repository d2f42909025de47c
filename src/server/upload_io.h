/* upload_io.h: the disk side of an upload, on libuv's worker pool: open (or
 * create) its file, write a buffer at an offset while feeding the PATCH's
 * checksum, fdatasync, close. One operation at a time per srv_upload_io_t;
 * the loop touches neither the buffer nor the digest until the callback. */
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
  EVP_MD_CTX* md;   /* updated with buf when not NULL (borrowed) */
  bool sync;        /* fdatasync after the write */
  bool close_after; /* close the fd after the rest */
  bool is_busy;     /* an operation is in flight */
  int status;
  srv_upload_io_cb cb;
  void* data; /* the caller's */
};

/* Prepares `io` for the file at `path` (not opened yet). */
void srv_upload_io_init(srv_upload_io_t* io, const char* path, void* data);

/* Runs the operation described by buf/len/off/md/sync/close_after on the
 * pool; cb runs on the loop. Returns 0 or a libuv error (cb then does not
 * run). */
int srv_upload_io_submit(uv_loop_t* loop,
                         srv_upload_io_t* io,
                         srv_upload_io_cb cb);

#endif
