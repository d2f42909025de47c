/* commands.h: the REST commands (routes under /v1, /metrics and the
 * WebSocket route's authorisation): each takes a parsed request, acts on the
 * job registry and answers through http_reply.c -- at once, or after the
 * store's commit or a render (then the connection's input waits, and the
 * command calls srv_conn_resume() once it has answered). Loop thread only. */
#ifndef SRV_COMMANDS_H
#define SRV_COMMANDS_H

#include "server/request.h"

/* At the end of a request's headers: the sink its body streams to (a
 * PATCH or POST of an upload), or NULL to gather the body as usual. */
srv_body_sink_t* srv_commands_stream(srv_request_t* req);

/* Routes and answers one complete request. */
srv_cmd_result_t srv_commands_handle(srv_request_t* req);

/* The request's headers are complete, its body not read yet (http_conn.c
 * calls it as the reader's on_headers callback). Answers Expect: sends
 * "100 Continue", or refuses before the body: 401/403 without the token
 * the route needs, 417 for another expectation (Connection: close).
 * Returns SRV_CMD_DONE (read on) or SRV_CMD_CLOSE (answered; end). */
srv_cmd_result_t srv_commands_on_headers(srv_request_t* req);

#endif
