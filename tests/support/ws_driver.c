/* ws_driver.c: ws_conn.c's state machine over conn.c's calls, for tests.
 * See ws_driver.h. Each function names the one it mirrors; where they
 * differ it is said why. Loop thread only. */
#include "ws_driver.h"

#include <string.h>

static void update_flow(ws_driver_t* d);
static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);


static void fault(ws_driver_t* d, const char* what, int status) {
  if (d->hooks->on_fault != NULL) {
    d->hooks->on_fault(d, what, status);
  }
}


static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void) suggested;
  ws_driver_t* d = h->data;
  size_t len = sizeof(d->read_buf);
  if (d->hooks->read_size != NULL) {
    len = d->hooks->read_size(d);
  }
  *buf = uv_buf_init((char*) d->read_buf, (unsigned) len);
}


/* conn.c update_reading(): a full queue means the peer is behind. */
static void update_reading(ws_driver_t* d) {
  bool want = d->wants_read && !d->is_closing && !net_wq_is_full(&d->wq);
  if (want && !d->is_reading) {
    if (uv_read_start((uv_stream_t*) &d->pipe, on_alloc, on_read) == 0) {
      d->is_reading = true;
    }
  } else if (!want && d->is_reading) {
    uv_read_stop((uv_stream_t*) &d->pipe);
    d->is_reading = false;
  }
}


/* conn.c srv_conn_want_read() */
static void want_read(ws_driver_t* d, bool on) {
  d->wants_read = on;
  update_reading(d);
  if (!on || !net_wq_is_full(&d->wq)) {
    return;
  }
  net_wq_drain(&d->wq); /* resume reading once the queue drains */
}


static void on_closed(uv_handle_t* h) {
  ws_driver_t* d = h->data;
  net_wq_free_buffers(&d->wq);
  net_ws_free(&d->ws);
  d->is_closed = true;
  if (d->hooks->on_closed != NULL) {
    d->hooks->on_closed(d);
  }
}


/* conn.c srv_conn_close() */
void ws_driver_close(ws_driver_t* d) {
  if (d->is_closing) {
    return;
  }
  d->is_closing = true;
  d->is_reading = false;
  net_wq_close(&d->wq);
  uv_close((uv_handle_t*) &d->pipe, on_closed);
}


/* conn.c on_shutdown(), without the linger timer: the tests' clients
 * close promptly, and a watchdog of theirs bounds any wait. */
static void on_shutdown(uv_shutdown_t* req, int status) {
  ws_driver_t* d = req->data;
  if (d->is_closing) {
    return;
  }
  if (status < 0) {
    fault(d, "shutdown failed", status);
    ws_driver_close(d);
    return;
  }
  /* Our FIN is out; keep reading (and discarding) until the peer's FIN. */
  d->wants_read = true;
  update_reading(d);
}


/* conn.c do_shutdown() */
static void do_shutdown(ws_driver_t* d) {
  d->shutdown_req.data = d;
  if (uv_shutdown(&d->shutdown_req, (uv_stream_t*) &d->pipe, on_shutdown) !=
      0) {
    ws_driver_close(d);
  }
}


/* conn.c srv_conn_end() */
static void conn_end(ws_driver_t* d) {
  if (d->is_closing || d->is_shutting_down) {
    return;
  }
  d->is_shutting_down = true;
  d->wants_read = false;
  update_reading(d);
  if (net_wq_drain(&d->wq)) {
    do_shutdown(d);
  }
}


/* conn.c srv_conn_send() */
static void conn_send(ws_driver_t* d, net_frame_t* f, net_wq_class_t cls) {
  if (d->is_closing || d->is_shutting_down) {
    return; /* after the last response: nothing more goes out */
  }
  int err = net_wq_push(&d->wq, f, cls);
  if (err != 0) {
    fault(d, "net_wq_push failed", err);
    ws_driver_close(d);
    return;
  }
  if (net_wq_is_full(&d->wq)) {
    update_reading(d);
    net_wq_drain(&d->wq); /* on_wq resumes reading */
  }
}


/* ws_conn.c update_flow() */
static void update_flow(ws_driver_t* d) {
  for (;;) {
    if (d->is_closing) {
      return;
    }
    if (d->ws.is_closing) {
      d->flow = WS_DRIVER_CLOSING;
      conn_end(d);
      return;
    }
    if (!d->ws.is_paused && !net_wq_is_full(&d->wq)) {
      d->flow = WS_DRIVER_READING;
      want_read(d, true);
      return;
    }
    if (d->flow != WS_DRIVER_DRAINING) {
      d->drainings++;
    }
    d->flow = WS_DRIVER_DRAINING;
    want_read(d, false);
    if (!net_wq_drain(&d->wq)) {
      return; /* on_drain comes back here */
    }
    /* Already drained: let wslay write what it held back, then look again. */
    if (net_ws_resume(&d->ws) != 0) {
      ws_driver_close(d);
      return;
    }
  }
}


/* ws_conn.c on_drain() */
static void on_drain(ws_driver_t* d) {
  if (d->flow != WS_DRIVER_DRAINING) {
    return;
  }
  if (net_ws_resume(&d->ws) != 0) {
    ws_driver_close(d);
    return;
  }
  if (d->ws.is_paused) {
    d->paused_on_resume++; /* the path that once stalled for good */
  }
  update_flow(d);
}


/* conn.c on_wq() */
static void on_wq(net_wqueue_t* wq, int status) {
  ws_driver_t* d = wq->data;
  if (d->is_closing) {
    return;
  }
  if (status < 0) {
    fault(d, "a write failed", status);
    ws_driver_close(d);
    return;
  }
  /* Everything queued was written. */
  if (d->is_shutting_down) {
    do_shutdown(d);
    return;
  }
  update_reading(d);
  on_drain(d);
}


/* conn.c on_read(), then ws_conn.c on_read() */
static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  (void) buf;
  ws_driver_t* d = s->data;
  if (nread == 0) {
    return;
  }
  if (nread < 0) {
    /* The server closes either way; before our close went out, a healthy
     * test client never ends its input. */
    if (nread != UV_EOF || !d->is_shutting_down) {
      fault(d, "input ended before the close", (int) nread);
    }
    ws_driver_close(d);
    return;
  }
  if (d->is_shutting_down) {
    return; /* after our last bytes: discard until the FIN */
  }
  if (net_ws_feed(&d->ws, d->read_buf, (size_t) nread) != 0) {
    fault(d, "net_ws_feed failed", UV_ENOMEM);
    ws_driver_close(d);
    return;
  }
  update_flow(d);
  if (d->hooks->on_fed != NULL && !d->is_closing) {
    d->hooks->on_fed(d);
  }
}


/* ws_conn.c sink_deliver() */
void ws_driver_deliver(ws_driver_t* d, net_frame_t* f, net_wq_class_t cls) {
  if (d->ws.is_closing) {
    return; /* no data frame after a close frame */
  }
  conn_send(d, f, cls);
  if (!d->is_closing && d->flow == WS_DRIVER_READING &&
      net_wq_is_full(&d->wq)) {
    update_flow(d);
  }
}


int ws_driver_start(ws_driver_t* d,
                    uv_loop_t* loop,
                    int fd,
                    size_t max_msg_len,
                    const ws_driver_hooks_t* hooks,
                    void* data) {
  memset(d, 0, sizeof(*d));
  d->hooks = hooks;
  d->data = data;
  int err = uv_pipe_init(loop, &d->pipe, 0);
  if (err != 0) {
    return err;
  }
  d->pipe.data = d;
  err = uv_pipe_open(&d->pipe, fd);
  if (err != 0) {
    d->is_closing = true;
    uv_close((uv_handle_t*) &d->pipe, NULL);
    return err;
  }
  net_wq_init(&d->wq, (uv_stream_t*) &d->pipe, on_wq, d);
  net_ws_init(&d->ws, &d->wq, max_msg_len, hooks->on_msg, d);
  d->flow = WS_DRIVER_READING;
  update_flow(d); /* as srv_ws_upgrade() ends */
  return 0;
}
