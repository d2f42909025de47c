/* commands.h: the REST commands (routes under /v1, /metrics and the
 * WebSocket route's authorisation): each takes a parsed request, acts on the
 * job registry and answers through http_reply.c -- at once, or after the
 * store's commit or a render (then the connection's input waits, and the
 * command calls srv_conn_resume() once it has answered). Loop thread only. */
#ifndef SRV_COMMANDS_H
#define SRV_COMMANDS_H

#include "net/http_reader.h"
#include "server/http_reply.h"

typedef enum {
  SRV_CMD_DONE,    /* answered; go on with pipelined requests */
  SRV_CMD_PENDING, /* will answer later, then srv_conn_resume() */
  SRV_CMD_CLOSE,   /* answered; end the connection after it */
  SRV_CMD_UPGRADE  /* the request is a WebSocket upgrade to serve */
} srv_cmd_result_t;

typedef struct {
  srv_conn_t* conn;
  const net_http_reader_t* http; /* the complete request */
  srv_http_mode_t mode;          /* how the answer ends the exchange */
} srv_request_t;

/* Routes and answers one complete request. */
srv_cmd_result_t srv_commands_handle(srv_request_t* req);

#endif
