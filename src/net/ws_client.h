/* ws_client.h: the client side of one WebSocket connection: TCP connect
 * (wss: then TLS, tls.h), the RFC 6455 opening handshake (a random key, the 101
 * answer and its Sec-WebSocket-Accept checked), then wslay's client context for
 * framing: our frames are masked with keys from OpenSSL's RAND_bytes; wslay
 * checks the server's frames and answers pings and closes; ws_rx.c puts
 * messages together and skips, without holding them, those over the maximum
 * length (the connection goes on). A keepalive pings a silent server and gives
 * up when it stays silent. Not here: what the messages mean (src/client). Loop
 * thread only. */
#ifndef NET_WS_CLIENT_H
#define NET_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "net/dial.h"
#include "net/http_reader.h"
#include "net/tls.h"
#include "net/ws_rx.h"

/* The handshake was answered with an HTTP status other than 101. */
#define NET_WSC_E_HTTP (-9151)

typedef struct net_wsc_s net_wsc_t;

/* The handshake succeeded; messages may follow. */
typedef void (*net_wsc_open_cb)(net_wsc_t* wsc);

/* One complete text or binary message; `data` is borrowed for the call.
 * The callback may call net_wsc_close(). */
typedef void (*net_wsc_msg_cb)(net_wsc_t* wsc,
                               uint8_t opcode,
                               const uint8_t* data,
                               size_t len);

/* A text or binary message was discarded as it arrived, never held whole:
 * status UV_EMSGSIZE (longer than max_msg_len) or UV_ENOMEM (no memory for
 * it). `head` (borrowed) holds its first head_len bytes, at most
 * NET_WS_RX_HEAD_LEN; `len` is its full length. The connection goes on;
 * the callback may call net_wsc_close(). */
typedef void (*net_wsc_skip_cb)(net_wsc_t* wsc,
                                int status,
                                uint8_t opcode,
                                const uint8_t* head,
                                size_t head_len,
                                uint64_t len);

/* The connection is over and every handle closed (free `wsc` here).
 * status: 0 after a close handshake (close_code is the peer's code, 1005
 * when it gave none), NET_WSC_E_HTTP (http_status and the response body in
 * wsc->http_body), UV_EOF (dropped without a close frame), UV_ETIMEDOUT
 * (connect, handshake or keepalive), UV_EPROTO (the server broke the
 * protocol), UV_ECANCELED (aborted), a NET_TLS_E_* error (wss: the TLS
 * handshake failed or timed out, the certificate was refused) or another
 * libuv error from connecting. */
typedef void (*net_wsc_close_cb)(net_wsc_t* wsc, int status);

typedef struct {
  const char* host;
  uint16_t port;
  const char* target;  /* e.g. "/ws/jobs/<id>" */
  const char* headers; /* extra request lines ending in \r\n; may be NULL */
  uint32_t connect_timeout_ms; /* connect + handshake */
  uint32_t keepalive_ms;       /* ping after this much silence; 0: off */
  uint64_t max_msg_len;        /* larger messages are skipped (on_skip) */
  SSL_CTX* tls_ctx;            /* wss: the context (tls.h); NULL: plain */
} net_wsc_opts_t;

struct net_wsc_s {
  net_tls_t tls;    /* the connection (tls.tcp), TLS or plain */
  uv_timer_t timer; /* handshake timeout, keepalive, close linger */
  net_dial_t dial;
  net_http_reader_t http;
  wslay_event_context_ptr ctx;
  char accept[29]; /* the Sec-WebSocket-Accept we expect */
  char* handshake; /* request bytes, freed after the write */
  size_t handshake_len;
  const uint8_t* rx; /* input being fed to wslay, borrowed */
  size_t rx_len;
  net_ws_rx_t msg; /* the message arriving */
  uint32_t keepalive_ms;
  int open_handles;
  int status;           /* what close_cb will report */
  unsigned http_status; /* the handshake answer's status */
  char* http_body;      /* its body when not 101 (NUL-terminated) */
  uint16_t close_code;  /* the peer's close code */
  uint64_t rx_bytes;    /* read from the socket so far, handshake included */
  bool is_open;         /* handshake done */
  bool is_dialing;
  bool is_closing;       /* handles are closing */
  bool is_shutting_down; /* close handshake over; flushing before close */
  bool is_ping_out;      /* a keepalive ping awaits any input */
  bool got_input;        /* input arrived since the keepalive timer fired */
  bool in_recv;          /* inside wslay_event_recv */
  net_wsc_open_cb on_open;
  net_wsc_msg_cb on_msg;
  net_wsc_skip_cb on_skip;
  net_wsc_close_cb on_close;
  void* data;
};

/* Connects and sends the handshake. `wsc` is caller-owned and must live
 * until on_close has run. Returns 0 (on_close will run exactly once) or a
 * libuv error (nothing started). */
int net_wsc_start(net_wsc_t* wsc,
                  uv_loop_t* loop,
                  const net_wsc_opts_t* opts,
                  net_wsc_open_cb on_open,
                  net_wsc_msg_cb on_msg,
                  net_wsc_skip_cb on_skip,
                  net_wsc_close_cb on_close,
                  void* data);

/* Sends a text message (masked, copied). Returns 0, UV_ENOTCONN before the
 * handshake or after a close, or UV_ENOMEM. */
int net_wsc_send_text(net_wsc_t* wsc, const char* text, size_t len);

/* Starts the closing handshake with `code` (1000 normally); the TCP
 * connection closes when the server answers or after a short linger.
 * Before the handshake completed this aborts instead. Idempotent. */
void net_wsc_close(net_wsc_t* wsc, uint16_t code);

/* Closes the TCP connection at once; on_close gets UV_ECANCELED unless a
 * status was already decided. Idempotent. */
void net_wsc_abort(net_wsc_t* wsc);

#endif
