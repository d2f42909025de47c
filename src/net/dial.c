/* dial.c: resolve and connect. See dial.h. Loop thread only. */
#include "net/dial.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>


static void on_connect(uv_connect_t* req, int status) {
  net_dial_t* d = req->data;
  d->cb(d, d->is_cancelled && status == 0 ? UV_ECANCELED : status);
}


static int connect_to(net_dial_t* d, const struct sockaddr* addr) {
  d->req.data = d;
  return uv_tcp_connect(&d->req, d->tcp, addr, on_connect);
}


static void on_resolved(uv_getaddrinfo_t* gai,
                        int status,
                        struct addrinfo* res) {
  net_dial_t* d = gai->data;
  d->is_resolving = false;
  if (d->is_cancelled) {
    uv_freeaddrinfo(res);
    d->cb(d, UV_ECANCELED);
    return;
  }
  if (status != 0) {
    uv_freeaddrinfo(res);
    d->cb(d, status);
    return;
  }
  const struct addrinfo* pick = res;
  for (const struct addrinfo* ai = res; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  }
  int err = pick != NULL ? connect_to(d, pick->ai_addr) : UV_EAI_NONAME;
  uv_freeaddrinfo(res);
  if (err != 0) {
    d->cb(d, err);
  }
}


int net_dial_start(net_dial_t* d,
                   uv_tcp_t* tcp,
                   const char* host,
                   uint16_t port,
                   net_dial_cb cb,
                   void* data) {
  memset(d, 0, sizeof(*d));
  d->tcp = tcp;
  d->port = port;
  d->cb = cb;
  d->data = data;
  struct sockaddr_storage ss;
  if (uv_ip4_addr(host, port, (struct sockaddr_in*) &ss) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6*) &ss) == 0) {
    return connect_to(d, (const struct sockaddr*) &ss);
  }
  char service[8];
  snprintf(service, sizeof(service), "%u", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  d->gai.data = d;
  int err =
      uv_getaddrinfo(tcp->loop, &d->gai, on_resolved, host, service, &hints);
  if (err == 0) {
    d->is_resolving = true;
  }
  return err;
}


void net_dial_cancel(net_dial_t* d) {
  d->is_cancelled = true;
  if (d->is_resolving) {
    uv_cancel((uv_req_t*) &d->gai);
  }
}
