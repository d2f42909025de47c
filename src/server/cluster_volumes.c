/* cluster_volumes.c: volumes in a cluster (cluster_rest.h). A gateway that
 * completes an upload links its file into shared_dir/volumes/ (volumes.c,
 * unchanged) and stores the volume here, in Redis, instead of its SQLite
 * store: every gateway and worker sees every volume. GET, list and DELETE
 * read and change Redis only; a job with a volume_id reads the volume's
 * record first (its shape and voxel size), then is created like any. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_rest.h"
#include "server/job_json.h"
#include "server/volumes.h"

typedef struct {
  srv_cluster_vol_cb cb;
  void* arg;
} put_t;


static void vol_key(const char* id, char* out, size_t cap) {
  snprintf(out, cap, "cm:vol:%.40s", id);
}


/* KEYS: the volume's hash, the index, its sha256 key, the usage counter;
 * ARGV: id, record, score, size. One script, so the check of the sha256
 * index and the volume's record are atomic: two gateways completing the
 * same bytes at once end with one volume (the second gets the first's id)
 * and the index never names a volume that is not there. An entry left
 * naming a deleted volume (an older version) is replaced. The bytes added
 * to the counter are kept in the hash (counted) for the DELETE. Returns
 * the id the upload now names. */
static const char k_put_script[] =
    "local other = redis.call('GET', KEYS[3])\n"
    "if other and redis.call('EXISTS', 'cm:vol:' .. other) == 1 then\n"
    "  return other\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'record', ARGV[2], 'counted', ARGV[4])\n"
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
    "redis.call('SET', KEYS[3], ARGV[1])\n"
    "redis.call('INCRBY', KEYS[4], ARGV[4])\n"
    "return ARGV[1]\n";


static void on_put(void* arg, redisReply* reply, int status) {
  put_t* p = arg;
  const char* id = NULL;
  if (status == 0 && (reply->type != REDIS_REPLY_STRING ||
                      !core_uuid_is_valid(reply->str, reply->len))) {
    status = srv_cluster_error_status(reply);
  } else if (status == 0) {
    id = reply->str;
  }
  p->cb(p->arg, status, id);
  free(p);
}


void srv_cluster_sha_key(const char* sha256, char* out, size_t cap) {
  snprintf(out, cap, "%s%.64s", SRV_CLUSTER_SHA_PREFIX, sha256);
}


int srv_cluster_volume_put(srv_ctx_t* ctx,
                           const srv_volume_t* v,
                           srv_cluster_vol_cb cb,
                           void* arg) {
  srv_cluster_t* c = ctx->cluster;
  if (c == NULL || !srv_redis_is_connected(c->cmd)) {
    return -ENOTCONN;
  }
  json_t* rec = srv_volume_to_json(v);
  if (rec != NULL) {
    json_object_set_new(rec, "created_us", json_integer(v->created_us));
  }
  char* rec_s = rec != NULL ? json_dumps(rec, JSON_COMPACT) : NULL;
  json_decref(rec);
  put_t* p = malloc(sizeof(*p));
  if (rec_s == NULL || p == NULL) {
    free(rec_s);
    free(p);
    return -ENOMEM;
  }
  *p = (put_t){cb, arg};
  char key[64], sha_key[96], score[32], size[32];
  vol_key(v->id, key, sizeof(key));
  srv_cluster_sha_key(v->sha256, sha_key, sizeof(sha_key));
  snprintf(score, sizeof(score), "%lld", (long long) v->created_us);
  snprintf(size, sizeof(size), "%llu", (unsigned long long) v->size_bytes);
  const char* argv[] = {
      "EVAL",  k_put_script,         "4",   key,   SRV_CLUSTER_VOL_INDEX,
      sha_key, SRV_CLUSTER_USED_KEY, v->id, rec_s, score,
      size};
  int rc = srv_redis_command_str(c->cmd, on_put, p, 11, argv);
  free(rec_s);
  if (rc != 0) {
    free(p);
  }
  return rc;
}


/* ---- reads ---- */

static void reply_not_found(srv_conn_t* conn, const srv_http_mode_t* mode) {
  srv_http_reply_error(conn, mode, 404, "volume_not_found",
                       "no volume has this id",
                       "GET /v1/volumes lists the volumes", false, NULL);
}


/* The API's volume object from a stored record (created_us dropped). */
static json_t* public_of(json_t* rec) {
  json_object_del(rec, "created_us");
  return rec;
}


typedef void (*got_cb)(pending_t* p, json_t* rec, int status);

typedef struct {
  pending_t* p;
  got_cb cb;
} get_t;


static void on_hget(void* arg, redisReply* reply, int status) {
  get_t* g = arg;
  json_t* rec = NULL;
  if (status == 0 && reply->type == REDIS_REPLY_NIL) {
    status = -ENOENT;
  } else if (status == 0 && reply->type == REDIS_REPLY_STRING) {
    rec = json_loadb(reply->str, reply->len, 0, NULL);
    status = json_is_object(rec) ? 0 : -EIO;
  } else if (status == 0) {
    status = -EIO;
  }
  g->cb(g->p, status == 0 ? rec : NULL, status);
  json_decref(rec);
  free(g);
}


/* Reads volume `id` (a valid uuid) for `p`; cb runs once. 0 or an errno. */
static int get_volume(srv_ctx_t* ctx, const char* id, pending_t* p, got_cb cb) {
  get_t* g = malloc(sizeof(*g));
  if (g == NULL) {
    return -ENOMEM;
  }
  *g = (get_t){p, cb};
  char key[64];
  vol_key(id, key, sizeof(key));
  const char* argv[] = {"HGET", key, "record"};
  size_t lens[] = {4, strlen(key), 6};
  int rc = srv_redis_command(ctx->cluster->cmd, on_hget, g, 3, argv, lens);
  if (rc != 0) {
    free(g);
  }
  return rc;
}


static bool valid_or_reply(srv_request_t* rq, const char* id, size_t len) {
  if (!core_uuid_is_valid(id, len)) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_volume_id",
                         "volume ids are UUIDs", NULL, false, NULL);
    return false;
  }
  return true;
}


/* Starts a read of volume `id` answered by cb. */
static srv_cmd_result_t start_get(srv_request_t* rq,
                                  const char* id,
                                  size_t len,
                                  got_cb cb) {
  if (!valid_or_reply(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  char key[CORE_UUID_STR_LEN + 1];
  memcpy(key, id, len);
  key[len] = '\0';
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = get_volume(rq->conn->ctx, key, p, cb);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}


static void on_got_volume(pending_t* p, json_t* rec, int status) {
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status == -ENOENT) {
    reply_not_found(conn, &p->mode);
  } else if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL) {
    srv_http_reply_json(conn, &p->mode, 200, public_of(json_incref(rec)), NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_get_volume(srv_request_t* rq,
                                            const char* id,
                                            size_t len) {
  return start_get(rq, id, len, on_got_volume);
}


static void on_volumes_page(void* arg,
                            const srv_cluster_page_t* page,
                            int status) {
  pending_t* p = arg;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn != NULL && status == -ENOENT) {
    srv_http_reply_error(conn, &p->mode, 400, "invalid_cursor",
                         "the cursor names no volume (it may have been "
                         "deleted)",
                         "start again without a cursor", false, NULL);
  } else if (conn != NULL && status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  } else if (conn != NULL) {
    size_t i;
    json_t* v;
    json_array_foreach(page->items, i, v) {
      public_of(v);
    }
    srv_http_reply_json(
        conn, &p->mode, 200,
        json_pack("{s:O, s:I, s:I, s:s?}", "volumes", page->items, "count",
                  (json_int_t) json_array_size(page->items), "total",
                  (json_int_t) page->total, "next_cursor",
                  page->more ? page->last : NULL),
        NULL);
  }
  srv_cmd_pending_done(p);
}


srv_cmd_result_t srv_cmd_cluster_list_volumes(srv_request_t* rq) {
  long limit = 0;
  if (!srv_cmd_query_limit(rq, &limit)) {
    return SRV_CMD_DONE;
  }
  char cursor[64] = "";
  if (srv_cmd_query_get(net_http_url(rq->http), "cursor", cursor,
                        sizeof(cursor)) &&
      !core_uuid_is_valid(cursor, strlen(cursor))) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_cursor",
                         "the cursor names no volume (it may have been "
                         "deleted)",
                         "start again without a cursor", false, NULL);
    return SRV_CMD_DONE;
  }
  pending_t* p = srv_cmd_pending_new(rq);
  if (p == NULL) {
    return srv_cmd_reply_oom(rq);
  }
  int rc = srv_cluster_list(rq->conn->ctx, SRV_CLUSTER_VOL_INDEX,
                            "cm:vol:", "record", cursor, limit, "",
                            on_volumes_page, p);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}


/* ---- delete ---- */

/* KEYS: the volume's hash, the index, the usage counter; ARGV: its id. 1
 * when it was there (gone now: record, index entry, its sha256 entry when
 * that names it, the bytes it added to the counter (field counted; none
 * for a volume stored before the counter existed), together), else 0. */
static const char k_delete_script[] =
    "local rec = redis.call('HGET', KEYS[1], 'record')\n"
    "if not rec then return 0 end\n"
    "local v = cjson.decode(rec)\n"
    "local n = tonumber(redis.call('HGET', KEYS[1], 'counted'))\n"
    "if n then redis.call('DECRBY', KEYS[3], n) end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "local sk = '" SRV_CLUSTER_SHA_PREFIX
    "' .. tostring(v.sha256)\n"
    "if redis.call('GET', sk) == ARGV[1] then redis.call('DEL', sk) end\n"
    "return 1\n";

typedef struct {
  uv_fs_t req;
  pending_t* p;
  char id[CORE_UUID_STR_LEN + 1];
} vdel_t;


static void on_vol_file_removed(uv_fs_t* req) {
  vdel_t* d = req->data;
  uv_fs_req_cleanup(req);
  srv_conn_t* conn = srv_cmd_pending_conn(d->p);
  if (conn != NULL) {
    srv_http_reply_json(conn, &d->p->mode, 200,
                        json_pack("{s:s}", "status", "deleted"), NULL);
  }
  srv_cmd_pending_done(d->p);
  free(d);
}


/* The record is gone for every gateway: the file goes before the answer
 * (a job reading it keeps its inode open, as on --role all). */
static void on_vol_deleted(void* arg, redisReply* reply, int status) {
  vdel_t* d = arg;
  pending_t* p = d->p;
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  bool gone =
      status == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
  if (status == 0 && !gone && reply->type != REDIS_REPLY_INTEGER) {
    status = srv_cluster_error_status(reply);
  }
  if (gone) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/volumes/%s.mrc",
             srv_config_files_dir(&p->ctx->cfg), d->id);
    d->req.data = d;
    if (uv_fs_unlink(p->ctx->loop, &d->req, path, on_vol_file_removed) == 0) {
      return;
    }
    if (conn != NULL) { /* the record is gone: the file is an orphan */
      srv_http_reply_json(conn, &p->mode, 200,
                          json_pack("{s:s}", "status", "deleted"), NULL);
    }
  } else if (conn != NULL && status == 0) {
    reply_not_found(conn, &p->mode);
  } else if (conn != NULL) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
  }
  srv_cmd_pending_done(p);
  free(d);
}


srv_cmd_result_t srv_cmd_cluster_delete_volume(srv_request_t* rq,
                                               const char* id,
                                               size_t len) {
  if (!valid_or_reply(rq, id, len)) {
    return SRV_CMD_DONE;
  }
  vdel_t* d = calloc(1, sizeof(*d));
  pending_t* p = d != NULL ? srv_cmd_pending_new(rq) : NULL;
  if (p == NULL) {
    free(d);
    return srv_cmd_reply_oom(rq);
  }
  d->p = p;
  memcpy(d->id, id, len);
  char key[64];
  vol_key(d->id, key, sizeof(key));
  const char* argv[] = {"EVAL", k_delete_script,       "3",
                        key,    SRV_CLUSTER_VOL_INDEX, SRV_CLUSTER_USED_KEY,
                        d->id};
  int rc = srv_redis_command_str(rq->conn->ctx->cluster->cmd, on_vol_deleted, d,
                                 7, argv);
  if (rc != 0) {
    free(d);
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}


/* ---- a job on a volume ---- */

static void on_job_volume(pending_t* p, json_t* rec, int status) {
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  if (conn == NULL) {
    srv_cmd_pending_done(p);
    return;
  }
  json_int_t d[3] = {0, 0, 0};
  double vs[3] = {0, 0, 0};
  if (status == 0 &&
      json_unpack(rec, "{s:[I,I,I], s:[F,F,F]}", "shape", &d[0], &d[1], &d[2],
                  "voxel_size", &vs[0], &vs[1], &vs[2]) != 0) {
    status = -EIO;
  }
  if (status == -ENOENT) {
    srv_http_reply_error(conn, &p->mode, 404, "volume_not_found",
                         "no volume has this volume_id",
                         "GET /v1/volumes lists the volumes", false, NULL);
    srv_cmd_pending_done(p);
    return;
  }
  if (status != 0) {
    srv_cmd_cluster_reply_down(conn, &p->mode, status, NULL);
    srv_cmd_pending_done(p);
    return;
  }
  core_shape_t shape;
  for (int i = 0; i < 3; i++) {
    shape.d[i] = (uint32_t) d[i];
  }
  if (p->req.has_voxel_size) {
    memcpy(vs, p->req.voxel_size, sizeof(vs));
  }
  if (srv_cmd_start_create(conn, p, &shape, vs) != 0) {
    srv_cmd_pending_done(p);
  }
}


srv_cmd_result_t srv_cmd_cluster_volume_job(srv_request_t* rq, pending_t* p) {
  int rc = get_volume(rq->conn->ctx, p->req.volume_id, p, on_job_volume);
  if (rc != 0) {
    return srv_cmd_cluster_abort(rq, p, rc);
  }
  return SRV_CMD_PENDING;
}
