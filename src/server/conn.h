/* conn.h: one client connection, from accept to close: reading, the HTTP
 * phase (requests dispatched to http_api.c), the upgrade to WebSocket
 * (ws_api.c), output through its wqueue, timeouts and the graceful close
 * (close frame or last response written, then FIN, then a bounded wait for
 * the peer's FIN). Loop thread only; a conn is freed in its close callback. */
#ifndef SRV_CONN_H
#define SRV_CONN_H

#include "server/ctx.h"

/* The listener's connection callback. */
void srv_conn_on_connection(uv_stream_t* listener, int status);

/* Queues a shared frame to the peer; closes the connection when queuing
 * fails, and stops reading from a peer whose queue is full. */
void srv_conn_send(srv_conn_t* conn, net_frame_t* frame, net_wq_class_t cls);

/* Ends gracefully: once everything queued is written, shut down writing and
 * wait (bounded) for the peer to close. */
void srv_conn_end(srv_conn_t* conn);

/* Closes at once (errors, timeouts). Idempotent. */
void srv_conn_close(srv_conn_t* conn);

/* Resumes HTTP parsing after a paused request (a finished download). */
void srv_conn_resume_http(srv_conn_t* conn);

/* Periodic housekeeping: keepalive pings, dead peers, idle HTTP. */
void srv_conns_sweep(srv_ctx_t* ctx);

/* Server shutdown: WebSockets get close 1001, HTTP connections end. */
void srv_conns_shutdown(srv_ctx_t* ctx);

#endif
