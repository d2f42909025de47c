/* upload_complete.h: an upload's completion, from its last durable byte to
 * a volume: the state completing (stored, so a restart resumes it), for a
 * final upload the join of its parts (upload_join.c), the validation and
 * hashing on the pool (volumes.c), then the upload's completed record, and
 * only then the removal of the upload's file (and of a final's parts) --
 * or, when the file is not a valid volume, the upload's removal (a final is
 * kept as failed, its parts let go of). Requests waiting for the outcome
 * (the PATCH that sent the last byte, an empty PATCH retried at the end)
 * are called once it is durable. Also start-up's resumption of completions
 * a restart cut short. Loop thread. */
#ifndef SRV_UPLOAD_COMPLETE_H
#define SRV_UPLOAD_COMPLETE_H

#include "core/list.h"
#include "server/ctx.h"
#include "server/uploads.h"

typedef struct srv_upload_waiter_s srv_upload_waiter_t;

/* The outcome, for a waiter: status 0 (u->volume_id is set and recorded),
 * -EINVAL (not a valid volume, `why` says why; the upload is removed),
 * -ECANCELED (terminated meanwhile) or another negative errno. Runs once;
 * `w` is unlinked before. */
typedef void (*srv_upload_waiter_cb)(srv_upload_waiter_t* w,
                                     int status,
                                     const char* why);

struct srv_upload_waiter_s {
  core_list_t link; /* the upload's waiters */
  srv_upload_waiter_cb cb;
};

/* Completes `u` (all bytes durable, state receiving): stores the state
 * completing and starts the validation. Returns 0 or a negative errno
 * (then `u` is still receiving). */
int srv_upload_complete_start(srv_ctx_t* ctx, srv_upload_t* u);

/* Assembles final upload `u` (state completing, record committed) from
 * its parts, then completes it like any upload. Failures end in the state
 * failed (u->error_code, u->error_msg), stored, parts let go of. */
void srv_upload_final_start(srv_ctx_t* ctx, srv_upload_t* u);

/* Whether the completion of plain upload `u` has no durable outcome yet:
 * it runs, or its completed record is being committed. */
bool srv_upload_is_completing(const srv_upload_t* u);

/* Calls `w` (borrowed until its callback) once the completion of `u`
 * (srv_upload_is_completing) has its durable outcome. */
void srv_upload_complete_wait(srv_upload_t* u, srv_upload_waiter_t* w);

/* Start-up, after srv_uploads_restore and the orphans' removal: finals
 * hold their parts again (srv_concat_restore), then every completion that
 * was cut short restarts (a final's from its join). Returns how many were
 * started. */
int srv_uploads_resume(srv_ctx_t* ctx);

#endif
