/* cmd_upload_body.c: the body of a PATCH (or of a POST with one), from the
 * socket to the disk: it streams through a srv_body_sink_t into the PATCH's
 * two buffers (upload_writer.c), written and hashed on the pool while the
 * socket is read into the other one; reading pauses (the sink answers 1)
 * only while both are in use. At the end the rest is fdatasync'ed, the
 * checksum compared, the offset committed, the completion waited for when
 * every byte is in, and only then the answer goes out (204, or 201 for a
 * creation). Header checks: cmd_upload_patch.c; creation: cmd_uploads.c.
 * Loop thread only. */
#include "server/cmd_upload_body.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/upload_concat.h"

/* The PATCH lets go of the upload's file: others may write it, and the
 * requests waiting for a settling PATCH go on. */
static void release_busy(srv_upload_req_t* p) {
  if (p->owns_busy) {
    p->owns_busy = false;
    srv_upload_release(p->u);
  }
}


void srv_upload_req_free(srv_upload_req_t* p) {
  srv_upload_settle_cancel(&p->settle);
  if (p->has_writer) {
    srv_upload_writer_free(&p->w); /* ended: nothing in flight */
  }
  free(p->held);
  EVP_MD_CTX_free(p->md);
  if (p->u != NULL) {
    release_busy(p);
    srv_upload_unref(p->u);
  }
  if (p->ticket != NULL) {
    srv_conn_t* conn = p->ticket->conn;
    srv_ticket_release(p->ticket);
    if (conn != NULL) {
      srv_conn_resume(conn);
    }
  }
  free(p);
}


void srv_upload_req_fail(srv_upload_req_t* p,
                         int status,
                         const char* code,
                         const char* msg) {
  if (p->err_status == 0) {
    p->err_status = status;
    snprintf(p->err_code, sizeof(p->err_code), "%s", code);
    snprintf(p->err_msg, sizeof(p->err_msg), "%s", msg);
  }
}


static srv_conn_t* answer_conn(const srv_upload_req_t* p) {
  return p->ticket != NULL ? p->ticket->conn : NULL;
}


/* snprintf at out + *n, keeping *n within cap. */
static void append(char* out, size_t cap, size_t* n, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char* out, size_t cap, size_t* n, const char* fmt, ...) {
  if (*n >= cap) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(out + *n, cap - *n, fmt, ap);
  va_end(ap);
  if (k < 0 || *n + (size_t) k >= cap) {
    *n = cap; /* cut: the assert below catches it */
  } else {
    *n += (size_t) k;
  }
}


void srv_tus_upload_headers(const srv_upload_t* u,
                            bool full,
                            char* out,
                            size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  append(out, cap, &n, SRV_TUS_HEADERS);
  /* Only what is committed: a state or an offset whose record is still
   * being written is not told (clients see durable state only). */
  srv_upload_state_t state = u->durable_state;
  /* A final has no offset until it is assembled (tus: "SHOULD NOT contain
   * the Upload-Offset header unless the concatenation has been successfully
   * finished"). */
  if (u->concat != SRV_CONCAT_FINAL || state == SRV_UPLOAD_COMPLETED) {
    append(out, cap, &n, "Upload-Offset: %llu\r\n",
           (unsigned long long) u->durable_offset);
  }
  if (full) {
    append(out, cap, &n, "Upload-Length: %llu\r\n",
           (unsigned long long) u->length);
    if (u->metadata[0] != '\0') {
      append(out, cap, &n, "Upload-Metadata: %s\r\n", u->metadata);
    }
  }
  if (u->concat != SRV_CONCAT_NONE) {
    char concat[SRV_TUS_CONCAT_MAX];
    srv_concat_header(u, concat, sizeof(concat));
    append(out, cap, &n, "Upload-Concat: %s\r\n", concat);
  }
  /* Partial uploads expire complete or not; others only while open. */
  if (u->concat == SRV_CONCAT_PARTIAL || state == SRV_UPLOAD_RECEIVING ||
      state == SRV_UPLOAD_COMPLETING) {
    char date[40];
    srv_http_date(u->expires_us, date);
    append(out, cap, &n, "Upload-Expires: %s\r\n", date);
  }
  if (state == SRV_UPLOAD_COMPLETED && u->volume_id[0] != '\0') {
    append(out, cap, &n, "CryoMamba-Volume-Id: %s\r\n", u->volume_id);
  }
  assert(n < cap); /* SRV_TUS_HEADERS_MAX holds the longest */
}


void srv_tus_reply_error(srv_conn_t* conn,
                         const srv_http_mode_t* mode,
                         int status,
                         const char* code,
                         const char* msg) {
  const char* extra = SRV_TUS_HEADERS;
  if (status == 412) {
    extra = SRV_TUS_HEADERS "Tus-Version: 1.0.0\r\n";
  }
  srv_http_reply_error(conn, mode, status, code, msg,
                       "see docs/protocol.md, Uploads",
                       status >= 500 && status != 507, extra);
}


/* The answer once everything is done (or failed); frees p. */
void srv_upload_req_answer(srv_upload_req_t* p) {
  if (p->is_waiting && p->err_status == 0 && srv_upload_is_completing(p->u)) {
    p->is_waiting = false;
    srv_upload_complete_wait(p->u, &p->waiter);
    return;
  }
  srv_conn_t* conn = answer_conn(p);
  if (conn != NULL) {
    if (p->err_status != 0) {
      srv_tus_reply_error(conn, &p->mode, p->err_status, p->err_code,
                          p->err_msg);
    } else {
      char headers[SRV_TUS_HEADERS_MAX + 64];
      srv_tus_upload_headers(p->u, false, headers, SRV_TUS_HEADERS_MAX);
      if (p->is_create) {
        size_t n = strlen(headers);
        snprintf(headers + n, sizeof(headers) - n,
                 "Location: /v1/uploads/%s\r\n", p->u->id);
      }
      srv_http_reply(conn, &p->mode, p->is_create ? 201 : 204,
                     "application/json", NULL, 0, headers);
    }
  }
  srv_upload_req_free(p);
}


static void on_completed(srv_upload_waiter_t* w, int status, const char* why) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(w, srv_upload_req_t, waiter);
  if (status == -ECANCELED) {
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "the upload was terminated");
  } else if (status != 0) {
    srv_upload_req_fail(
        p,
        status == -EINVAL   ? 422
        : status == -ENOSPC ? 507
                            : 500,
        status == -EINVAL   ? "invalid_volume"
        : status == -ENOSPC ? "insufficient_storage"
                            : "internal",
        why != NULL ? why : "the upload could not be completed");
  }
  srv_upload_req_answer(p);
}


/* The upload's bytes are all durable: its completion starts (unless it is
 * a part of a concatenation, complete as it is), and p answers after. */
static void maybe_complete(srv_upload_req_t* p) {
  srv_upload_t* u = p->u;
  if (u->concat == SRV_CONCAT_FINAL) {
    /* Its first record is durable: answered 201 now, assembled after
     * (HEAD shows when it is done), or complete at once by dedup. */
    if (!u->is_deleted && u->state == SRV_UPLOAD_COMPLETED) {
      srv_concat_consume(p->ctx, u);
    } else if (!u->is_deleted && u->state == SRV_UPLOAD_COMPLETING) {
      srv_upload_final_start(p->ctx, u);
    }
    srv_upload_req_answer(p);
    return;
  }
  if (u->state != SRV_UPLOAD_RECEIVING || u->offset != u->length ||
      u->is_deleted) {
    srv_upload_req_answer(p);
    return;
  }
  if (u->concat == SRV_CONCAT_PARTIAL) {
    u->state = SRV_UPLOAD_COMPLETED;
    srv_upload_save(p->ctx, u, NULL, NULL);
  } else if (u->concat == SRV_CONCAT_NONE) {
    if (srv_upload_complete_start(p->ctx, u) == 0) {
      srv_upload_complete_wait(u, &p->waiter);
      release_busy(p); /* it only waits now: HEAD need not */
      return;
    }
    srv_upload_req_fail(
        p, 503, "overloaded",
        "could not start the upload's validation; an empty PATCH at the end "
        "retries it");
  }
  srv_upload_req_answer(p);
}


void srv_upload_req_on_saved(void* arg, int status) {
  srv_upload_req_t* p = arg;
  if (status != 0 && p->u->is_deleted) {
    /* It waited for a termination that committed (srv_upload_save). */
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "the upload was terminated");
    srv_upload_req_answer(p);
    return;
  }
  if (status != 0) {
    srv_upload_req_fail(p, 503, "store_unavailable",
                        "the upload's offset could not be "
                        "recorded; HEAD tells what is durable");
    if (p->is_create && !p->u->is_committed) {
      srv_upload_drop_new(p->ctx, p->u); /* the client got no Location */
    } else if (!p->is_create) {
      p->u->offset = p->start; /* where HEAD says, and a resume starts */
    }
    srv_upload_req_answer(p);
    return;
  }
  p->u->is_committed = true;
  maybe_complete(p);
}


/* All bytes of this PATCH are on disk (fdatasync'ed): check the checksum,
 * then advance the offset and commit it. */
static void after_flush(srv_upload_req_t* p) {
  srv_upload_t* u = p->u;
  if (p->err_status != 0 || u->is_deleted) {
    if (u->is_deleted) {
      srv_upload_req_fail(p, 404, "upload_not_found",
                          "the upload was terminated");
    }
    srv_upload_req_answer(p);
    return;
  }
  if (p->md != NULL) {
    uint8_t got[EVP_MAX_MD_SIZE];
    unsigned got_len = 0;
    EVP_DigestFinal_ex(p->md, got, &got_len);
    if (got_len != p->want_len || memcmp(got, p->want, got_len) != 0) {
      srv_upload_req_fail(
          p, 460, "checksum_mismatch",
          "the body does not match Upload-Checksum; nothing of it was kept");
      srv_upload_req_answer(p);
      return;
    }
  }
  if (p->received == 0 && !p->is_create) {
    maybe_complete(p); /* nothing new: a completion that failed to start */
    return;
  }
  u->offset = p->start + p->received;
  int rc = srv_upload_save(p->ctx, u, srv_upload_req_on_saved, p);
  if (rc != 0) {
    u->offset = p->start;
    srv_upload_req_fail(p, 503, "overloaded", "out of memory");
    srv_upload_req_answer(p);
  }
}


static void fail_write(srv_upload_req_t* p, int status) {
  srv_upload_req_fail(p,
                      status == -ENOSPC   ? 507
                      : status == -ENOMEM ? 503
                                          : 500,
                      status == -ENOSPC   ? "insufficient_storage"
                      : status == -ENOMEM ? "overloaded"
                                          : "internal",
                      "the upload could not be written to disk");
}


static void on_unlinked(uv_fs_t* req) {
  uv_fs_req_cleanup(req);
  free(req);
}


/* The writer's end landed: every byte taken is on disk (when kept) and the
 * file is closed. */
static void on_writer_done(srv_upload_writer_t* w) {
  srv_upload_req_t* p = w->data;
  if (p->u->is_deleted && w->has_written) {
    /* Terminated while a write was queued: the DELETE's unlink may have
     * run before that write created the file again. No write follows
     * (none is queued once is_deleted is seen, and no PATCH starts on a
     * terminated upload), so this removal is the last word (without
     * memory, the start-up's orphan removal is). */
    uv_fs_t* req = malloc(sizeof(*req));
    if (req != NULL &&
        uv_fs_unlink(p->ctx->loop, req, w->io.path, on_unlinked) != 0) {
      free(req);
    }
  }
  if (!p->is_keeping) {
    srv_upload_req_answer(p);
    return;
  }
  if (w->status != 0) {
    fail_write(p, w->status);
    srv_upload_req_answer(p);
    return;
  }
  assert(w->written == p->received); /* all of it, in order */
  after_flush(p);
}


/* Both buffers were in use and one is free again: read on. */
static void on_writer_room(srv_upload_writer_t* w) {
  srv_upload_req_t* p = w->data;
  if (p->conn != NULL && !p->is_ended) {
    srv_conn_resume(p->conn);
  }
}


/* The body is over (complete, or the connection closed): flush and sync. */
void srv_upload_req_finish(srv_upload_req_t* p) {
  if (p->owns_busy) {
    /* What it keeps is known now, and durable within a write and a commit:
     * a HEAD or a resume waits for that rather than tell an older offset
     * or find the upload busy (srv_upload_settle_wait). */
    p->u->is_settling = true;
  }
  if (p->has_writer && p->err_status == 0 && p->u->is_deleted) {
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "the upload was terminated");
  }
  p->is_keeping = p->err_status == 0 && !p->is_discarding &&
                  !(p->is_aborted && p->md != NULL); /* no partial sums */
  if (!p->has_writer) {
    if (p->is_keeping) {
      after_flush(p);
    } else {
      srv_upload_req_answer(p);
    }
    return;
  }
  int rc = srv_upload_writer_end(&p->w, p->is_keeping);
  if (rc != SRV_UPLOAD_WRITER_PENDING) {
    on_writer_done(&p->w); /* nothing was in flight or left to write */
  }
}


static int sink_chunk(srv_body_sink_t* sink, const uint8_t* bytes, size_t len) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(sink, srv_upload_req_t, sink);
  if (p->is_answered) {
    return -1; /* refused and told: the connection ends */
  }
  if (p->is_parked) {
    /* Kept until the state checks can be made; reading waits. */
    uint8_t* grown = realloc(p->held, p->held_len + len);
    if (grown == NULL) {
      return -1;
    }
    memcpy(grown + p->held_len, bytes, len);
    p->held = grown;
    p->held_len += len;
    p->is_holding = true;
    return 1;
  }
  if (p->err_status != 0 || p->is_discarding) {
    return 0;
  }
  assert(p->has_writer);
  if (p->u->is_deleted) {
    /* Terminated meanwhile: nothing more goes to its file. */
    srv_upload_req_fail(p, 404, "upload_not_found",
                        "the upload was terminated");
    return 0;
  }
  if (p->w.status != 0) {
    fail_write(p, p->w.status); /* a write failed: the rest is dropped */
    return 0;
  }
  if (len > p->room - p->received) {
    srv_upload_req_fail(
        p, 413, "payload_too_large",
        "the body goes past Upload-Length (or the server's upload limit)");
    return 0;
  }
  p->received += len;
  int rc = srv_upload_writer_put(&p->w, bytes, len);
  return rc < 0 ? -1 : rc; /* 1: both buffers in use, on_writer_room */
}


static void sink_abort(srv_body_sink_t* sink) {
  srv_upload_req_t* p = CORE_CONTAINER_OF(sink, srv_upload_req_t, sink);
  if (p->is_parked) {
    srv_upload_req_free(p); /* it wrote nothing, and no one waits */
    return;
  }
  p->conn = NULL;
  p->is_aborted = true;
  srv_upload_req_finish(p); /* the writer lets what is in flight land */
}


void srv_upload_drop_new(srv_ctx_t* ctx, srv_upload_t* u) {
  srv_concat_release(ctx, u);
  srv_upload_remove(ctx, u, false, NULL, NULL);
}


void srv_upload_req_refuse_now(srv_upload_req_t* p, srv_conn_t* conn) {
  p->mode.keep_alive = false;
  srv_tus_reply_error(conn, &p->mode, p->err_status, p->err_code, p->err_msg);
  p->is_answered = true;
  if (p->is_create && p->u != NULL && !p->u->is_committed) {
    srv_upload_drop_new(p->ctx, p->u);
  }
  srv_conn_end(conn); /* then sink_abort frees p */
}


void srv_upload_req_unpark(srv_upload_req_t* p) {
  uint8_t* held = p->held;
  size_t held_len = p->held_len;
  bool was_holding = p->is_holding;
  p->held = NULL;
  p->held_len = 0;
  p->is_holding = false;
  int rc = held != NULL ? sink_chunk(&p->sink, held, held_len) : 0;
  free(held);
  if (rc < 0) {
    srv_upload_req_fail(p, 503, "overloaded", "the server is out of memory");
  }
  if (p->is_ended) {
    srv_upload_req_finish(p);
  } else if (rc < 0 && p->conn != NULL) {
    srv_upload_req_refuse_now(p, p->conn);
  } else if (rc == 1) {
    /* Both buffers in use: on_writer_room reads on. */
  } else if (was_holding && p->conn != NULL) {
    srv_conn_resume(p->conn);
  }
}


srv_upload_req_t* srv_upload_req_new(srv_request_t* rq) {
  srv_upload_req_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  core_list_init(&p->settle.link);
  p->sink.on_chunk = sink_chunk;
  p->sink.on_abort = sink_abort;
  p->waiter.cb = on_completed;
  p->ctx = rq->conn->ctx;
  p->conn = rq->conn;
  p->mode = rq->mode;
  return p;
}


/* Prepares to receive bytes for `u` at its offset. */
int srv_upload_req_start(srv_upload_req_t* p, srv_upload_t* u) {
  p->u = u;
  srv_upload_ref(u);
  u->is_busy = true;
  p->owns_busy = true;
  p->start = u->offset;
  uint64_t max = p->ctx->cfg.max_upload_bytes;
  uint64_t end = u->length < max ? u->length : max;
  p->room = end > u->offset ? end - u->offset : 0;
  char path[1200];
  srv_upload_path(p->ctx, u->id, path, sizeof(path));
  p->has_writer = true; /* freed with p, even if half made */
  if (srv_upload_writer_init(&p->w, p->ctx->loop, path, u->offset, p) != 0) {
    return -ENOMEM;
  }
  p->w.hash.sum = p->md;
  p->w.on_room = on_writer_room;
  p->w.on_done = on_writer_done;
  return 0;
}
