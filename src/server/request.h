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

/* Where a streamed request body goes (a PATCH to an upload): chosen by
 * srv_commands_stream() once the headers are complete, fed every piece,
 * then handed back to the command with the complete request (rq->sink) or
 * told that the connection closed first. The command owns it; http_conn.c
 * borrows it from the headers until the request completes or on_abort. */
typedef struct srv_body_sink_s srv_body_sink_t;
struct srv_body_sink_s {
  /* A piece of the body (borrowed for the call). Returns 0 to go on, 1 to
   * pause reading until the sink calls srv_conn_resume() (never from inside
   * this call), or -1 to close the connection. */
  int (*on_chunk)(srv_body_sink_t* sink, const uint8_t* bytes, size_t len);
  /* The connection closed before the request was complete: let go of it
   * (and never resume it). */
  void (*on_abort)(srv_body_sink_t* sink);
};

typedef struct {
  srv_conn_t* conn;
  const net_http_reader_t* http; /* the complete request (or its headers) */
  srv_http_mode_t mode;          /* how the answer ends the exchange */
  srv_body_sink_t* sink;         /* the body's sink when it was streamed */
} srv_request_t;

#endif
