/* upload_writer.c: a PATCH's two buffers and the order of their writes and
 * hashes. See upload_writer.h. Every function runs on the loop; a buffer
 * is lent to the pool from the moment it is sealed until both its write
 * and its hash have landed, and is neither read nor written here then. */
#include "server/upload_writer.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUF SRV_UPLOAD_WRITER_BUF


int srv_upload_writer_init(srv_upload_writer_t* w,
                           uv_loop_t* loop,
                           const char* path,
                           uint64_t start,
                           void* data) {
  memset(w, 0, sizeof(*w));
  srv_upload_io_init(&w->io, path, w);
  w->hash.data = w;
  w->loop = loop;
  w->start = start;
  w->data = data;
  w->bufs[0] = malloc(BUF);
  w->bufs[1] = malloc(BUF);
  return w->bufs[0] != NULL && w->bufs[1] != NULL ? 0 : -ENOMEM;
}


void srv_upload_writer_free(srv_upload_writer_t* w) {
  assert(!srv_upload_writer_is_busy(w));
  assert(w->io.fd < 0); /* ended: the last write closed it */
  free(w->bufs[0]);
  free(w->bufs[1]);
  free(w->spill);
  w->bufs[0] = w->bufs[1] = w->spill = NULL;
}


bool srv_upload_writer_is_busy(const srv_upload_writer_t* w) {
  return w->io.is_busy || w->hash.is_busy;
}


static bool needs_hash(const srv_upload_writer_t* w) {
  return w->hash.sum != NULL;
}


/* Whether buffer number `seq` may be filled: the one before it in the
 * same memory (seq - 2) has been written and hashed. */
static bool is_free(const srv_upload_writer_t* w, uint64_t seq) {
  uint64_t landed = w->write_seq < w->hash_seq ? w->write_seq : w->hash_seq;
  return seq < landed + 2;
}


static void on_written(srv_upload_io_t* io);
static void on_hashed(srv_upload_hash_t* h);


static void fail(srv_upload_writer_t* w, int status) {
  if (w->status == 0) {
    w->status = status;
  }
}


/* Queues what can go to the pool now: the next sealed buffer's write (the
 * last one closes the file, and fdatasyncs it when kept), else at the end
 * a bare close, and the next sealed buffer's hash. */
static void submit_ready(srv_upload_writer_t* w) {
  /* Every byte taken is in a sealed buffer: none fills, none waits. */
  bool is_all_sealed = w->is_ending && !w->is_paused && w->fill_len == 0;
  if (!w->io.is_busy && !w->is_closed) {
    srv_upload_io_t* io = &w->io;
    if (w->status == 0 && w->write_seq < w->fill_seq) {
      assert(w->write_seq + 2 >= w->fill_seq); /* two buffers at most */
      bool is_last = is_all_sealed && w->write_seq + 1 == w->fill_seq;
      io->buf = w->bufs[w->write_seq & 1];
      io->len = w->lens[w->write_seq & 1];
      io->off = w->start + w->write_seq * BUF;
      io->sync = is_last && w->is_syncing;
      io->close_after = is_last;
      assert(io->off == w->start + w->written); /* in order, no gap */
      int rc = srv_upload_io_submit(w->loop, io, on_written);
      if (rc != 0) {
        fail(w, rc);
      } else {
        w->has_written = true;
        w->is_closed = is_last;
      }
    }
    if (!io->is_busy && w->is_ending &&
        (w->status != 0 || (is_all_sealed && w->write_seq == w->fill_seq))) {
      /* Nothing more to write: close what is open (the fd is read only
       * with no write in flight), fdatasync'ing kept bytes. */
      w->is_closed = true;
      if (io->fd >= 0) {
        io->buf = NULL;
        io->len = 0;
        io->sync = w->is_syncing && w->status == 0;
        io->close_after = true;
        int rc = srv_upload_io_submit(w->loop, io, on_written);
        assert(rc == 0); /* uv_queue_work fails only on a NULL work_cb */
        (void) rc;
      }
    }
  }
  if (!needs_hash(w)) {
    w->hash_seq = w->fill_seq; /* nothing to feed: hashed as sealed */
  } else if (!w->hash.is_busy && w->status == 0 && w->hash_seq < w->fill_seq) {
    w->hash.buf = w->bufs[w->hash_seq & 1];
    w->hash.len = w->lens[w->hash_seq & 1];
    int rc = srv_upload_hash_submit(w->loop, &w->hash, on_hashed);
    if (rc != 0) {
      fail(w, rc);
    }
  }
}


/* The filling buffer is complete (full, or the last): lent to the pool. */
static void seal(srv_upload_writer_t* w) {
  assert(w->fill_len == BUF || (w->is_ending && w->fill_len > 0));
  assert(is_free(w, w->fill_seq));
  w->lens[w->fill_seq & 1] = w->fill_len;
  w->fill_seq++;
  w->fill_len = 0;
  submit_ready(w);
}


/* Copies from `bytes` into the buffers while one is free; returns how many
 * it took. */
static size_t take(srv_upload_writer_t* w, const uint8_t* bytes, size_t len) {
  size_t taken = 0;
  while (taken < len && is_free(w, w->fill_seq)) {
    size_t room = BUF - w->fill_len;
    size_t fit = len - taken < room ? len - taken : room;
    memcpy(w->bufs[w->fill_seq & 1] + w->fill_len, bytes + taken, fit);
    w->fill_len += fit;
    taken += fit;
    if (w->fill_len == BUF) {
      seal(w);
    }
  }
  return taken;
}


int srv_upload_writer_put(srv_upload_writer_t* w,
                          const uint8_t* bytes,
                          size_t len) {
  assert(!w->is_ending && !w->is_paused && w->spill == NULL);
  if (w->status != 0) {
    return 0; /* failed: the caller answers w->status at the end */
  }
  size_t taken = take(w, bytes, len);
  if (taken == len) {
    return 0;
  }
  w->spill = malloc(len - taken);
  if (w->spill == NULL) {
    fail(w, -ENOMEM);
    return -ENOMEM;
  }
  memcpy(w->spill, bytes + taken, len - taken);
  w->spill_len = len - taken;
  w->is_paused = true;
  return 1;
}


/* Whether the end has nothing left in flight or to queue. */
static bool is_finished(const srv_upload_writer_t* w) {
  return w->is_ending && w->is_closed && !srv_upload_writer_is_busy(w);
}


int srv_upload_writer_end(srv_upload_writer_t* w, bool keep) {
  assert(!w->is_ending);
  w->is_ending = true;
  w->is_syncing = keep;
  if (!keep) {
    fail(w, -ECANCELED);
  }
  if (w->status != 0) {
    free(w->spill); /* dropped, and so is what was not written yet */
    w->spill = NULL;
    w->spill_len = 0;
    w->is_paused = false;
  }
  if (!w->is_paused && w->status == 0 && w->fill_len > 0) {
    seal(w); /* the last, short buffer */
  }
  /* While paused the spill waits for a buffer (after_landing). */
  submit_ready(w);
  return is_finished(w) ? w->status : SRV_UPLOAD_WRITER_PENDING;
}


/* A write or a hash landed: queue what waited for it, move the spill into
 * the buffer that became free, then tell the caller (last: a callback may
 * put, end, or free w's owner). */
static void after_landing(srv_upload_writer_t* w) {
  submit_ready(w);
  bool has_room = false;
  if (w->is_paused && w->status != 0) {
    free(w->spill); /* the caller learns of the failure at its end */
    w->spill = NULL;
    w->spill_len = 0;
    w->is_paused = false;
    has_room = true;
  } else if (w->is_paused) {
    size_t n = take(w, w->spill, w->spill_len);
    w->spill_len -= n;
    memmove(w->spill, w->spill + n, w->spill_len);
    if (w->spill_len == 0) {
      free(w->spill);
      w->spill = NULL;
      w->is_paused = false;
      has_room = true;
    }
  }
  if (w->is_ending && !w->is_paused && w->status == 0 && w->fill_len > 0) {
    seal(w); /* the end waited for the spill */
  }
  submit_ready(w);
  if (is_finished(w)) {
    w->on_done(w);
  } else if (has_room && !w->is_ending) {
    w->on_room(w);
  }
}


static void on_written(srv_upload_io_t* io) {
  srv_upload_writer_t* w = io->data;
  if (io->status != 0) {
    fail(w, io->status);
  } else if (io->len > 0) {
    w->written += io->len;
  }
  if (io->len > 0) {
    w->write_seq++; /* landed, kept or not: its memory is free */
  }
  after_landing(w);
}


static void on_hashed(srv_upload_hash_t* h) {
  srv_upload_writer_t* w = h->data;
  if (h->status != 0) {
    fail(w, h->status);
  }
  w->hash_seq++;
  after_landing(w);
}
