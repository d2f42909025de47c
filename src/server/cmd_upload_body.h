/* cmd_upload_body.h: a tus request with a body (PATCH, POST with an
 * octet-stream body) or waiting for a completion, shared by the three files
 * of the upload routes: cmd_uploads.c (creation), cmd_upload_patch.c (a
 * PATCH's headers, the streaming entry points) and cmd_upload_body.c (the
 * body from the socket to the disk and the answer once it is durable).
 * Loop thread only. */
#ifndef SRV_CMD_UPLOAD_BODY_H
#define SRV_CMD_UPLOAD_BODY_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/cmd_util.h"
#include "server/upload_complete.h"
#include "server/upload_writer.h"
#include "server/uploads.h"

#define SRV_TUS_HEADERS "Tus-Resumable: 1.0.0\r\n"
/* The longest Upload-Concat value ("final;" and every part's path), and
 * the longest block srv_tus_upload_headers() writes. */
#define SRV_TUS_CONCAT_MAX (8 + SRV_UPLOAD_PARTS_MAX * (CORE_UUID_STR_LEN + 14))
#define SRV_TUS_HEADERS_MAX (SRV_UPLOAD_METADATA_MAX + SRV_TUS_CONCAT_MAX + 512)

typedef struct srv_upload_req_s {
  srv_body_sink_t sink;
  srv_ctx_t* ctx;
  srv_conn_t* conn;     /* while the body streams; NULL once it closed */
  srv_ticket_t* ticket; /* for the answer, from the end of the body */
  srv_http_mode_t mode;
  srv_upload_t* u;            /* a reference */
  bool owns_busy;             /* set u->is_busy: releases it when done */
  srv_upload_settle_t settle; /* while parked */
  bool is_parked;  /* waits for a settling PATCH before its state checks */
  bool was_parked; /* parks once at most */
  bool is_holding; /* parked with the body paused: `held` waits */
  uint8_t* held;   /* the piece that came while parked (malloc'd) */
  size_t held_len;
  bool is_answered; /* refused at the headers and told: the body is not
                       read, the connection ends */
  bool is_chunked;  /* Transfer-Encoding: chunked, no Content-Length */
  bool has_declared;
  uint64_t declared;    /* Content-Length */
  uint64_t want_offset; /* Upload-Offset */
  bool has_length;
  uint64_t want_length; /* Upload-Length, if sent */
  bool is_waiting;      /* answers once u's completion has its outcome */
  srv_upload_waiter_t waiter;
  bool is_create;     /* POST with a body: answer 201 */
  bool is_ended;      /* the request is complete */
  bool is_aborted;    /* the connection closed first */
  bool is_discarding; /* the body is not kept (dedup) */
  int err_status;     /* an error to answer once the body is read */
  char err_code[32];
  char err_msg[200];
  uint64_t start;        /* the upload's offset when this PATCH began */
  uint64_t room;         /* bytes the upload may still take */
  uint64_t received;     /* accepted body bytes */
  bool has_writer;       /* w is initialised (srv_upload_req_start) */
  bool is_keeping;       /* the end keeps what came: synced, offset advanced */
  srv_upload_writer_t w; /* the body's way to the file (two 1 MiB buffers,
                            owned here; the pool borrows them) */
  EVP_MD_CTX* md;        /* the Upload-Checksum digest, or NULL; owned here, fed
                            by w's hashes in the body's order */
  uint8_t want[64];
  size_t want_len;
} srv_upload_req_t;

/* A request on rq's connection, nothing decided yet. NULL on ENOMEM. */
srv_upload_req_t* srv_upload_req_new(srv_request_t* rq);

/* Releases the upload, the ticket (resuming the connection) and `p`. */
void srv_upload_req_free(srv_upload_req_t* p);

/* Records the error to answer (the first one wins). */
void srv_upload_req_fail(srv_upload_req_t* p,
                         int status,
                         const char* code,
                         const char* msg);

/* Prepares to receive bytes for `u` (referenced, made busy) at its offset.
 * Returns 0 or -ENOMEM. */
int srv_upload_req_start(srv_upload_req_t* p, srv_upload_t* u);

/* The body is over (complete, or the connection closed): flushes, syncs,
 * commits and answers. */
void srv_upload_req_finish(srv_upload_req_t* p);

/* The answer once everything is done (or failed); frees p. */
void srv_upload_req_answer(srv_upload_req_t* p);

/* srv_store_done_cb for the upload's record (arg: p): completes the upload
 * when every byte is in, then answers. */
void srv_upload_req_on_saved(void* arg, int status);

/* A tus error answer with the error envelope (412 adds Tus-Version). */
void srv_tus_reply_error(srv_conn_t* conn,
                         const srv_http_mode_t* mode,
                         int status,
                         const char* code,
                         const char* msg);

/* The tus headers describing `u` into `out` (cap >= SRV_TUS_HEADERS_MAX):
 * Tus-Resumable, Upload-Offset (not for a final still being assembled),
 * Upload-Concat, Upload-Expires while `u` may expire, CryoMamba-Volume-Id
 * once complete; with `full` (HEAD) also Upload-Length and
 * Upload-Metadata. */
void srv_tus_upload_headers(const srv_upload_t* u,
                            bool full,
                            char* out,
                            size_t cap);

/* cluster_uploads.c: a new upload's first record, after (on a gateway)
 * its dedup and quota checks in Redis; answers itself when refused. 0, or
 * -ENOMEM (nothing was answered). */
int srv_cluster_upload_admit(srv_upload_req_t* p);

/* A new upload whose first record did not commit: lets go of a final's
 * parts and removes it. */
void srv_upload_drop_new(srv_ctx_t* ctx, srv_upload_t* u);

/* The refusal in p->err_* is answered now, the connection ended after it
 * (lingering, so the client reads it) and the body left unread. */
void srv_upload_req_refuse_now(srv_upload_req_t* p, srv_conn_t* conn);

/* A parked request passed (or failed) its state checks: takes the piece
 * it held, then reads on or finishes. */
void srv_upload_req_unpark(srv_upload_req_t* p);

/* cmd_upload_patch.c: whether a tus header appears twice (then p has
 * failed with 400). */
bool srv_tus_headers_repeated(srv_upload_req_t* p, const net_http_reader_t* r);

/* cmd_uploads.c: checks a POST's headers and builds its upload
 * (registered, not yet committed; one reference for the caller). NULL
 * after srv_upload_req_fail(). */
srv_upload_t* srv_upload_create_checked(srv_upload_req_t* p, srv_request_t* rq);

/* cmd_uploads.c: whether a PATCH of `u` of `declared` bytes (UINT64_MAX:
 * unknown) would take volumes + job artifacts + the bytes of incomplete
 * uploads past the storage quota (its bytes: at most what `u` lacks). */
bool srv_upload_patch_over_quota(srv_ctx_t* ctx,
                                 const srv_upload_t* u,
                                 uint64_t declared);

#endif
