/* ws_conn.h: the WebSocket side of a connection, /ws/jobs/{id}: the
 * handshake, the subscription (a sink on the job's topic: connected, latest
 * preview, events, terminal message), client messages (ping; anything else
 * is answered with an error message), keepalive, close codes, and
 * back-pressure as one state machine (reading / waiting for drain /
 * closing) that covers wslay's control frames as well as our data frames.
 * Loop thread only. */
#ifndef SRV_WS_CONN_H
#define SRV_WS_CONN_H

#include "net/http_reader.h"
#include "server/conn.h"

/* Serves the upgrade request held by `req` (its route is /ws/jobs/{id} and
 * it is authorised). On success the connection speaks WebSocket and `rest`
 * (the bytes after the request) is fed to it; a bad or unknown id is
 * answered with close 4000/4404, a full job with 4429. A bad handshake gets
 * an HTTP error and the connection stays HTTP (and ends). */
void srv_ws_upgrade(srv_conn_t* conn,
                    const net_http_reader_t* req,
                    const uint8_t* rest,
                    size_t rest_len);

#endif
