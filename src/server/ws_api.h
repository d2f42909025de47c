/* ws_api.h: WebSocket endpoint /ws/jobs/{id}: the upgrade, the subscription
 * (connected, latest preview, terminal message), client messages (ping,
 * anything else answered with an error message) and close codes. */
#ifndef SRV_WS_API_H
#define SRV_WS_API_H

#include "server/ctx.h"

/* Performs the upgrade for the request held by conn->http (its path
 * matched /ws/jobs/{id}). On success the conn speaks WebSocket, `rest` (the
 * bytes after the request) is fed to it, and a bad or unknown id is answered
 * with close 4000/4404. A bad handshake gets an HTTP error instead. */
void srv_ws_upgrade(srv_conn_t* conn, const uint8_t* rest, size_t rest_len);

/* Unsubscribes a closing connection from its job. */
void srv_ws_detach(srv_conn_t* conn);

#endif
