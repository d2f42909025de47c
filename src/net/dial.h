/* dial.h: client side of TCP: resolves a host (numeric addresses without a
 * lookup, names with uv_getaddrinfo, IPv4 preferred because the server binds
 * 127.0.0.1 by default) and connects an initialised uv_tcp_t. Shared by the
 * HTTP and WebSocket clients. Loop thread only. */
#ifndef NET_DIAL_H
#define NET_DIAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct net_dial_s net_dial_t;

/* Called once: status 0 (connected) or a libuv error (UV_ECANCELED after
 * net_dial_cancel or when the tcp handle was closed meanwhile). */
typedef void (*net_dial_cb)(net_dial_t* d, int status);

struct net_dial_s {
  uv_getaddrinfo_t gai;
  uv_connect_t req;
  uv_tcp_t* tcp; /* borrowed; initialised by the owner */
  uint16_t port;
  bool is_resolving;
  bool is_cancelled;
  net_dial_cb cb;
  void* data;
};

/* Starts resolving `host` and connecting `tcp` to it. `d` must stay alive
 * until cb has run. Returns 0 or a libuv error (then cb never runs). */
int net_dial_start(net_dial_t* d,
                   uv_tcp_t* tcp,
                   const char* host,
                   uint16_t port,
                   net_dial_cb cb,
                   void* data);

/* Stops a lookup in progress (cb gets UV_ECANCELED). A connect in progress
 * is stopped by closing the tcp handle. */
void net_dial_cancel(net_dial_t* d);

#endif
