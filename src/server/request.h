/* request.h: a parsed HTTP request as the commands see it, and what a
 * command answers about the connection's next step. A type-only leaf
 * shared by http_conn.c and the command files. */
#ifndef SRV_REQUEST_H
#define SRV_REQUEST_H

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

#endif
