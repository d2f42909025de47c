/* http_conn.h: the HTTP/1.1 side of a connection: requests parsed by
 * http-parser (net/http_reader.c) within size limits and total deadlines
 * (headers, body, idle keep-alive, a response that is not being read),
 * pipelining, requests answered asynchronously (input held meanwhile), and
 * the hand-over to ws_conn.c after an upgrade. Loop thread only. */
#ifndef SRV_HTTP_CONN_H
#define SRV_HTTP_CONN_H

#include "server/conn.h"

/* ctx->on_accept: every connection starts as HTTP. */
void srv_http_conn_accept(srv_conn_t* conn, const char* refusal);

#endif
