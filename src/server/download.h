/* download.h: streams a file (an artifact) as an HTTP response body in
 * chunks read on the worker pool, one chunk in memory at a time, the next
 * read once the previous chunk is written (the connection's srv_stream_t).
 * When the body is out the connection resumes (srv_conn_resume). Loop
 * thread only. */
#ifndef SRV_DOWNLOAD_H
#define SRV_DOWNLOAD_H

#include "server/http_reply.h"

/* Starts sending `path` as the response to the current request; answers
 * 404 `missing_code` when the file cannot be opened. Returns 0 (the answer
 * comes, then srv_conn_resume) or UV_ENOMEM (nothing was sent). */
int srv_download_start(srv_conn_t* conn,
                       const srv_http_mode_t* mode,
                       const char* path,
                       const char* content_type,
                       const char* missing_code);

#endif
