/* http_api.h: the REST API (routes, handlers, JSON replies and the error
 * envelope). Loop thread only. */
#ifndef SRV_HTTP_API_H
#define SRV_HTTP_API_H

#include <jansson.h>
#include <stdbool.h>

#include "server/ctx.h"

/* Handles the complete request held by conn->http. Returns 0 (continue with
 * pipelined requests), 1 (pause: a response is being streamed; the conn
 * resumes parsing later) or -1 (stop reading: the connection ends after the
 * response, or was upgraded). */
int srv_http_handle(srv_conn_t* conn);

/* Sends a JSON response (`body` stolen) with `status`. */
void srv_http_reply_json(srv_conn_t* conn, int status, json_t* body);

/* Sends the error envelope; `hint` may be NULL. `extra_headers` (may be
 * NULL) are complete "Name: value\r\n" lines. */
void srv_http_reply_error(srv_conn_t* conn,
                          int status,
                          const char* code,
                          const char* message,
                          const char* hint,
                          bool retryable,
                          const char* extra_headers);

/* Answers GET /v1/jobs/{id}/preview from the job's latest preview. */
void srv_http_reply_preview(srv_conn_t* conn, srv_job_t* job);

/* A preview render the waiting requests asked for has landed (or failed):
 * answers each and lets its connection go on. */
void srv_http_preview_ready(srv_job_t* job);

/* Sends a status line and headers for a body of `len` bytes that the caller
 * sends next (streamed). */
void srv_http_reply_head(srv_conn_t* conn,
                         int status,
                         const char* content_type,
                         uint64_t len,
                         const char* extra_headers);

#endif
