/* upload_concat.h: the bookkeeping of tus concatenation (docs/protocol.md,
 * "Uploads", concatenation): parsing `Upload-Concat: final;<url> ...`, the
 * checks a final's parts must pass, which finals hold which parts (a held
 * part cannot be PATCHed, terminated or expire), and the removal of parts
 * once a final made of them completed. The join of the files is
 * upload_join.c, the completion upload_complete.c. Loop thread only. */
#ifndef SRV_UPLOAD_CONCAT_H
#define SRV_UPLOAD_CONCAT_H

#include <stdbool.h>
#include <stddef.h>

#include "server/ctx.h"
#include "server/uploads.h"

/* Why a final cannot be created: the HTTP status, the error code and a
 * sentence for the client. */
typedef struct {
  int status;
  const char* code; /* a string literal */
  char msg[200];
} srv_concat_err_t;

/* Parses the value of `Upload-Concat: final;<url> <url> ...`
 * (core_tus_parse_concat_final) into the part ids of `u` (u->parts,
 * u->part_count). Returns 0, or -1 with `err` filled (400 invalid_concat,
 * too_many_parts, part_duplicate). */
int srv_concat_parse_final(srv_upload_t* u,
                           const char* value,
                           srv_concat_err_t* err);

/* Checks every part of final `u` (parsed, owned by u->owner_token): known
 * (404 part_not_found), partial (400 part_not_partial), same token (403
 * part_forbidden), complete (400 part_incomplete), and the sum of their
 * lengths within --max-upload-bytes (413 payload_too_large). Sets
 * u->length. Returns 0 or -1 with `err` filled. */
int srv_concat_check_parts(srv_ctx_t* ctx,
                           srv_upload_t* u,
                           srv_concat_err_t* err);

/* Final `u` holds its parts (each part's final_refs grows by one). */
void srv_concat_hold(srv_ctx_t* ctx, srv_upload_t* u);

/* Final `u` lets go of its parts (it was terminated, or failed): a part
 * held by no final anymore that a completed final consumed is removed. */
void srv_concat_release(srv_ctx_t* ctx, srv_upload_t* u);

/* Final `u` completed (its record is durable): its parts are consumed and
 * let go of, so each is removed (record and file) once no other final is
 * being assembled from it. */
void srv_concat_consume(srv_ctx_t* ctx, srv_upload_t* u);

/* Start-up, after srv_uploads_restore: finals still completing hold their
 * parts again, and parts of completed finals are removed. */
void srv_concat_restore(srv_ctx_t* ctx);

/* `Upload-Concat` of `u` as HEAD echoes it ("partial", or "final;" and the
 * parts' paths), or "" when it is no concatenation. */
void srv_concat_header(const srv_upload_t* u, char* out, size_t cap);

#endif
