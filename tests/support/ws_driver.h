/* ws_driver.h: the server side of one WebSocket connection (a net_ws_t and
 * its net_wqueue_t on a uv_pipe_t), driven exactly as src/server/ws_conn.c
 * drives it (READING / DRAINING / CLOSING: update_flow, on_drain, on_read,
 * sink_deliver) over the srv_conn_* calls of src/server/conn.c
 * (update_reading, want_read, send, end, shutdown, close), minus HTTP, jobs
 * and the listener. Keep it in step with those two files: unit tests of the
 * session rely on it being the server's state machine. Loop thread only. */
#ifndef TEST_WS_DRIVER_H
#define TEST_WS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "net/frame.h"
#include "net/wqueue.h"
#include "net/ws_session.h"

#define WS_DRIVER_READ_BUF 65536 /* as the server's */

typedef enum {
  WS_DRIVER_READING,
  WS_DRIVER_DRAINING,
  WS_DRIVER_CLOSING
} ws_driver_flow_t;

typedef struct ws_driver_s ws_driver_t;

typedef struct {
  /* Bytes to offer the next read (1..WS_DRIVER_READ_BUF), as segments of
   * any size arrive over TCP; NULL: the whole buffer. */
  size_t (*read_size)(ws_driver_t* d);
  /* After a read was fed and the flow re-evaluated; may deliver frames. */
  void (*on_fed)(ws_driver_t* d);
  /* What a healthy run never sees (a failed write or shutdown, input ending
   * before our close, ENOMEM); the connection closes right after. */
  void (*on_fault)(ws_driver_t* d, const char* what, int status);
  /* A text or binary message from the client; ws->data is the driver. */
  net_ws_msg_cb on_msg;
  /* The pipe closed and the session's memory is freed. */
  void (*on_closed)(ws_driver_t* d);
} ws_driver_hooks_t;

struct ws_driver_s {
  uv_pipe_t pipe;
  net_wqueue_t wq;
  net_ws_t ws;
  ws_driver_flow_t flow;
  bool wants_read; /* conn.c's flags, same meaning */
  bool is_reading;
  bool is_shutting_down;
  bool is_closing;
  bool is_closed;
  uv_shutdown_t shutdown_req;
  unsigned drainings;        /* times the flow entered DRAINING */
  unsigned paused_on_resume; /* drains after which wslay paused again */
  const ws_driver_hooks_t* hooks;
  void* data; /* the test's */
  uint8_t read_buf[WS_DRIVER_READ_BUF];
};

/* Opens `fd` (one end of a connected stream socket) on `loop` and starts
 * the session as srv_ws_upgrade() does after its handshake. Returns 0 or a
 * libuv error. `hooks` is borrowed. */
int ws_driver_start(ws_driver_t* d,
                    uv_loop_t* loop,
                    int fd,
                    size_t max_msg_len,
                    const ws_driver_hooks_t* hooks,
                    void* data);

/* Hands a data frame to the connection as a topic's sink does (a reference
 * is taken while it is queued). */
void ws_driver_deliver(ws_driver_t* d, net_frame_t* f, net_wq_class_t cls);

/* Closes at once (srv_conn_close()); hooks->on_closed follows. */
void ws_driver_close(ws_driver_t* d);

#endif
