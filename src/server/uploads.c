/* uploads.c: the upload registry and records. See uploads.h. Loop thread
 * only; files are removed through uv_fs_unlink (libuv's pool). */
#include "server/uploads.h"

#include <assert.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirent.h>
#include <unistd.h>

#include "core/timefmt.h"


void srv_upload_path(const srv_ctx_t* ctx,
                     const char* id,
                     char* out,
                     size_t cap) {
  int n = snprintf(out, cap, "%s/%s.part", ctx->uploads_dir, id);
  if (n < 0 || (size_t) n >= cap) {
    out[0] = '\0'; /* opens fail: never a truncated name */
  }
}


srv_upload_t* srv_upload_new(srv_ctx_t* ctx) {
  uint8_t random16[16];
  if (RAND_bytes(random16, sizeof(random16)) != 1) {
    return NULL;
  }
  srv_upload_t* u = calloc(1, sizeof(*u));
  if (u == NULL) {
    return NULL;
  }
  core_uuid4_format(random16, u->id);
  core_list_init(&u->link);
  core_list_init(&u->waiters);
  core_list_init(&u->settle_waiters);
  core_list_init(&u->terminate_waiters);
  core_list_init(&u->deferred_saves);
  u->ctx = ctx;
  u->refs = 1;
  u->created_us = srv_now_us();
  u->expires_us = u->created_us + (int64_t) (ctx->cfg.upload_expiry_s * 1e6);
  return u;
}


int srv_upload_register(srv_ctx_t* ctx, srv_upload_t* u) {
  if (core_idmap_put(&ctx->upload_index, u->id, u) != 0) {
    return -ENOMEM;
  }
  core_list_push_back(&ctx->uploads, &u->link);
  u->refs++;
  return 0;
}


srv_upload_t* srv_upload_find(srv_ctx_t* ctx, const char* id, size_t len) {
  /* The map compares exactly CORE_UUID_STR_LEN bytes: no copy needed. */
  return core_uuid_is_valid(id, len) ? core_idmap_get(&ctx->upload_index, id)
                                     : NULL;
}


void srv_upload_ref(srv_upload_t* u) {
  u->refs++;
}


void srv_upload_unref(srv_upload_t* u) {
  if (u != NULL && --u->refs == 0) {
    free(u);
  }
}


static json_t* to_record(const srv_upload_t* u) {
  static const char* states[] = {"receiving", "completing", "completed",
                                 "failed"};
  static const char* concats[] = {"none", "partial", "final"};
  json_t* parts = json_array();
  for (unsigned i = 0; i < u->part_count; i++) {
    json_array_append_new(parts, json_string(u->parts[i]));
  }
  return json_pack(
      "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, "
      "s:o, s:s, s:s}",
      "id", u->id, "state", states[u->state], "concat", concats[u->concat],
      "length", (json_int_t) u->length, "offset", (json_int_t) u->offset,
      "created_us", (json_int_t) u->created_us, "expires_us",
      (json_int_t) u->expires_us, "owner_ip", u->owner_ip, "owner_token",
      u->owner_token, "filename", u->filename, "sha256", u->sha256, "metadata",
      u->metadata, "volume_id", u->volume_id, "parts", parts, "error_code",
      u->error_code, "error", u->error_msg);
}


void srv_upload_settle_wait(srv_upload_t* u, srv_upload_settle_t* s) {
  assert(u->is_settling);
  core_list_push_back(&u->settle_waiters, &s->link);
}


void srv_upload_settle_cancel(srv_upload_settle_t* s) {
  if (core_list_is_linked(&s->link)) {
    core_list_remove(&s->link);
  }
}


void srv_upload_release(srv_upload_t* u) {
  u->is_busy = false;
  u->is_settling = false;
  /* Taken off one at a time: a waiter's callback may make the upload busy
   * again (a PATCH that waited), and the others then see that. */
  srv_upload_ref(u);
  while (!core_list_is_empty(&u->settle_waiters)) {
    core_list_t* node = core_list_front(&u->settle_waiters);
    core_list_remove(node);
    srv_upload_settle_t* s = CORE_CONTAINER_OF(node, srv_upload_settle_t, link);
    s->cb(s);
  }
  srv_upload_unref(u);
}


/* One save in flight: what it recorded, for durable_*, and the caller's
 * callback. Owned by the store's callback. */
typedef struct {
  srv_upload_t* u; /* a reference */
  uint64_t seq;
  srv_upload_state_t state;
  uint64_t offset;
  srv_store_done_cb cb;
  void* arg;
  core_list_t link; /* u->deferred_saves while its removal commits */
  json_t* rec;      /* the record, owned while deferred */
} save_t;


static void on_saved(void* arg, int status) {
  save_t* s = arg;
  srv_upload_t* u = s->u;
  u->saves_in_flight--;
  /* A newer save may have replaced this one before it was written (both
   * then commit together): the newest values win whatever the order. */
  if (status == 0 && s->seq > u->saves_durable) {
    u->saves_durable = s->seq;
    u->durable_state = s->state;
    u->durable_offset = s->offset;
  }
  if (s->cb != NULL) {
    s->cb(s->arg, status);
  }
  srv_upload_unref(u);
  free(s);
}


int srv_upload_save(srv_ctx_t* ctx,
                    srv_upload_t* u,
                    srv_store_done_cb cb,
                    void* arg) {
  if (!srv_store_is_open(ctx->store)) {
    return -ESHUTDOWN; /* a completion that outlived the store: redone */
  }
  save_t* s = malloc(sizeof(*s));
  json_t* rec = s != NULL ? to_record(u) : NULL;
  if (rec == NULL) {
    free(s);
    return -ENOMEM;
  }
  *s = (save_t){.u = u,
                .seq = ++u->saves_queued,
                .state = u->state,
                .offset = u->offset,
                .cb = cb,
                .arg = arg};
  if (u->is_terminating) {
    /* Queued now it would come back after the removal: it waits for the
     * removal's outcome (queued after a failed one, dropped after a
     * removal, with -ECANCELED). */
    s->rec = rec;
    core_list_push_back(&u->deferred_saves, &s->link);
    srv_upload_ref(u);
    u->saves_in_flight++;
    return 0;
  }
  int rc =
      srv_store_put(ctx->store, SRV_STORE_UPLOADS, u->id, rec, on_saved, s);
  json_decref(rec);
  if (rc != 0) {
    free(s);
    return rc;
  }
  srv_upload_ref(u);
  u->saves_in_flight++;
  return 0;
}


void srv_upload_show_as_durable(srv_upload_t* u) {
  u->durable_state = u->state;
  u->durable_offset = u->offset;
  u->saves_durable = u->saves_queued;
}


/* A removal being committed; owned by the store's callback. */
typedef struct {
  srv_upload_t* u; /* a reference */
  bool keep_file;
  srv_store_done_cb cb;
  void* arg;
  uv_fs_t unlink; /* the file's, once the record's removal committed */
} removal_t;


/* The saves made while the removal committed, now that it has its
 * outcome: dropped after a removal, queued after a failure. */
static void flush_deferred(srv_ctx_t* ctx, srv_upload_t* u) {
  while (!core_list_is_empty(&u->deferred_saves)) {
    core_list_t* node = core_list_front(&u->deferred_saves);
    core_list_remove(node);
    save_t* s = CORE_CONTAINER_OF(node, save_t, link);
    json_t* rec = s->rec;
    s->rec = NULL;
    int rc = u->is_deleted ? -ECANCELED
             : !srv_store_is_open(ctx->store)
                 ? -ESHUTDOWN
                 : srv_store_put(ctx->store, SRV_STORE_UPLOADS, u->id, rec,
                                 on_saved, s);
    json_decref(rec);
    if (rc != 0) {
      on_saved(s, rc);
    }
  }
}


/* The removal has its outcome (and a removed upload's file is gone): the
 * deferred saves, the caller, the waiters. */
static void removal_finish(removal_t* r, int status) {
  srv_upload_t* u = r->u;
  flush_deferred(u->ctx, u);
  if (r->cb != NULL) {
    r->cb(r->arg, status);
  }
  /* Taken off one at a time, as in srv_upload_release. */
  while (!core_list_is_empty(&u->terminate_waiters)) {
    core_list_t* node = core_list_front(&u->terminate_waiters);
    core_list_remove(node);
    srv_upload_settle_t* s = CORE_CONTAINER_OF(node, srv_upload_settle_t, link);
    s->cb(s);
  }
  if (status == 0) {
    assert(u->refs > 1); /* the registry's goes; this removal's remains */
    u->refs--;
  }
  srv_upload_unref(u);
  free(r);
}


static void on_file_removed(uv_fs_t* req) {
  removal_t* r = req->data;
  uv_fs_req_cleanup(req);
  removal_finish(r, 0);
}


static void on_removed(void* arg, int status) {
  removal_t* r = arg;
  srv_upload_t* u = r->u;
  srv_ctx_t* ctx = u->ctx;
  assert(u->is_terminating && !u->is_deleted);
  u->is_terminating = false;
  if (status != 0) {
    removal_finish(r, status); /* as it was */
    return;
  }
  /* Durable: now it is gone for everyone, its file before anyone is told
   * (a DELETE's 204 means the file is gone too). */
  u->is_deleted = true;
  core_idmap_remove(&ctx->upload_index, u->id);
  core_list_remove(&u->link);
  if (!r->keep_file) {
    char path[1200];
    srv_upload_path(ctx, u->id, path, sizeof(path));
    r->unlink.data = r;
    if (uv_fs_unlink(ctx->loop, &r->unlink, path, on_file_removed) == 0) {
      return;
    }
  }
  removal_finish(r, 0);
}


int srv_upload_remove(srv_ctx_t* ctx,
                      srv_upload_t* u,
                      bool keep_file,
                      srv_store_done_cb cb,
                      void* arg) {
  if (u->is_deleted) {
    return -ENOENT;
  }
  if (u->is_terminating) {
    return -EALREADY;
  }
  if (!srv_store_is_open(ctx->store)) {
    /* Shutdown: the store's last callbacks must not queue; the record and
     * the file stay, and the next start-up sees them as they are. */
    return -ESHUTDOWN;
  }
  removal_t* r = malloc(sizeof(*r));
  if (r == NULL) {
    return -ENOMEM;
  }
  *r = (removal_t){.u = u, .keep_file = keep_file, .cb = cb, .arg = arg};
  int rc =
      srv_store_remove(ctx->store, SRV_STORE_UPLOADS, u->id, on_removed, r);
  if (rc != 0) {
    free(r);
    return rc;
  }
  srv_upload_ref(u);
  u->is_terminating = true;
  srv_log(&ctx->log, SRV_LOG_INFO, "upload.terminating", "s:upload_id", u->id,
          NULL);
  return 0;
}


void srv_upload_termination_wait(srv_upload_t* u, srv_upload_settle_t* s) {
  assert(u->is_terminating);
  core_list_push_back(&u->terminate_waiters, &s->link);
}


static void copy_field(char* dst,
                       size_t cap,
                       const json_t* rec,
                       const char* k) {
  const char* v = json_string_value(json_object_get(rec, k));
  snprintf(dst, cap, "%s", v != NULL ? v : "");
}


static int restore_one(void* arg, const json_t* rec) {
  srv_ctx_t* ctx = arg;
  const char* id = json_string_value(json_object_get(rec, "id"));
  const char* state = json_string_value(json_object_get(rec, "state"));
  const char* concat = json_string_value(json_object_get(rec, "concat"));
  if (id == NULL || !core_uuid_is_valid(id, strlen(id)) || state == NULL ||
      concat == NULL) {
    return -1;
  }
  srv_upload_t* u = calloc(1, sizeof(*u));
  if (u == NULL) {
    return -1;
  }
  core_list_init(&u->link);
  core_list_init(&u->waiters);
  core_list_init(&u->settle_waiters);
  core_list_init(&u->terminate_waiters);
  core_list_init(&u->deferred_saves);
  u->ctx = ctx;
  u->refs = 1;
  memcpy(u->id, id, CORE_UUID_STR_LEN + 1);
  u->state = strcmp(state, "completed") == 0    ? SRV_UPLOAD_COMPLETED
             : strcmp(state, "completing") == 0 ? SRV_UPLOAD_COMPLETING
             : strcmp(state, "failed") == 0     ? SRV_UPLOAD_FAILED
                                                : SRV_UPLOAD_RECEIVING;
  u->concat = strcmp(concat, "partial") == 0 ? SRV_CONCAT_PARTIAL
              : strcmp(concat, "final") == 0 ? SRV_CONCAT_FINAL
                                             : SRV_CONCAT_NONE;
  u->length = (uint64_t) json_integer_value(json_object_get(rec, "length"));
  u->offset = (uint64_t) json_integer_value(json_object_get(rec, "offset"));
  u->created_us = json_integer_value(json_object_get(rec, "created_us"));
  u->expires_us = json_integer_value(json_object_get(rec, "expires_us"));
  copy_field(u->owner_ip, sizeof(u->owner_ip), rec, "owner_ip");
  copy_field(u->owner_token, sizeof(u->owner_token), rec, "owner_token");
  copy_field(u->filename, sizeof(u->filename), rec, "filename");
  copy_field(u->sha256, sizeof(u->sha256), rec, "sha256");
  copy_field(u->metadata, sizeof(u->metadata), rec, "metadata");
  copy_field(u->volume_id, sizeof(u->volume_id), rec, "volume_id");
  copy_field(u->error_code, sizeof(u->error_code), rec, "error_code");
  copy_field(u->error_msg, sizeof(u->error_msg), rec, "error");
  size_t i;
  json_t* part;
  json_array_foreach(json_object_get(rec, "parts"), i, part) {
    const char* pid = json_string_value(part);
    if (i >= SRV_UPLOAD_PARTS_MAX || pid == NULL ||
        !core_uuid_is_valid(pid, strlen(pid))) {
      free(u);
      return -1;
    }
    memcpy(u->parts[i], pid, CORE_UUID_STR_LEN + 1);
    u->part_count = (unsigned) i + 1;
  }
  /* A final names its parts, others none; a final is completing (its
   * join, then its validation) from its first record on. */
  if ((u->concat == SRV_CONCAT_FINAL) != (u->part_count > 0) ||
      (u->concat == SRV_CONCAT_FINAL && u->state == SRV_UPLOAD_RECEIVING) ||
      (u->concat != SRV_CONCAT_FINAL && u->state == SRV_UPLOAD_FAILED)) {
    free(u);
    return -1;
  }
  /* The record that made the offset the length may be the last one that
   * committed: all bytes are in, and the completion is to be (re)done. */
  if (u->state == SRV_UPLOAD_RECEIVING && u->offset == u->length) {
    u->state = u->concat == SRV_CONCAT_PARTIAL ? SRV_UPLOAD_COMPLETED
                                               : SRV_UPLOAD_COMPLETING;
  }
  u->is_committed = true;
  srv_upload_show_as_durable(u); /* as stored, or what it implies */
  if (srv_upload_register(ctx, u) != 0) {
    free(u);
    return -1;
  }
  srv_upload_unref(u);
  return 0;
}


int srv_uploads_restore(srv_ctx_t* ctx) {
  int bad = 0;
  return srv_store_restore_table(ctx->store, SRV_STORE_UPLOADS, restore_one,
                                 ctx, &bad);
}


/* `name` is "<uuid><suffix>": the uuid, NUL-terminated, into `id`. */
bool srv_orphan_id(const char* name, const char* suffix, char* id) {
  size_t n = strlen(name);
  size_t sn = strlen(suffix);
  if (n != CORE_UUID_STR_LEN + sn || strcmp(name + CORE_UUID_STR_LEN, suffix) ||
      !core_uuid_is_valid(name, CORE_UUID_STR_LEN)) {
    return false;
  }
  memcpy(id, name, CORE_UUID_STR_LEN);
  id[CORE_UUID_STR_LEN] = '\0';
  return true;
}


int srv_uploads_remove_orphans(srv_ctx_t* ctx) {
  char path[1300];
  snprintf(path, sizeof(path), "%s", ctx->uploads_dir);
  DIR* dir = opendir(path);
  if (dir == NULL) {
    return 0;
  }
  int removed = 0;
  struct dirent* e;
  while ((e = readdir(dir)) != NULL) {
    char id[CORE_UUID_STR_LEN + 1];
    if (e->d_name[0] == '.') {
      continue;
    }
    srv_upload_t* u = NULL;
    if (srv_orphan_id(e->d_name, ".part", id)) {
      u = core_idmap_get(&ctx->upload_index, id);
    }
    /* A completing upload's file is what its completion reads; a partial
     * upload's, complete or not, what a final will be made of. */
    if (u != NULL && (u->state == SRV_UPLOAD_RECEIVING ||
                      u->state == SRV_UPLOAD_COMPLETING ||
                      u->concat == SRV_CONCAT_PARTIAL)) {
      continue;
    }
    if (unlinkat(dirfd(dir), e->d_name, 0) == 0) {
      removed++;
      srv_log(&ctx->log, SRV_LOG_INFO, "uploads.orphan_removed", "s:file",
              e->d_name, NULL);
    }
  }
  closedir(dir);
  return removed;
}


int srv_upload_parse_metadata(srv_upload_t* u,
                              const char* value,
                              char* err,
                              size_t err_len) {
  core_tus_metadata_t m;
  if (core_tus_parse_metadata(value, &m, err, err_len) != 0) {
    return -1;
  }
  memcpy(u->filename, m.filename, sizeof(u->filename));
  memcpy(u->sha256, m.sha256, sizeof(u->sha256));
  snprintf(u->metadata, sizeof(u->metadata), "%s", value); /* it fits */
  return 0;
}


void srv_http_date(int64_t unix_us, char out[40]) {
  time_t t = (time_t) (unix_us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}


void srv_uploads_free_all(srv_ctx_t* ctx) {
  while (!core_list_is_empty(&ctx->uploads)) {
    core_list_t* node = core_list_front(&ctx->uploads);
    core_list_remove(node);
    srv_upload_t* u = CORE_CONTAINER_OF(node, srv_upload_t, link);
    srv_upload_unref(u);
  }
  core_idmap_free(&ctx->upload_index);
}
