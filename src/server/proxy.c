/* proxy.c: the client behind a trusted reverse proxy. See proxy.h. */
#include "server/proxy.h"

#include <string.h>

#include "core/ipnet.h"


int srv_proxy_begin_request(srv_conn_t* conn, const net_http_reader_t* r) {
  if (!conn->is_proxy) {
    return 0; /* an untrusted peer's X-Forwarded-For is its own say-so */
  }
  const srv_config_t* c = &conn->ctx->cfg;
  const char* values[NET_HTTP_MAX_HEADERS];
  size_t n =
      net_http_header_all(r, "X-Forwarded-For", values, NET_HTTP_MAX_HEADERS);
  core_ip_t peer;
  core_ip_t client;
  if (core_ip_parse(conn->peer_ip, strlen(conn->peer_ip), &peer) != 0) {
    return srv_conn_set_client(conn, conn->peer_ip, false); /* cannot be */
  }
  unsigned taken = core_xff_client(values, n, c->trusted_proxies,
                                   c->trusted_proxy_count, &peer, &client);
  if (taken == 0) {
    /* No usable header: the proxy's own request, under its address. */
    return srv_conn_set_client(conn, conn->peer_ip, false);
  }
  char text[CORE_IP_TEXT_MAX];
  core_ip_format(&client, text, sizeof(text));
  return srv_conn_set_client(conn, text, true);
}


void srv_proxy_end_request(srv_conn_t* conn) {
  if (conn->is_proxy) {
    srv_conn_release_client(conn);
  }
}
