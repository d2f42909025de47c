/* uploads.h: tus 1.0.0 uploads (docs/protocol.md, "Uploads"): the registry
 * of uploads, their records in the store (table uploads) and the rules of
 * the protocol that do not depend on a request: which transitions are
 * allowed, when an upload expires, what counts against the limits (those
 * two: upload_limits.c), two-phase removals (is_terminating). The
 * bytes are written by upload_io.c, the routes are cmd_upload*.c and cmd_tus.c,
 * a completed upload becomes a volume in volumes.c. Loop thread only. */
#ifndef SRV_UPLOADS_H
#define SRV_UPLOADS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/tus_header.h"
#include "core/uuid.h"
#include "server/ctx.h"
#include "server/store.h"

#define SRV_UPLOAD_FILENAME_MAX CORE_TUS_FILENAME_MAX
#define SRV_UPLOAD_METADATA_MAX CORE_TUS_METADATA_MAX
/* Parts one final upload may name (tus concatenation; protocol.md §2.6). */
#define SRV_UPLOAD_PARTS_MAX CORE_TUS_PARTS_MAX

typedef enum {
  SRV_UPLOAD_RECEIVING,  /* bytes are expected */
  SRV_UPLOAD_COMPLETING, /* all bytes are in; validation and hashing run
                            (stored: a restart resumes it) */
  SRV_UPLOAD_COMPLETED,  /* a volume (volume_id), or a complete partial
                            upload; kept until it expires */
  SRV_UPLOAD_FAILED      /* a final upload that did not become a volume
                            (error_code, error_msg); kept until it expires */
} srv_upload_state_t;

typedef enum {
  SRV_CONCAT_NONE,
  SRV_CONCAT_PARTIAL, /* a part of a final upload; never a volume itself */
  SRV_CONCAT_FINAL    /* the concatenation of parts (upload_concat.c): no
                         PATCH; completing from its creation (the join,
                         then the validation) */
} srv_concat_t;

typedef struct srv_upload_settle_s srv_upload_settle_t;

/* A request waiting until a PATCH whose client left has finished with the
 * upload (what it kept is committed), so that its answer tells the offset
 * a resume needs. Runs once, on the loop, `s` unlinked before. */
struct srv_upload_settle_s {
  core_list_t link; /* the upload's settle_waiters */
  void (*cb)(srv_upload_settle_t* s);
};

typedef struct srv_upload_s {
  core_list_t link; /* ctx->uploads, oldest first */
  srv_ctx_t* ctx;
  char id[CORE_UUID_STR_LEN + 1];
  srv_upload_state_t state;
  srv_concat_t concat;
  uint64_t length; /* Upload-Length */
  uint64_t offset; /* bytes fdatasync'ed (committed: durable_offset) */
  /* What the last committed record says, the only state an answer shows
   * (clients see durable state only): set when a save commits and at
   * start-up. state and offset run ahead while a record is committed. */
  srv_upload_state_t durable_state;
  uint64_t durable_offset;
  uint64_t saves_queued;  /* orders the commits of the upload's saves */
  uint64_t saves_durable; /* the save durable_* come from */
  unsigned saves_in_flight;
  int64_t created_us;
  int64_t expires_us;   /* incomplete uploads are removed after this */
  char owner_ip[48];    /* counted against the per-address limit */
  char owner_token[17]; /* a digest prefix of the bearer token, or "" */
  char filename[SRV_UPLOAD_FILENAME_MAX];
  char sha256[65]; /* from the metadata, lowercase hex, or "" */
  char metadata[SRV_UPLOAD_METADATA_MAX]; /* Upload-Metadata as given */
  char volume_id[CORE_UUID_STR_LEN + 1];  /* once completed */
  char parts[SRV_UPLOAD_PARTS_MAX][CORE_UUID_STR_LEN + 1]; /* final only */
  unsigned part_count;
  unsigned final_refs; /* partial: finals being assembled from it (not
                          stored: recounted at start-up) */
  bool is_consumed;    /* partial: a final made of it completed; removed
                          once final_refs is 0 */
  bool holds_parts;    /* final: counted in its parts' final_refs */
  char error_code[32]; /* failed final: why (the 4xx/5xx code) */
  char error_msg[200];
  core_list_t waiters;        /* srv_upload_waiter_t, while completing */
  bool is_busy;               /* a PATCH owns the file now */
  bool is_settling;           /* ... and its client is gone: it finishes (write,
                                 fdatasync, commit) for no one */
  core_list_t settle_waiters; /* srv_upload_settle_t: HEAD and PATCH
                                 requests waiting for that */
  /* Its removal (DELETE, expiry, ...) is being committed: it is still
   * found and HEAD answers as before (clients see durable state only), a
   * new PATCH or DELETE and any save wait for the outcome (on
   * terminate_waiters, deferred_saves).
   * Then is_deleted, or (the commit failed) as it was. */
  bool is_terminating;
  core_list_t terminate_waiters;
  core_list_t deferred_saves;
  bool is_deleted;   /* unregistered; freed when the last ref goes */
  bool is_committed; /* its first record is durable: it exists */
  unsigned refs;     /* the registry + each request working on it */
} srv_upload_t;

/* The file of upload `id`: state_dir/uploads/<id>.part (into out). */
void srv_upload_path(const srv_ctx_t* ctx,
                     const char* id,
                     char* out,
                     size_t cap);

/* A new upload (not registered, not yet stored; one reference). NULL on
 * ENOMEM. */
srv_upload_t* srv_upload_new(srv_ctx_t* ctx);

/* Registers `u` (the registry takes a reference). */
int srv_upload_register(srv_ctx_t* ctx, srv_upload_t* u);

/* The registered upload `id`, or NULL. */
srv_upload_t* srv_upload_find(srv_ctx_t* ctx, const char* id, size_t len);

void srv_upload_ref(srv_upload_t* u);
void srv_upload_unref(srv_upload_t* u);

/* Calls `s` (borrowed until it runs, or until srv_upload_settle_cancel)
 * once u->is_settling ends. */
void srv_upload_settle_wait(srv_upload_t* u, srv_upload_settle_t* s);

/* `s` no longer waits (its request went away). NULL-safe for a waiter not
 * waiting. */
void srv_upload_settle_cancel(srv_upload_settle_t* s);

/* The PATCH that owned `u` let go of it: is_busy and is_settling end, and
 * the requests waiting for that run. */
void srv_upload_release(srv_upload_t* u);

/* Queues the upload's record (serialised now); cb as for srv_store_put,
 * run after u->durable_state and u->durable_offset took the saved values
 * (on status 0). -ESHUTDOWN once the store is closed (shutdown), and then
 * cb does not run. */
int srv_upload_save(srv_ctx_t* ctx,
                    srv_upload_t* u,
                    srv_store_done_cb cb,
                    void* arg);

/* A save of `u` did not commit, but what it says is what a restart
 * reaches anyway (a completion's outcome, redone from the file): shown as
 * if it were durable. */
void srv_upload_show_as_durable(srv_upload_t* u);

/* Queues the removal of `u`'s record; `u` is_terminating until it commits,
 * then unregistered (is_deleted) and its file removed (unless `keep_file`:
 * it became a volume, or a join removes it), then cb (may be NULL) runs.
 * If the commit fails, `u` stays as it was and cb gets the error. Returns
 * 0, -ENOENT (removed already), -EALREADY (its removal is being committed:
 * see srv_upload_termination_wait), -ESHUTDOWN (the store is closing:
 * nothing is done, a restart finds `u` as it was) or another negative
 * errno; cb runs only on 0. */
int srv_upload_remove(srv_ctx_t* ctx,
                      srv_upload_t* u,
                      bool keep_file,
                      srv_store_done_cb cb,
                      void* arg);

/* Calls `s` (borrowed until it runs, or until srv_upload_settle_cancel)
 * once the removal being committed (u->is_terminating) has its outcome:
 * u->is_deleted, or not (it failed). */
void srv_upload_termination_wait(srv_upload_t* u, srv_upload_settle_t* s);

/* Start-up: restores every stored upload. Returns the count or -1. */
int srv_uploads_restore(srv_ctx_t* ctx);

/* Start-up, after srv_uploads_restore, before the loop runs: removes the
 * files of uploads/ that belong to no incomplete upload (a record that
 * never committed, a completed upload's leftover). Returns the count. */
int srv_uploads_remove_orphans(srv_ctx_t* ctx);

/* Whether file `name` is "<uuid><suffix>" (then the uuid, NUL-terminated,
 * is in `id`, CORE_UUID_STR_LEN + 1 bytes). */
bool srv_orphan_id(const char* name, const char* suffix, char* id);

/* Incomplete uploads counted against the per-token and per-address
 * limits (partial uploads count until they are removed; finals never). */
unsigned srv_uploads_count_token(srv_ctx_t* ctx, const char* token);
unsigned srv_uploads_count_ip(srv_ctx_t* ctx, const char* ip);

/* Bytes reserved by incomplete uploads (their lengths; partial uploads
 * until removed, finals while they are assembled), for the quota. */
uint64_t srv_uploads_reserved_bytes(srv_ctx_t* ctx);

/* Bytes incomplete uploads hold on disk (their durable offsets). */
uint64_t srv_uploads_stored_bytes(srv_ctx_t* ctx);

/* Housekeeping: removes expired uploads nobody is writing. */
void srv_uploads_housekeeping(srv_ctx_t* ctx);

/* Parses Upload-Metadata (core_tus_parse_metadata): filename and sha256
 * into `u`, the whole value kept. Returns 0 or -1 with a sentence in
 * `err`. */
int srv_upload_parse_metadata(srv_upload_t* u,
                              const char* value,
                              char* err,
                              size_t err_len);

/* RFC 7231 date of `unix_us` ("Wed, 25 Jun 2014 16:00:00 GMT"). */
void srv_http_date(int64_t unix_us, char out[40]);

/* Frees every upload (shutdown). */
void srv_uploads_free_all(srv_ctx_t* ctx);

#endif
