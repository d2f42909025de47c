/* proxy.h: requests relayed by a trusted reverse proxy (--trusted-proxy).
 * Only on a connection whose TCP peer is trusted does X-Forwarded-For
 * count: each request's client is the right-most address of that header
 * that is not itself a trusted proxy (core/ipnet.h), and that client is
 * what per-address limits and logs see. A connection from a trusted proxy
 * is counted under no address when accepted; each request on it is
 * counted under its client from its headers until its exchange is over
 * (a WebSocket: until it closes). Loop thread only. */
#ifndef SRV_PROXY_H
#define SRV_PROXY_H

#include "net/http_reader.h"
#include "server/conn.h"

/* A request's headers are complete (`r`): on a trusted proxy's connection
 * the connection now counts for the request's client. Returns 0, or -1
 * when that client has --max-connections-per-ip connections already (the
 * request must be refused: 503 too_many_connections). */
int srv_proxy_begin_request(srv_conn_t* conn, const net_http_reader_t* r);

/* The request's exchange is over and no other has begun: a trusted proxy's
 * connection stops counting for its client. */
void srv_proxy_end_request(srv_conn_t* conn);

#endif
