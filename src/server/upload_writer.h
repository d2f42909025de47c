/* upload_writer.h: a PATCH's bytes on their way into the upload's file.
 * Two buffers of SRV_UPLOAD_WRITER_BUF bytes take the body in turn: while
 * the pool writes and hashes one (upload_io.c), the socket is read into the
 * other, and reading pauses only while both are full. Buffers are written
 * in the body's order, one write at a time, and hashed in that order, one
 * hash at a time (a write and a hash of the same buffer may run at once:
 * both only read it); the end fdatasyncs and closes. The caller
 * (cmd_upload_body.c) decides what to keep; this file only moves bytes.
 * Loop thread only. */
#ifndef SRV_UPLOAD_WRITER_H
#define SRV_UPLOAD_WRITER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/upload_io.h"

#define SRV_UPLOAD_WRITER_BUF (1u << 20)

/* srv_upload_writer_end's answer when on_done will run. */
#define SRV_UPLOAD_WRITER_PENDING 1

typedef struct srv_upload_writer_s srv_upload_writer_t;

/* on_room: a put() that answered 1 is taken in full, reading may go on.
 * on_done: the end is complete, w->status is its outcome. Loop thread. */
typedef void (*srv_upload_writer_cb)(srv_upload_writer_t* w);

/* Buffer number s (0, 1, ...) holds the body's bytes from s * BUF on, in
 * bufs[s & 1]. Numbers below fill_seq are sealed (full, or the last one);
 * below write_seq (hash_seq) their write (hash) has landed, and number
 * write_seq (hash_seq) is in flight when io.is_busy (hash.is_busy). The
 * loop fills number fill_seq only once number fill_seq - 2, which used the
 * same memory, has landed both. */
struct srv_upload_writer_s {
  uv_loop_t* loop;
  uint8_t* bufs[2]; /* SRV_UPLOAD_WRITER_BUF each; malloc'd at init, owned;
                       lent to the pool from seal to landing */
  size_t lens[2];   /* of each sealed buffer */
  size_t fill_len;  /* bytes in bufs[fill_seq & 1] */
  uint64_t fill_seq;
  uint64_t write_seq;
  uint64_t hash_seq;
  uint8_t* spill; /* a piece's tail that came while both buffers were
                     in use (malloc'd, owned); only while is_paused */
  size_t spill_len;
  bool is_paused;   /* put() answered 1: on_room runs once spill is in */
  bool is_ending;   /* srv_upload_writer_end() ran: nothing more comes */
  bool is_syncing;  /* ... and the last write fdatasyncs (kept bytes) */
  bool is_closed;   /* the last write (the one that closes) was queued */
  bool has_written; /* a write was queued: the file may have been created */
  int status;       /* the first failure (-errno), -ECANCELED once dropped */
  uint64_t start;   /* the file offset of the body's first byte */
  uint64_t written; /* bytes whose write landed */
  srv_upload_io_t io;
  srv_upload_hash_t hash; /* hash.sum: set before put(), or NULL */
  srv_upload_writer_cb on_room;
  srv_upload_writer_cb on_done;
  void* data; /* the caller's */
};

/* Prepares `w` to write the file at `path` from offset `start` (the file
 * is opened by the first write, created if missing). Returns 0 or
 * -ENOMEM (then srv_upload_writer_free is still safe). */
int srv_upload_writer_init(srv_upload_writer_t* w,
                           uv_loop_t* loop,
                           const char* path,
                           uint64_t start,
                           void* data);

/* Takes `len` bytes (borrowed for the call). Returns 0, 1 (taken, but both
 * buffers are in use: read nothing more until on_room) or -ENOMEM. After a
 * failure (w->status) bytes are dropped. Not after end, not while paused. */
int srv_upload_writer_put(srv_upload_writer_t* w,
                          const uint8_t* bytes,
                          size_t len);

/* Nothing more comes. With `keep` every byte taken is written and the file
 * fdatasync'ed; without, what is not written yet is dropped. Either way the
 * file ends closed. Returns SRV_UPLOAD_WRITER_PENDING (on_done will run) or,
 * when nothing was left to do, w->status (on_done does not run). */
int srv_upload_writer_end(srv_upload_writer_t* w, bool keep);

/* Whether an operation is in flight (then `w` must not be freed). */
bool srv_upload_writer_is_busy(const srv_upload_writer_t* w);

/* Frees the buffers; `w` ended (or never took a byte), nothing in flight.
 * Safe on a zeroed or failed-init writer. */
void srv_upload_writer_free(srv_upload_writer_t* w);

#endif
