/* cluster_rest.h: what a cluster gateway serves from Redis and the shared
 * directory beyond a job's creation and record (cmd_cluster.c): the lists
 * of jobs and volumes (cluster_list.c), volumes and volume jobs
 * (cluster_volumes.c), a job's deletion and artifact (cluster_jobs.c).
 * Redis keys (docs/operations.md, "Cluster"): cm:jobs:index, a sorted set
 * of job ids by creation time (added in the creation's MULTI/EXEC);
 * cm:vol:<id>, a hash (field record: the volume object and created_us);
 * cm:vols, a sorted set of volume ids by creation time. Loop thread only. */
#ifndef SRV_CLUSTER_REST_H
#define SRV_CLUSTER_REST_H

#include <jansson.h>
#include <stdbool.h>

#include "server/cmd_util.h"
#include "server/redis_conn.h"

#define SRV_CLUSTER_VOL_INDEX "cm:vols"

/* A page of a list, newest first, as --role all pages (protocol.md). */
typedef struct {
  long long total;  /* entries in the index */
  bool more;        /* entries follow the page's last */
  const char* last; /* the page's last id (the next cursor when more) */
  json_t* items;    /* the records, parsed (borrowed) */
} srv_cluster_page_t;

/* status 0 with the page, -ENOENT (the cursor names no entry) or another
 * negative error (page NULL). */
typedef void (*srv_cluster_page_cb)(void* arg,
                                    const srv_cluster_page_t* page,
                                    int status);

/* Reads a page of `index` (one EVAL, so it is consistent): entries after
 * `cursor` ("" for the first page), the hash field `field` of key
 * `prefix`<id> of each, only those whose "state" is `state` when it is
 * not "". 0 (cb runs), -ENOTCONN, -EBUSY or -ENOMEM. */
int srv_cluster_list(srv_ctx_t* ctx,
                     const char* index,
                     const char* prefix,
                     const char* field,
                     const char* cursor,
                     long limit,
                     const char* state,
                     srv_cluster_page_cb cb,
                     void* arg);

/* 503 for a Redis command not sent or not answered: -EBUSY overloaded,
 * -ENOSPC redis_full, -ETIMEDOUT redis_timeout, else redis_unavailable.
 * `created`: the id of the job a failed create was for (the messages say
 * whether it may exist), else NULL. */
void srv_cmd_cluster_reply_down(srv_conn_t* conn,
                                const srv_http_mode_t* mode,
                                int rc,
                                const char* created);

/* A command that could not be sent: frees `p` (its ticket released), answers
 * as srv_cmd_cluster_reply_down; returns SRV_CMD_DONE. */
srv_cmd_result_t srv_cmd_cluster_abort(srv_request_t* rq, pending_t* p, int rc);

/* 400 invalid_job_id unless `id` is a uuid; true when it is. */
bool srv_cmd_cluster_valid_id(srv_request_t* rq, const char* id, size_t len);

/* 501 shared_dir_required; returns SRV_CMD_DONE. */
srv_cmd_result_t srv_cmd_cluster_no_shared_dir(srv_request_t* rq);

/* GET /v1/jobs on a gateway. */
srv_cmd_result_t srv_cmd_cluster_list_jobs(srv_request_t* rq);

/* cm:vol:sha256:<hex> names the volume with those bytes (dedup);
 * cm:storage:used counts the bytes of volumes and artifacts (the quota). */
#define SRV_CLUSTER_SHA_PREFIX "cm:vol:sha256:"
#define SRV_CLUSTER_USED_KEY "cm:storage:used"

/* Worker: adds `job`'s artifact bytes to the counter, once per job (a
 * command to send inside the terminal record's MULTI; cluster_usage.c).
 * As srv_redis_command(). */
struct srv_cluster_s;
int srv_cluster_count_artifact(struct srv_cluster_s* c,
                               const srv_job_t* job,
                               srv_redis_reply_cb cb,
                               void* arg);

/* The sha256 index key of `sha256` (64 hex digits). */
void srv_cluster_sha_key(const char* sha256, char* out, size_t cap);

/* status 0 with the id the upload names now: v's, or that of the volume
 * with the same sha256 already stored (then v was not stored); else a
 * negative errno and NULL. */
typedef void (*srv_cluster_vol_cb)(void* arg, int status, const char* id);

/* Stores volume `v`'s record, index entry, sha256 entry and bytes in one
 * script, unless a volume with its sha256 exists (cluster_volumes.c). 0
 * (cb runs) or a negative errno (it does not). */
struct srv_volume_s; /* volumes.h (not included: volumes.c includes this) */
int srv_cluster_volume_put(srv_ctx_t* ctx,
                           const struct srv_volume_s* v,
                           srv_cluster_vol_cb cb,
                           void* arg);

/* GET /v1/volumes, GET and DELETE /v1/volumes/{id} on a gateway. */
srv_cmd_result_t srv_cmd_cluster_list_volumes(srv_request_t* rq);
srv_cmd_result_t srv_cmd_cluster_get_volume(srv_request_t* rq,
                                            const char* id,
                                            size_t len);
srv_cmd_result_t srv_cmd_cluster_delete_volume(srv_request_t* rq,
                                               const char* id,
                                               size_t len);

/* cmd_jobs.c: creates the job once its shape is known (on a gateway, in
 * Redis). 0: answered when recorded; -1: answered now (p not freed). */
int srv_cmd_start_create(srv_conn_t* conn,
                         pending_t* p,
                         const core_shape_t* shape,
                         const double voxel_size[3]);

/* POST /v1/jobs with a volume_id on a gateway: p (req, engine set) is
 * taken; the volume is read from Redis, then the job created as any. */
srv_cmd_result_t srv_cmd_cluster_volume_job(srv_request_t* rq, pending_t* p);

/* DELETE /v1/jobs/{id}?purge=1 (a cancel is cluster_cancel.c) and GET
 * /v1/jobs/{id}/artifacts/{name} on a gateway. */
srv_cmd_result_t srv_cmd_cluster_delete_job(srv_request_t* rq,
                                            const char* id,
                                            size_t len);
srv_cmd_result_t srv_cmd_cluster_artifact(srv_request_t* rq,
                                          const char* id,
                                          size_t len,
                                          const char* name,
                                          size_t name_len);

/* GET /v1/jobs/{id}/preview on a gateway: cm:prev:<id> as stored
 * (cluster_preview.c). */
srv_cmd_result_t srv_cmd_cluster_preview(srv_request_t* rq,
                                         const char* id,
                                         size_t len);

#endif
