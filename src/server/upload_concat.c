/* upload_concat.c: tus concatenation's bookkeeping. See upload_concat.h.
 * Parts are found by id (never by pointer), so a final outlives nothing it
 * names: a part removed meanwhile is simply not found. Loop thread only. */
#include "server/upload_concat.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


static int fail(srv_concat_err_t* err,
                int status,
                const char* code,
                const char* fmt,
                ...) {
  err->status = status;
  err->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
  return -1;
}


int srv_concat_parse_final(srv_upload_t* u,
                           const char* value,
                           srv_concat_err_t* err) {
  int rc = core_tus_parse_concat_final(value, u->parts, &u->part_count,
                                       err->msg, sizeof(err->msg));
  if (rc == 0) {
    return 0;
  }
  err->status = 400;
  err->code = rc == -E2BIG    ? "too_many_parts"
              : rc == -EEXIST ? "part_duplicate"
                              : "invalid_concat";
  return -1;
}


int srv_concat_check_parts(srv_ctx_t* ctx,
                           srv_upload_t* u,
                           srv_concat_err_t* err) {
  uint64_t sum = 0;
  uint64_t max = ctx->cfg.max_upload_bytes;
  for (unsigned i = 0; i < u->part_count; i++) {
    const char* id = u->parts[i];
    srv_upload_t* part = srv_upload_find(ctx, id, CORE_UUID_STR_LEN);
    if (part == NULL || !part->is_committed || part->is_terminating) {
      return fail(err, 404, "part_not_found",
                  "no upload %s (it may have expired, been terminated, or "
                  "been consumed by a completed final upload)",
                  id);
    }
    if (part->concat != SRV_CONCAT_PARTIAL) {
      return fail(err, 400, "part_not_partial",
                  "upload %s was not created with Upload-Concat: partial", id);
    }
    if (strcmp(part->owner_token, u->owner_token) != 0) {
      return fail(err, 403, "part_forbidden",
                  "upload %s was created with another token", id);
    }
    if (part->state != SRV_UPLOAD_COMPLETED) {
      return fail(err, 400, "part_incomplete",
                  "upload %s has %llu of its %llu bytes; a final upload needs "
                  "complete parts",
                  id, (unsigned long long) part->offset,
                  (unsigned long long) part->length);
    }
    if (part->length > max - sum) {
      return fail(err, 413, "payload_too_large",
                  "the parts add up to more than Tus-Max-Size "
                  "(limits.max_upload_bytes)");
    }
    sum += part->length;
  }
  u->length = sum;
  return 0;
}


void srv_concat_hold(srv_ctx_t* ctx, srv_upload_t* u) {
  assert(u->concat == SRV_CONCAT_FINAL && !u->holds_parts);
  for (unsigned i = 0; i < u->part_count; i++) {
    srv_upload_t* part = srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
    if (part != NULL && part->concat == SRV_CONCAT_PARTIAL) {
      part->final_refs++;
    }
  }
  u->holds_parts = true;
}


/* Removes `part` if a completed final consumed it and no final is being
 * assembled from it. */
static void maybe_remove(srv_ctx_t* ctx, srv_upload_t* part) {
  if (part->is_consumed && part->final_refs == 0) {
    srv_log(&ctx->log, SRV_LOG_INFO, "upload.part_removed", "s:upload_id",
            part->id, NULL);
    srv_upload_remove(ctx, part, false, NULL, NULL);
  }
}


void srv_concat_release(srv_ctx_t* ctx, srv_upload_t* u) {
  if (!u->holds_parts) {
    return;
  }
  u->holds_parts = false;
  for (unsigned i = 0; i < u->part_count; i++) {
    srv_upload_t* part = srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
    if (part == NULL || part->concat != SRV_CONCAT_PARTIAL) {
      continue;
    }
    assert(part->final_refs > 0);
    part->final_refs--;
    maybe_remove(ctx, part);
  }
}


void srv_concat_consume(srv_ctx_t* ctx, srv_upload_t* u) {
  for (unsigned i = 0; i < u->part_count; i++) {
    srv_upload_t* part = srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
    if (part != NULL && part->concat == SRV_CONCAT_PARTIAL) {
      part->is_consumed = true;
    }
  }
  if (u->holds_parts) {
    srv_concat_release(ctx, u);
    return;
  }
  for (unsigned i = 0; i < u->part_count; i++) {
    srv_upload_t* part = srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
    if (part != NULL && part->concat == SRV_CONCAT_PARTIAL) {
      maybe_remove(ctx, part);
    }
  }
}


void srv_concat_restore(srv_ctx_t* ctx) {
  core_list_t* it;
  core_list_t* tmp;
  /* Counts first, removals after: a removal unlinks list nodes, which the
   * first loop must not meet. */
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    if (u->concat != SRV_CONCAT_FINAL) {
      continue;
    }
    if (u->state == SRV_UPLOAD_COMPLETING) {
      srv_concat_hold(ctx, u);
    } else if (u->state == SRV_UPLOAD_COMPLETED) {
      for (unsigned i = 0; i < u->part_count; i++) {
        srv_upload_t* part =
            srv_upload_find(ctx, u->parts[i], CORE_UUID_STR_LEN);
        if (part != NULL && part->concat == SRV_CONCAT_PARTIAL) {
          part->is_consumed = true;
        }
      }
    }
  }
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->uploads) {
    srv_upload_t* u = CORE_CONTAINER_OF(it, srv_upload_t, link);
    if (u->concat == SRV_CONCAT_PARTIAL) {
      maybe_remove(ctx, u); /* unlinks `it` only */
    }
  }
}


void srv_concat_header(const srv_upload_t* u, char* out, size_t cap) {
  assert(cap > 0);
  out[0] = '\0';
  if (u->concat == SRV_CONCAT_PARTIAL) {
    snprintf(out, cap, "partial");
  } else if (u->concat == SRV_CONCAT_FINAL) {
    size_t n = (size_t) snprintf(out, cap, "final;");
    for (unsigned i = 0; i < u->part_count && n < cap; i++) {
      n += (size_t) snprintf(out + n, cap - n, "%s/v1/uploads/%s",
                             i > 0 ? " " : "", u->parts[i]);
    }
  }
}
