/* conn.c: connection lifecycle. See conn.h. Reads land in the context's one
 * read buffer and are consumed before the callback returns (the protocol
 * parses them or copies what it must keep), so no connection owns a read
 * buffer. Loop thread only. */
#include "server/conn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ipnet.h"

#define LINGER_MS 2000 /* wait for the peer's FIN after ours */
/* A peer that does not read cannot receive our last bytes; give up on it. */
#define END_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 3000 /* at shutdown, for every connection */

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
static void on_wq(net_wqueue_t* wq, int status);


static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  (void) suggested;
  srv_conn_t* conn = handle->data;
  srv_ctx_t* ctx = conn->ctx;
  /* One shared buffer is enough: every read is consumed in on_read. */
  assert(!ctx->is_read_buf_busy);
  ctx->is_read_buf_busy = true;
  *buf = uv_buf_init((char*) ctx->read_buf, sizeof(ctx->read_buf));
}


/* Reads while the protocol wants input and the peer is not behind on what
 * we send it (a full queue means it does not read: stop taking requests). */
static void update_reading(srv_conn_t* conn) {
  bool want =
      conn->wants_read && !conn->is_closing && !net_wq_is_full(&conn->wq);
  if (want && !conn->is_reading) {
    if (uv_read_start((uv_stream_t*) &conn->tcp, on_alloc, on_read) == 0) {
      conn->is_reading = true;
    }
  } else if (!want && conn->is_reading) {
    uv_read_stop((uv_stream_t*) &conn->tcp);
    conn->is_reading = false;
  }
}


void srv_conn_want_read(srv_conn_t* conn, bool on) {
  conn->wants_read = on;
  update_reading(conn);
  if (!on || !net_wq_is_full(&conn->wq)) {
    return;
  }
  net_wq_drain(&conn->wq); /* resume reading once the queue drains */
}


static void on_handle_closed(uv_handle_t* handle) {
  srv_conn_t* conn = handle->data;
  if (--conn->open_handles > 0) {
    return;
  }
  net_wq_free_buffers(&conn->wq);
  if (conn->proto != NULL && conn->proto->on_free != NULL) {
    conn->proto->on_free(conn);
  }
  free(conn);
}


void srv_conn_close(srv_conn_t* conn) {
  if (conn->is_closing) {
    return;
  }
  srv_ctx_t* ctx = conn->ctx;
  conn->is_closing = true;
  conn->is_reading = false;
  if (conn->ticket != NULL) {
    conn->ticket->conn = NULL;
    conn->ticket = NULL;
  }
  if (conn->stream != NULL) {
    srv_stream_t* stream = conn->stream;
    conn->stream = NULL;
    stream->on_close(stream);
  }
  if (conn->proto != NULL && conn->proto->on_close != NULL) {
    conn->proto->on_close(conn);
  }
  core_list_remove(&conn->link);
  ctx->conn_count--;
  if (conn->is_addr_counted) {
    srv_addr_limit_release(&ctx->addr_limit, conn->client_ip);
    conn->is_addr_counted = false;
  }
  net_wq_close(&conn->wq);
  /* The protocol's parser may be on the stack (we can be called from its
   * callbacks): its state is freed in the close callback. */
  srv_log(&ctx->log, SRV_LOG_DEBUG, "conn.close", SRV_CONN_LOG_PEER(conn),
          NULL);
  uv_close((uv_handle_t*) &conn->linger_timer, on_handle_closed);
  uv_close((uv_handle_t*) &conn->tcp, on_handle_closed);
}


static void on_linger_timeout(uv_timer_t* timer) {
  srv_conn_close(timer->data);
}


static void on_shutdown(uv_shutdown_t* req, int status) {
  srv_conn_t* conn = req->data;
  if (conn->is_closing) {
    return;
  }
  if (status < 0) {
    srv_conn_close(conn);
    return;
  }
  /* Our FIN is out; keep reading (and discarding) until the peer's FIN. */
  conn->wants_read = true;
  update_reading(conn);
  uv_timer_start(&conn->linger_timer, on_linger_timeout, LINGER_MS, 0);
}


static void do_shutdown(srv_conn_t* conn) {
  conn->shutdown_req.data = conn;
  if (uv_shutdown(&conn->shutdown_req, (uv_stream_t*) &conn->tcp,
                  on_shutdown) != 0) {
    srv_conn_close(conn);
  }
}


void srv_conn_end(srv_conn_t* conn) {
  if (conn->is_closing || conn->is_shutting_down) {
    return;
  }
  conn->is_shutting_down = true;
  conn->ending_since_ms = uv_now(conn->ctx->loop);
  conn->wants_read = false;
  update_reading(conn);
  if (net_wq_drain(&conn->wq)) {
    do_shutdown(conn);
  }
}


int srv_conn_send(srv_conn_t* conn, net_frame_t* frame, net_wq_class_t cls) {
  if (conn->is_closing || conn->is_shutting_down) {
    return 0; /* after the last response: nothing more goes out */
  }
  if (net_wq_push(&conn->wq, frame, cls) != 0) {
    srv_conn_close(conn);
    return -1;
  }
  if (net_wq_is_full(&conn->wq)) {
    update_reading(conn);
    net_wq_drain(&conn->wq); /* on_wq resumes reading */
  }
  return 0;
}


int srv_conn_send_all(srv_conn_t* conn, net_frame_t* const* frames, size_t n) {
  if (conn->is_closing || conn->is_shutting_down) {
    return 0;
  }
  if (net_wq_push_all(&conn->wq, frames, n) != 0) {
    srv_conn_close(conn);
    return -1;
  }
  if (net_wq_is_full(&conn->wq)) {
    update_reading(conn);
    net_wq_drain(&conn->wq);
  }
  return 0;
}


bool srv_conn_wait_drain(srv_conn_t* conn) {
  return net_wq_drain(&conn->wq);
}


bool srv_conn_is_idle(const srv_conn_t* conn) {
  return !conn->wq.is_writing && conn->wq.item_count == 0 &&
         conn->wq.ctrl_len == 0;
}


void srv_conn_set_proto(srv_conn_t* conn,
                        const srv_proto_t* proto,
                        void* data) {
  conn->proto = proto;
  conn->proto_data = data;
}


static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  (void) buf;
  srv_conn_t* conn = stream->data;
  srv_ctx_t* ctx = conn->ctx;
  ctx->is_read_buf_busy = false;
  if (nread == 0) {
    return;
  }
  if (nread < 0) {
    /* EOF or reset: nothing more can be delivered either way. */
    srv_conn_close(conn);
    return;
  }
  conn->last_rx_ms = uv_now(ctx->loop);
  if (conn->is_shutting_down) {
    return; /* after our last bytes: discard until the FIN */
  }
  conn->proto->on_read(conn, ctx->read_buf, (size_t) nread);
}


static void on_wq(net_wqueue_t* wq, int status) {
  srv_conn_t* conn = wq->data;
  if (conn->is_closing) {
    return;
  }
  if (status < 0) {
    srv_conn_close(conn);
    return;
  }
  /* Everything queued was written. */
  if (conn->is_shutting_down) {
    do_shutdown(conn);
    return;
  }
  update_reading(conn);
  if (conn->stream != NULL) {
    conn->stream->on_drain(conn->stream);
  } else if (conn->proto->on_drain != NULL) {
    conn->proto->on_drain(conn);
  }
}


srv_ticket_t* srv_conn_ticket(srv_conn_t* conn) {
  assert(conn->ticket == NULL);
  srv_ticket_t* t = malloc(sizeof(*t));
  if (t != NULL) {
    t->conn = conn;
    conn->ticket = t;
  }
  return t;
}


void srv_ticket_release(srv_ticket_t* t) {
  if (t->conn != NULL) {
    t->conn->ticket = NULL;
  }
  free(t);
}


void srv_conn_resume(srv_conn_t* conn) {
  if (!conn->is_closing && conn->proto->on_resume != NULL) {
    conn->proto->on_resume(conn);
  }
}


static void describe_peer(srv_conn_t* conn) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  snprintf(conn->peer, sizeof(conn->peer), "?");
  if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr*) &addr, &len) != 0) {
    return;
  }
  int port = 0;
  if (addr.ss_family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*) &addr;
    uv_ip4_name(a, conn->peer_ip, sizeof(conn->peer_ip));
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*) &addr;
    uv_ip6_name(a, conn->peer_ip, sizeof(conn->peer_ip));
    port = ntohs(a->sin6_port);
  }
  snprintf(conn->peer, sizeof(conn->peer), "%s:%d", conn->peer_ip, port);
  snprintf(conn->client_ip, sizeof(conn->client_ip), "%s", conn->peer_ip);
  core_ip_t ip;
  const srv_config_t* c = &conn->ctx->cfg;
  conn->is_proxy =
      core_ip_parse(conn->peer_ip, strlen(conn->peer_ip), &ip) == 0 &&
      core_ipnet_any(c->trusted_proxies, c->trusted_proxy_count, &ip);
}


int srv_conn_set_client(srv_conn_t* conn, const char* ip, bool is_forwarded) {
  srv_ctx_t* ctx = conn->ctx;
  conn->is_forwarded = is_forwarded;
  if (conn->is_addr_counted && strcmp(conn->client_ip, ip) == 0) {
    return 0; /* the same client's next request */
  }
  srv_conn_release_client(conn);
  snprintf(conn->client_ip, sizeof(conn->client_ip), "%s", ip);
  if (!srv_addr_limit_acquire(&ctx->addr_limit, conn->client_ip,
                              ctx->cfg.max_connections_per_ip)) {
    return -1;
  }
  conn->is_addr_counted = ctx->cfg.max_connections_per_ip > 0;
  return 0;
}


void srv_conn_release_client(srv_conn_t* conn) {
  if (conn->is_addr_counted) {
    srv_addr_limit_release(&conn->ctx->addr_limit, conn->client_ip);
    conn->is_addr_counted = false;
  }
}


/* Out of memory for a connection: accept it into a heap handle and close
 * it, or the listener keeps reporting the same peer. */
static void on_dropped_closed(uv_handle_t* handle) {
  free(handle);
}


static void drop_connection(srv_ctx_t* ctx, uv_stream_t* listener) {
  uv_tcp_t* tmp = malloc(sizeof(*tmp));
  if (tmp == NULL) {
    return; /* nothing can be done until memory frees up */
  }
  uv_tcp_init(ctx->loop, tmp);
  uv_accept(listener, (uv_stream_t*) tmp);
  uv_close((uv_handle_t*) tmp, on_dropped_closed);
}


void srv_conn_on_connection(uv_stream_t* listener, int status) {
  srv_ctx_t* ctx = listener->data;
  if (status < 0) {
    srv_log(&ctx->log, SRV_LOG_WARN, "conn.accept_failed", "s:error",
            uv_strerror(status), NULL);
    return;
  }
  srv_conn_t* conn = calloc(1, sizeof(*conn));
  if (conn == NULL) {
    drop_connection(ctx, listener);
    return;
  }
  conn->ctx = ctx;
  uv_tcp_init(ctx->loop, &conn->tcp);
  uv_timer_init(ctx->loop, &conn->linger_timer);
  conn->tcp.data = conn;
  conn->linger_timer.data = conn;
  conn->open_handles = 2;
  core_list_init(&conn->link);
  core_list_push_back(&ctx->conns, &conn->link);
  ctx->conn_count++;
  ctx->metrics.connections_total++;
  net_wq_init(&conn->wq, (uv_stream_t*) &conn->tcp, on_wq, conn);
  conn->accepted_ms = conn->last_rx_ms = uv_now(ctx->loop);
  if (uv_accept(listener, (uv_stream_t*) &conn->tcp) != 0) {
    srv_conn_close(conn);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  describe_peer(conn);
  const char* refusal = NULL;
  if (ctx->is_stopping) {
    refusal = "the server is shutting down";
  } else if (ctx->conn_count > ctx->cfg.max_connections) {
    refusal = "the server has too many open connections";
  } else if (conn->is_proxy) {
    /* Its clients are known only from each request's headers: each is
     * counted then (srv_conn_set_client), the proxy's address never. */
  } else if (!srv_addr_limit_acquire(&ctx->addr_limit, conn->client_ip,
                                     ctx->cfg.max_connections_per_ip)) {
    refusal = "too many open connections from your address";
  } else {
    conn->is_addr_counted = ctx->cfg.max_connections_per_ip > 0;
  }
  ctx->on_accept(conn, refusal);
}


/* Drops the connections that stalled longest while the bytes held for slow
 * readers exceed the budget. A closed connection's frames are released
 * when libuv cancels its writes, so the estimate of what each frees is the
 * frames only it still references. */
static void shed_slow_readers(srv_ctx_t* ctx, uint64_t now) {
  uint64_t held = atomic_load(&ctx->held_bytes);
  while (held > ctx->cfg.max_held_bytes) {
    srv_conn_t* worst = NULL;
    core_list_t* it;
    core_list_t* tmp;
    CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
      srv_conn_t* c = CORE_CONTAINER_OF(it, srv_conn_t, link);
      if (srv_conn_is_idle(c) || c->is_closing) {
        continue;
      }
      if (worst == NULL || c->wq.progress_ms < worst->wq.progress_ms) {
        worst = c;
      }
    }
    if (worst == NULL) {
      return;
    }
    uint64_t frees = net_wq_unique_bytes(&worst->wq);
    srv_log(&ctx->log, SRV_LOG_WARN, "conn.slow_reader_dropped", "i:stalled_ms",
            (int64_t) (now - worst->wq.progress_ms), "i:held_bytes",
            (int64_t) held, SRV_CONN_LOG_PEER(worst), NULL);
    ctx->metrics.slow_readers_dropped++;
    srv_conn_close(worst);
    held = frees < held ? held - frees : 0;
  }
}


void srv_conns_sweep(srv_ctx_t* ctx) {
  uint64_t now = uv_now(ctx->loop);
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, link);
    if (conn->is_shutting_down) {
      uint64_t limit = ctx->is_stopping ? STOP_TIMEOUT_MS : END_TIMEOUT_MS;
      if (now - conn->ending_since_ms > limit) {
        srv_conn_close(conn); /* its last bytes never left: a stalled peer */
      }
      continue;
    }
    if (conn->proto->on_sweep != NULL) {
      conn->proto->on_sweep(conn, now);
    }
  }
  shed_slow_readers(ctx, now);
}


void srv_conns_shutdown(srv_ctx_t* ctx) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, link);
    if (conn->proto->on_shutdown != NULL) {
      conn->proto->on_shutdown(conn);
    } else {
      srv_conn_end(conn);
    }
  }
}
