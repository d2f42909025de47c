/* download.h: streams a file (an artifact) as an HTTP response body in
 * chunks read on the worker pool, one chunk in memory at a time, the next
 * read once the previous chunk is written. Loop thread only. */
#ifndef SRV_DOWNLOAD_H
#define SRV_DOWNLOAD_H

#include "server/ctx.h"

/* Starts sending `path` as the response to the current request; replies
 * 404 `missing_code` when the file cannot be opened. The conn's HTTP parsing
 * stays paused until the body is sent. Returns 0 or UV_ENOMEM. */
int srv_download_start(srv_conn_t* conn,
                       const char* path,
                       const char* content_type,
                       const char* missing_code);

/* The conn's queue drained: read and send the next chunk. */
void srv_download_on_drain(srv_conn_t* conn);

/* The conn is closing: the download finishes its file I/O on its own. */
void srv_download_detach(srv_conn_t* conn);

#endif
