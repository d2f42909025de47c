/* cmd_uploads.h: the routes of uploads (tus 1.0.0, /v1/uploads) and
 * volumes (/v1/volumes), for commands.c. cmd_uploads.c creates uploads;
 * cmd_upload_patch.c checks a PATCH and streams bodies (POST, PATCH) into
 * cmd_upload_body.c; cmd_tus.c answers OPTIONS, HEAD and DELETE;
 * cmd_volumes.c lists, shows and deletes volumes. Loop thread only. */
#ifndef SRV_CMD_UPLOADS_H
#define SRV_CMD_UPLOADS_H

#include "server/cmd_util.h"

/* At the end of the headers of a POST (with an octet-stream body) or a
 * PATCH of upload `id`: the sink its body streams to. NULL: gather the
 * body as usual (then srv_cmd_upload_create answers). */
srv_body_sink_t* srv_cmd_upload_stream(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len);

/* A streamed request is complete (rq->sink): answers once its bytes are
 * durable. */
srv_cmd_result_t srv_cmd_upload_body_done(srv_request_t* rq);

/* POST /v1/uploads without a body. */
srv_cmd_result_t srv_cmd_upload_create(srv_request_t* rq);

/* cmd_upload_patch.c: false after answering 412 when Tus-Resumable is
 * not 1.0.0. */
bool srv_cmd_tus_version_ok(srv_request_t* rq);

/* cmd_tus.c: OPTIONS, HEAD and DELETE of /v1/uploads[/{id}]. */
void srv_cmd_upload_options(srv_request_t* rq);
srv_cmd_result_t srv_cmd_upload_head(srv_request_t* rq,
                                     const char* id,
                                     size_t id_len);
srv_cmd_result_t srv_cmd_upload_delete(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len);

/* cmd_volumes.c: GET /v1/volumes, GET and DELETE /v1/volumes/{id}. */
void srv_cmd_list_volumes(srv_request_t* rq);
void srv_cmd_get_volume(srv_request_t* rq, const char* id, size_t id_len);
srv_cmd_result_t srv_cmd_delete_volume(srv_request_t* rq,
                                       const char* id,
                                       size_t id_len);

#endif
