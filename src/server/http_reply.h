/* http_reply.h: HTTP/1.1 responses written to a connection: JSON bodies,
 * the error envelope {"error":{"code","message","hint","retryable"}}, a head
 * for a streamed body, and a shared body (a slice of a frame other
 * connections also send, never copied). A leaf: it knows the connection's
 * write queue and nothing of requests or routes. Loop thread only. */
#ifndef SRV_HTTP_REPLY_H
#define SRV_HTTP_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/conn.h"

/* How a response ends the exchange; set by the request's handler. */
typedef struct {
  bool keep_alive; /* the request allows another one after this */
  bool head_only;  /* HEAD: headers as for GET, no body */
} srv_http_mode_t;

/* Sends a status line, headers and `body` (copied once into the response
 * frame, then shared). `extra_headers` (may be NULL) are whole
 * "Name: value\r\n" lines. Returns 0 or -1 (the connection was closed). */
int srv_http_reply(srv_conn_t* conn,
                   const srv_http_mode_t* mode,
                   int status,
                   const char* content_type,
                   const void* body,
                   size_t body_len,
                   const char* extra_headers);

/* Sends `body` (stolen) as JSON. */
int srv_http_reply_json(srv_conn_t* conn,
                        const srv_http_mode_t* mode,
                        int status,
                        json_t* body,
                        const char* extra_headers);

/* Sends the error envelope; `hint` may be NULL. */
int srv_http_reply_error(srv_conn_t* conn,
                         const srv_http_mode_t* mode,
                         int status,
                         const char* code,
                         const char* message,
                         const char* hint,
                         bool retryable,
                         const char* extra_headers);

/* Sends the interim "HTTP/1.1 100 Continue": the client may now send the
 * body it held back (Expect: 100-continue). Returns 0 or -1 (closed). */
int srv_http_reply_continue(srv_conn_t* conn);

/* Sends a head announcing `len` body bytes that the caller sends next (a
 * streamed download). */
int srv_http_reply_head(srv_conn_t* conn,
                        const srv_http_mode_t* mode,
                        int status,
                        const char* content_type,
                        uint64_t len,
                        const char* extra_headers);

/* Sends a head and then `len` bytes at `offset` in `shared` as the body,
 * by reference: every reader of the same preview shares its bytes. */
int srv_http_reply_shared(srv_conn_t* conn,
                          const srv_http_mode_t* mode,
                          int status,
                          const char* content_type,
                          net_frame_t* shared,
                          size_t offset,
                          size_t len);

#endif
