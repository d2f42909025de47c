/* cmd_uploads.c: the tus 1.0.0 routes under /v1/uploads (docs/protocol.md,
 * "Uploads"): OPTIONS, POST (creation, creation-with-upload), HEAD, PATCH
 * (checksum), DELETE (termination). A PATCH body streams through a
 * srv_body_sink_t into a 1 MiB buffer written by upload_io.c on the pool;
 * reading pauses while a write is in flight. The new offset is
 * acknowledged (204) only after fdatasync and the commit of the upload's
 * record. Loop thread only. */
#include "server/cmd_uploads.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "server/upload_complete.h"
#include "server/upload_io.h"
#include "server/volumes.h"

#define BUF_CAP (1u << 20)
#define TUS_HEADERS "Tus-Resumable: 1.0.0\r\n"

typedef struct {
  srv_body_sink_t sink;
  srv_ctx_t* ctx;
  srv_conn_t* conn;     /* while the body streams; NULL once it closed */
  srv_ticket_t* ticket; /* for the answer, from the end of the body */
  srv_http_mode_t mode;
  srv_upload_t* u; /* a reference */
  bool owns_busy;  /* set u->is_busy: clears it when done */
  bool is_waiting; /* answers once u's completion has its outcome */
  srv_upload_waiter_t waiter;
  bool is_create;     /* POST with a body: answer 201 */
  bool is_ended;      /* the request is complete */
  bool is_aborted;    /* the connection closed first */
  bool is_discarding; /* the body is not kept (dedup) */
  int err_status;     /* an error to answer once the body is read */
  char err_code[32];
  char err_msg[200];
  uint64_t start;    /* the upload's offset when this PATCH began */
  uint64_t room;     /* bytes the upload may still take */
  uint64_t received; /* accepted body bytes */
  uint64_t written;  /* bytes handed to the disk */
  uint8_t* buf;      /* BUF_CAP bytes, malloc'd, owned here */
  size_t buf_len;
  uint8_t* spill; /* a chunk's tail that did not fit (malloc'd) */
  size_t spill_len;
  srv_upload_io_t io;
  EVP_MD_CTX* md; /* the Upload-Checksum digest, or NULL */
  uint8_t want[64];
  size_t want_len;
} patch_t;

static void patch_free(patch_t* p) {
  free(p->buf);
  free(p->spill);
  EVP_MD_CTX_free(p->md);
  if (p->u != NULL) {
    if (p->owns_busy) {
      p->u->is_busy = false;
    }
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


static void fail(patch_t* p, int status, const char* code, const char* msg) {
  if (p->err_status == 0) {
    p->err_status = status;
    snprintf(p->err_code, sizeof(p->err_code), "%s", code);
    snprintf(p->err_msg, sizeof(p->err_msg), "%s", msg);
  }
}


static srv_conn_t* answer_conn(const patch_t* p) {
  return p->ticket != NULL ? p->ticket->conn : NULL;
}


/* Upload-Offset / Upload-Expires / Location lines for `u`. */
static void upload_headers(const srv_upload_t* u,
                           bool with_location,
                           char* out,
                           size_t cap) {
  char date[40];
  srv_http_date(u->expires_us, date);
  int n = snprintf(out, cap, TUS_HEADERS "Upload-Offset: %llu\r\n",
                   (unsigned long long) u->offset);
  if (u->state != SRV_UPLOAD_COMPLETED) {
    n += snprintf(out + n, cap - (size_t) n, "Upload-Expires: %s\r\n", date);
  } else if (u->volume_id[0] != '\0') {
    n += snprintf(out + n, cap - (size_t) n, "CryoMamba-Volume-Id: %s\r\n",
                  u->volume_id);
  }
  if (with_location) {
    snprintf(out + n, cap - (size_t) n, "Location: /v1/uploads/%s\r\n", u->id);
  }
}


static void reply_error(srv_conn_t* conn,
                        const srv_http_mode_t* mode,
                        int status,
                        const char* code,
                        const char* msg) {
  const char* extra = TUS_HEADERS;
  if (status == 412) {
    extra = TUS_HEADERS "Tus-Version: 1.0.0\r\n";
  }
  srv_http_reply_error(conn, mode, status, code, msg,
                       "see docs/protocol.md, Uploads",
                       status >= 500 && status != 507, extra);
}


/* The answer once everything is done (or failed); frees p. */
static void patch_answer(patch_t* p) {
  if (p->is_waiting && p->err_status == 0 &&
      p->u->state == SRV_UPLOAD_COMPLETING) {
    p->is_waiting = false;
    srv_upload_complete_wait(p->u, &p->waiter);
    return;
  }
  srv_conn_t* conn = answer_conn(p);
  if (conn != NULL) {
    if (p->err_status != 0) {
      reply_error(conn, &p->mode, p->err_status, p->err_code, p->err_msg);
    } else {
      char headers[512];
      upload_headers(p->u, p->is_create, headers, sizeof(headers));
      srv_http_reply(conn, &p->mode, p->is_create ? 201 : 204,
                     "application/json", NULL, 0, headers);
    }
  }
  patch_free(p);
}


static void on_completed(srv_upload_waiter_t* w, int status, const char* why) {
  patch_t* p = CORE_CONTAINER_OF(w, patch_t, waiter);
  if (status != 0) {
    fail(p, status == -EINVAL ? 422 : 500,
         status == -EINVAL ? "invalid_volume" : "internal",
         why != NULL ? why : "the upload could not be completed");
  }
  patch_answer(p);
}


/* The upload's bytes are all durable: its completion starts (unless it is
 * a part of a concatenation, complete as it is), and p answers after. */
static void maybe_complete(patch_t* p) {
  srv_upload_t* u = p->u;
  if (u->state != SRV_UPLOAD_RECEIVING || u->offset != u->length ||
      u->is_deleted) {
    patch_answer(p);
    return;
  }
  if (u->concat == SRV_CONCAT_PARTIAL) {
    u->state = SRV_UPLOAD_COMPLETED;
    srv_upload_save(p->ctx, u, NULL, NULL);
  } else if (u->concat == SRV_CONCAT_NONE) {
    if (srv_upload_complete_start(p->ctx, u) == 0) {
      srv_upload_complete_wait(u, &p->waiter);
      return;
    }
    fail(p, 503, "overloaded",
         "could not start the upload's validation; an empty PATCH at the end "
         "retries it");
  }
  patch_answer(p);
}


static void on_saved(void* arg, int status) {
  patch_t* p = arg;
  if (status != 0) {
    fail(p, 503, "store_unavailable",
         "the upload's offset could not be "
         "recorded; HEAD tells what is durable");
    patch_answer(p);
    return;
  }
  p->u->is_committed = true;
  maybe_complete(p);
}


/* All bytes of this PATCH are on disk (fdatasync'ed): check the checksum,
 * then advance the offset and commit it. */
static void after_flush(patch_t* p) {
  srv_upload_t* u = p->u;
  if (p->err_status != 0 || u->is_deleted) {
    if (u->is_deleted) {
      fail(p, 404, "upload_not_found", "the upload was terminated");
    }
    patch_answer(p);
    return;
  }
  if (p->md != NULL) {
    uint8_t got[EVP_MAX_MD_SIZE];
    unsigned got_len = 0;
    EVP_DigestFinal_ex(p->md, got, &got_len);
    if (got_len != p->want_len || memcmp(got, p->want, got_len) != 0) {
      fail(p, 460, "checksum_mismatch",
           "the body does not match Upload-Checksum; nothing of it was kept");
      patch_answer(p);
      return;
    }
  }
  if (p->received == 0 && !p->is_create) {
    maybe_complete(p); /* nothing new: a completion that failed to start */
    return;
  }
  u->offset = p->start + p->received;
  int rc = srv_upload_save(p->ctx, u, on_saved, p);
  if (rc != 0) {
    u->offset = p->start;
    fail(p, 503, "overloaded", "out of memory");
    patch_answer(p);
  }
}


static void on_written(srv_upload_io_t* io);


static int submit(patch_t* p, bool last) {
  p->io.buf = p->buf;
  p->io.len = p->buf_len;
  p->io.off = p->start + p->written;
  p->io.md = p->md;
  p->io.sync = last;
  p->io.close_after = last;
  return srv_upload_io_submit(p->ctx->loop, &p->io, on_written);
}


/* The body is over (complete, or the connection closed): flush and sync. */
static void finish(patch_t* p) {
  bool keep = p->err_status == 0 && !p->is_discarding &&
              !(p->is_aborted && p->md != NULL); /* no partial checksums */
  if (!keep || (p->received == 0 && p->io.fd < 0)) {
    if (keep) {
      after_flush(p);
    } else {
      patch_answer(p);
    }
    return;
  }
  if (submit(p, true) != 0) {
    fail(p, 503, "overloaded", "could not write the upload");
    patch_answer(p);
  }
}


static void on_written(srv_upload_io_t* io) {
  patch_t* p = io->data;
  if (io->status != 0) {
    fail(p, io->status == -ENOSPC ? 507 : 500,
         io->status == -ENOSPC ? "insufficient_storage" : "internal",
         "the upload could not be written to disk");
    if (io->close_after || io->fd < 0) {
      patch_answer(p);
      return;
    }
  }
  p->written += io->len;
  p->buf_len = 0;
  if (p->spill != NULL) {
    memcpy(p->buf, p->spill, p->spill_len);
    p->buf_len = p->spill_len;
    free(p->spill);
    p->spill = NULL;
    p->spill_len = 0;
  }
  if (io->close_after) {
    after_flush(p);
  } else if (p->is_aborted || p->is_ended) {
    finish(p);
  } else if (p->conn != NULL) {
    srv_conn_resume(p->conn);
  }
}


static int sink_chunk(srv_body_sink_t* sink, const uint8_t* bytes, size_t len) {
  patch_t* p = CORE_CONTAINER_OF(sink, patch_t, sink);
  if (p->err_status != 0 || p->is_discarding) {
    return 0;
  }
  if (len > p->room - p->received) {
    fail(p, 413, "payload_too_large",
         "the body goes past Upload-Length (or the server's upload limit)");
    return 0;
  }
  p->received += len;
  size_t fit = BUF_CAP - p->buf_len < len ? BUF_CAP - p->buf_len : len;
  memcpy(p->buf + p->buf_len, bytes, fit);
  p->buf_len += fit;
  if (fit < len) {
    p->spill = malloc(len - fit);
    if (p->spill == NULL) {
      return -1;
    }
    memcpy(p->spill, bytes + fit, len - fit);
    p->spill_len = len - fit;
  }
  if (p->buf_len < BUF_CAP) {
    return 0;
  }
  if (submit(p, false) != 0) {
    return -1;
  }
  return 1; /* reading waits for the write */
}


static void sink_abort(srv_body_sink_t* sink) {
  patch_t* p = CORE_CONTAINER_OF(sink, patch_t, sink);
  p->conn = NULL;
  p->is_aborted = true;
  if (!p->io.is_busy) {
    finish(p);
  }
}


/* ---- header checks ---- */

static bool parse_u64(const char* s, uint64_t* out) {
  if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 19) {
    return false;
  }
  char* end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0') {
    return false;
  }
  *out = v;
  return true;
}


bool srv_cmd_tus_version_ok(srv_request_t* rq) {
  const char* v = net_http_header(rq->http, "Tus-Resumable");
  if (v != NULL && strcmp(v, "1.0.0") == 0) {
    return true;
  }
  reply_error(rq->conn, &rq->mode, 412, "unsupported_tus_version",
              "send Tus-Resumable: 1.0.0");
  return false;
}


static bool is_octet_stream(const net_http_reader_t* r) {
  const char* ct = net_http_header(r, "Content-Type");
  return ct != NULL &&
         strncasecmp(ct, "application/offset+octet-stream", 31) == 0 &&
         (ct[31] == '\0' || ct[31] == ';' || ct[31] == ' ');
}


/* Upload-Checksum: "<algorithm> <base64>". */
static int parse_checksum(patch_t* p, const char* v) {
  const EVP_MD* type = NULL;
  size_t want = 0;
  if (strncmp(v, "sha1 ", 5) == 0) {
    type = EVP_sha1();
    want = 20;
    v += 5;
  } else if (strncmp(v, "sha256 ", 7) == 0) {
    type = EVP_sha256();
    want = 32;
    v += 7;
  } else {
    fail(p, 400, "unsupported_checksum",
         "Upload-Checksum algorithm must be sha1 or sha256");
    return -1;
  }
  uint8_t d[64];
  size_t n = strlen(v);
  size_t got = 0;
  if (core_base64_decoded_max(n) > sizeof(d) ||
      core_base64_decode(v, n, d, &got) != 0 || got != want) {
    fail(
        p, 400, "invalid_checksum",
        "Upload-Checksum must be the algorithm, a space and the base64 digest");
    return -1;
  }
  p->md = EVP_MD_CTX_new();
  if (p->md == NULL || EVP_DigestInit_ex(p->md, type, NULL) != 1) {
    return -ENOMEM;
  }
  memcpy(p->want, d, got);
  p->want_len = got;
  return 0;
}


static patch_t* patch_new(srv_request_t* rq) {
  patch_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->sink.on_chunk = sink_chunk;
  p->sink.on_abort = sink_abort;
  p->waiter.cb = on_completed;
  p->ctx = rq->conn->ctx;
  p->conn = rq->conn;
  p->mode = rq->mode;
  return p;
}


/* Prepares to receive bytes for `u` at its offset. */
static int patch_start(patch_t* p, srv_upload_t* u) {
  p->u = u;
  srv_upload_ref(u);
  u->is_busy = true;
  p->owns_busy = true;
  p->start = u->offset;
  uint64_t max = p->ctx->cfg.max_upload_bytes;
  uint64_t end = u->length < max ? u->length : max;
  p->room = end > u->offset ? end - u->offset : 0;
  p->buf = malloc(BUF_CAP);
  if (p->buf == NULL) {
    return -ENOMEM;
  }
  char path[1200];
  srv_upload_path(p->ctx, u->id, path, sizeof(path));
  srv_upload_io_init(&p->io, path, p);
  return 0;
}


/* A PATCH's headers: every check that can be made before the body. */
static void patch_check(patch_t* p, srv_request_t* rq, srv_upload_t* u) {
  const net_http_reader_t* r = rq->http;
  const char* v = net_http_header(r, "Tus-Resumable");
  uint64_t offset = 0;
  uint64_t length = 0;
  if (v == NULL || strcmp(v, "1.0.0") != 0) {
    fail(p, 412, "unsupported_tus_version", "send Tus-Resumable: 1.0.0");
  } else if (u == NULL) {
    fail(p, 404, "upload_not_found",
         "no upload has this id (it may have "
         "expired or been terminated)");
  } else if (u->concat == SRV_CONCAT_FINAL) {
    fail(p, 403, "forbidden", "a final upload takes no PATCH");
  } else if (!is_octet_stream(r)) {
    fail(p, 415, "unsupported_media_type",
         "PATCH needs Content-Type: application/offset+octet-stream");
  } else if (!parse_u64(net_http_header(r, "Upload-Offset"), &offset)) {
    fail(p, 400, "invalid_offset", "Upload-Offset must be an integer");
  } else if (u->state == SRV_UPLOAD_COMPLETING && offset == u->length) {
    p->u = u; /* an empty PATCH at the end: answers after the completion */
    srv_upload_ref(u);
    p->is_discarding = true;
    p->is_waiting = true;
  } else if (u->is_busy) {
    fail(p, 409, "upload_busy", "another PATCH is writing this upload");
  } else if (offset != u->offset) {
    char msg[128];
    snprintf(msg, sizeof(msg), "Upload-Offset is %llu; the upload is at %llu",
             (unsigned long long) offset, (unsigned long long) u->offset);
    fail(p, 409, "offset_mismatch", msg);
  } else if (net_http_header(r, "Upload-Length") != NULL &&
             (!parse_u64(net_http_header(r, "Upload-Length"), &length) ||
              length != u->length)) {
    fail(p, 400, "length_changed", "Upload-Length cannot change");
  } else if (net_http_header(r, "Upload-Checksum") != NULL &&
             parse_checksum(p, net_http_header(r, "Upload-Checksum")) != 0) {
    fail(p, 400, "invalid_checksum", "Upload-Checksum is not valid");
  } else if (u->state != SRV_UPLOAD_RECEIVING) {
    p->u = u; /* complete already: only an empty PATCH fits */
    srv_upload_ref(u);
    p->is_discarding = true;
  } else if (patch_start(p, u) != 0) {
    fail(p, 503, "overloaded", "the server is out of memory");
  }
}


/* ---- creation ---- */

/* Checks a POST's headers and builds its upload (registered, not yet
 * committed). Returns NULL after fail(). */
static srv_upload_t* create_upload(patch_t* p, srv_request_t* rq) {
  const net_http_reader_t* r = rq->http;
  srv_ctx_t* ctx = p->ctx;
  const srv_config_t* c = &ctx->cfg;
  const char* v = net_http_header(r, "Tus-Resumable");
  uint64_t length = 0;
  if (v == NULL || strcmp(v, "1.0.0") != 0) {
    fail(p, 412, "unsupported_tus_version", "send Tus-Resumable: 1.0.0");
    return NULL;
  }
  if (net_http_header(r, "Upload-Concat") != NULL) {
    fail(p, 400, "unsupported", "Upload-Concat is not supported yet");
    return NULL;
  }
  if (!parse_u64(net_http_header(r, "Upload-Length"), &length)) {
    fail(p, 400, "invalid_length",
         net_http_header(r, "Upload-Defer-Length") != NULL
             ? "Upload-Defer-Length is not supported: send Upload-Length"
             : "Upload-Length must be a non-negative integer");
    return NULL;
  }
  if (length > c->max_upload_bytes) {
    fail(p, 413, "payload_too_large",
         "Upload-Length is over Tus-Max-Size (limits.max_upload_bytes)");
    return NULL;
  }
  char token[17] = "";
  const char* auth = net_http_header(r, "Authorization");
  if (ctx->auth.count > 0 && auth != NULL) {
    unsigned char d[32];
    unsigned dlen = 0;
    EVP_Digest(auth, strlen(auth), d, &dlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++) {
      snprintf(token + 2 * i, 3, "%02x", d[i]);
    }
  }
  if (c->max_uploads_per_token > 0 && ctx->auth.count > 0 &&
      srv_uploads_count_token(ctx, token) >= c->max_uploads_per_token) {
    fail(p, 429, "too_many_uploads",
         "this token has as many incomplete uploads as the server allows "
         "(limits.max_uploads_per_token)");
    return NULL;
  }
  if (c->max_uploads_per_ip > 0 &&
      srv_uploads_count_ip(ctx, rq->conn->peer_ip) >= c->max_uploads_per_ip) {
    fail(p, 429, "too_many_uploads",
         "this address has as many incomplete uploads as the server allows "
         "(limits.max_uploads_per_ip)");
    return NULL;
  }
  srv_upload_t* u = srv_upload_new(ctx);
  if (u == NULL) {
    fail(p, 503, "overloaded", "the server is out of memory");
    return NULL;
  }
  u->length = length;
  snprintf(u->owner_ip, sizeof(u->owner_ip), "%s", rq->conn->peer_ip);
  memcpy(u->owner_token, token, sizeof(token));
  char err[160];
  v = net_http_header(r, "Upload-Metadata");
  if (v != NULL && srv_upload_parse_metadata(u, v, err, sizeof(err)) != 0) {
    fail(p, 400, "invalid_metadata", err);
    srv_upload_unref(u);
    return NULL;
  }
  srv_volume_t* same = srv_volume_find_sha(ctx, u->sha256);
  if (same != NULL) {
    /* Dedup: these bytes are stored already; nothing needs to be sent. */
    u->state = SRV_UPLOAD_COMPLETED;
    u->offset = length;
    memcpy(u->volume_id, same->id, sizeof(u->volume_id));
  } else if (c->storage_quota_bytes > 0 &&
             srv_storage_used_bytes(ctx) + srv_uploads_reserved_bytes(ctx) +
                     length >
                 c->storage_quota_bytes) {
    fail(p, 507, "insufficient_storage",
         "the upload would exceed the server's storage quota "
         "(limits.storage_quota_bytes); delete volumes or jobs first");
    srv_upload_unref(u);
    return NULL;
  }
  if (srv_upload_register(ctx, u) != 0) {
    fail(p, 503, "overloaded", "the server is out of memory");
    srv_upload_unref(u);
    return NULL;
  }
  return u;
}


srv_body_sink_t* srv_cmd_upload_stream(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len) {
  unsigned method = net_http_method(rq->http);
  if (method == HTTP_POST && !is_octet_stream(rq->http)) {
    return NULL; /* creation without a body: gathered as usual */
  }
  patch_t* p = patch_new(rq);
  if (p == NULL) {
    return NULL; /* the request is then answered without streaming */
  }
  if (method == HTTP_POST) {
    p->is_create = true;
    srv_upload_t* u = create_upload(p, rq);
    if (u != NULL) {
      if (u->state != SRV_UPLOAD_RECEIVING) {
        p->u = u;
        srv_upload_ref(u);
        p->is_discarding = true;
      } else if (patch_start(p, u) != 0) {
        fail(p, 503, "overloaded", "the server is out of memory");
      }
      srv_upload_unref(u);
    }
  } else {
    patch_check(p, rq, srv_upload_find(p->ctx, id, id_len));
  }
  return &p->sink;
}


/* The end of a streamed request (PATCH, or POST with a body). */
srv_cmd_result_t srv_cmd_upload_body_done(srv_request_t* rq) {
  patch_t* p = CORE_CONTAINER_OF(rq->sink, patch_t, sink);
  p->is_ended = true;
  p->conn = NULL;
  p->mode = rq->mode;
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL) {
    patch_free(p);
    return srv_cmd_reply_oom(rq);
  }
  if (p->is_create && p->err_status != 0 && p->u != NULL) {
    srv_upload_remove(p->ctx, p->u, false, NULL, NULL);
  }
  finish(p);
  return SRV_CMD_PENDING;
}


/* POST without a body: creation. */
srv_cmd_result_t srv_cmd_upload_create(srv_request_t* rq) {
  patch_t* p = patch_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  p->is_create = true;
  srv_upload_t* u = create_upload(p, rq);
  if (u == NULL) {
    reply_error(rq->conn, &rq->mode, p->err_status, p->err_code, p->err_msg);
    patch_free(p);
    return SRV_CMD_DONE;
  }
  p->u = u; /* takes the reference */
  u->is_busy = true;
  p->owns_busy = true;
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL || srv_upload_save(p->ctx, u, on_saved, p) != 0) {
    srv_upload_remove(p->ctx, u, false, NULL, NULL);
    patch_free(p);
    return srv_cmd_reply_oom(rq);
  }
  return SRV_CMD_PENDING;
}
