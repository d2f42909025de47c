/* test_client_reconnect.c: a subscription that cannot connect gives up
 * after max_reconnect_attempts, however the attempts fail: refused by a
 * closed port, accepted and hung up by a listener before the handshake,
 * or refused synchronously by net_wsc_start() itself (a failure it can
 * report at once: no memory, no randomness, a socket it cannot make). The
 * last case is injected: this executable is linked with
 * -Wl,--wrap=net_wsc_start, so the library's calls reach
 * __wrap_net_wsc_start below. Caller's-thread clients: the run ends with
 * on_closed. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_int.h"
#include "fake_ws.h"
#include "net/ws_client.h"

/* The injection: how many times the library started a connection, and
 * whether to refuse at once. Only the test's (single) thread runs the
 * client's loop. */
static int wsc_starts;
static int wsc_sync_error;

/* Declared from the real one, so that a change of its signature fails to
 * compile here instead of passing the wrong arguments on. */
__typeof__(net_wsc_start) __real_net_wsc_start, __wrap_net_wsc_start;

int __wrap_net_wsc_start(net_wsc_t* wsc,
                         uv_loop_t* loop,
                         const net_wsc_opts_t* opts,
                         net_wsc_open_cb on_open,
                         net_wsc_msg_cb on_msg,
                         net_wsc_skip_cb on_skip,
                         net_wsc_close_cb on_close,
                         void* data) {
  wsc_starts++;
  if (wsc_sync_error != 0) {
    return wsc_sync_error;
  }
  return __real_net_wsc_start(wsc, loop, opts, on_open, on_msg, on_skip,
                              on_close, data);
}


typedef struct {
  int connecting, reconnecting, closed_events;
  unsigned last_attempt;
  int closed_reason;
  int closed;
  int status;
} tally_t;

static void on_state(cm_sub_t* sub, const cm_conn_event_t* ev, void* u) {
  (void) sub;
  tally_t* t = u;
  switch (ev->state) {
  case CM_CONN_CONNECTING:
    t->connecting++;
    break;
  case CM_CONN_RECONNECTING:
    t->reconnecting++;
    t->last_attempt = ev->attempt;
    break;
  case CM_CONN_OPEN:
    break;
  case CM_CONN_CLOSED:
    t->closed_events++;
    t->closed_reason = ev->reason;
    break;
  }
}

static void on_closed(cm_sub_t* sub, int status, void* u) {
  tally_t* t = u;
  t->closed++;
  t->status = status;
  cm_sub_free(sub);
}


/* Subscribes through 127.0.0.1:port with max_reconnect_attempts `max` and
 * runs the loop until the subscription ends. */
static tally_t run_until_closed(uint16_t port, uint32_t max) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", port);
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = url;
  o.reconnect_initial_ms = 2;
  o.reconnect_max_ms = 10;
  o.max_reconnect_attempts = max;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  static const cm_sub_cbs_t cbs = {.on_state = on_state,
                                   .on_closed = on_closed};
  tally_t t = {0};
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start(c, FAKE_JOB, &cbs, &t, &sub), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cm_client_free(c);
  cr_assert_eq(t.closed, 1);
  return t;
}


/* A loopback port nothing listens on: bound, then closed. */
static uint16_t closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(fd, (struct sockaddr*) &a, sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, (struct sockaddr*) &a, &len);
  close(fd);
  return ntohs(a.sin_port);
}


Test(client_reconnect, refused_connections_give_up_after_max, .timeout = 10) {
  wsc_starts = 0;
  tally_t t = run_until_closed(closed_port(), 3);
  cr_assert_eq(t.status, CM_EGAVEUP);
  cr_assert_eq(wsc_starts, 4, "connections started: %d", wsc_starts);
  cr_assert_eq(t.connecting, 4);
  cr_assert_eq(t.reconnecting, 3);
  cr_assert_eq(t.last_attempt, 3);
  cr_assert_eq(t.closed_events, 1);
  cr_assert_eq(t.closed_reason, UV_ECONNREFUSED);
}


Test(client_reconnect, hang_ups_before_the_handshake_count, .timeout = 10) {
  fake_t f = {0};
  fake_add(&f, 0, ACT_HANGUP, NULL, 0);
  f.serve_count = 10;
  fake_start(&f);
  tally_t t = run_until_closed(f.port, 2);
  fake_stop(&f);
  cr_assert_eq(t.status, CM_EGAVEUP);
  cr_assert_eq(f.accepted, 3, "connections accepted: %d", f.accepted);
  cr_assert_eq(t.reconnecting, 2);
}


Test(client_reconnect,
     synchronous_connect_failures_count_and_give_up,
     .timeout = 10) {
  wsc_starts = 0;
  wsc_sync_error = UV_ENETUNREACH;
  tally_t t = run_until_closed(closed_port(), 3);
  wsc_sync_error = 0;
  cr_assert_eq(t.status, CM_EGAVEUP);
  cr_assert_eq(wsc_starts, 4, "connections started: %d", wsc_starts);
  cr_assert_eq(t.connecting, 4);
  cr_assert_eq(t.reconnecting, 3);
  cr_assert_eq(t.closed_reason, UV_ENETUNREACH);
}
