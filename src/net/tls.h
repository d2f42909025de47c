/* tls.h: the client side of TLS over a libuv stream, on OpenSSL with two
 * memory BIOs: what the owner writes is encrypted (SSL_write into the
 * output BIO) and the ciphertext written with uv_write, in order; what the
 * socket reads goes into the input BIO and comes out of SSL_read as
 * plaintext, handed to the owner's own uv_read_cb. Without a context the
 * same calls are plain libuv (uv_write, uv_read_start, uv_shutdown), so
 * http_client.c and ws_client.c have one code path for http:// and
 * https://. Verification (trust store, host name or IP, TLS >= 1.2) is set
 * up by net_tls_ctx_new (tls_ctx.c). Loop thread only. */
#ifndef NET_TLS_H
#define NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <openssl/ssl.h>

/* Errors (below -9000; the public header gives them the same values). */
#define NET_TLS_E_HANDSHAKE (-9207) /* handshake failed (not verification) */
#define NET_TLS_E_TIMEOUT (-9214)   /* the peer stalled mid-handshake */
#define NET_TLS_E_CAFILE (-9215)    /* the CA file could not be loaded */
#define NET_TLS_E_CLOSED (-9216)    /* the peer hung up mid-handshake */
/* The certificate failed verification with X509_V_ERR n (1..399):
 * NET_TLS_E_VERIFY_BASE - n. */
#define NET_TLS_E_VERIFY_BASE (-9600)
#define NET_TLS_E_VERIFY_MAX 399

/* True for the verification range above. */
bool net_tls_is_verify_error(int err);

/* OpenSSL's verify result string for a verification error ("self-signed
 * certificate", "hostname mismatch", ...). */
const char* net_tls_verify_string(int err);

typedef struct {
  const char* ca_file;       /* PEM bundle to trust instead of the system's;
                                NULL: the system trust store */
  bool insecure_skip_verify; /* no certificate or name check at all */
} net_tls_config_t;

/* A client context for `cfg` (TLS >= 1.2, verification as configured).
 * Immutable once made, so connections on any thread may share it. Returns
 * 0 and *out, NET_TLS_E_CAFILE, or UV_ENOMEM. */
int net_tls_ctx_new(const net_tls_config_t* cfg, SSL_CTX** out);

/* Releases a context (SSL_CTX_free; connections keep their reference). */
void net_tls_ctx_free(SSL_CTX* ctx);

typedef struct net_tls_s net_tls_t;

/* The handshake ended: 0, a NET_TLS_E_* error or the socket's error. */
typedef void (*net_tls_handshake_cb)(net_tls_t* t, int status);

struct net_tls_s {
  uv_tcp_t tcp; /* the connection; its data is the owner's */
  SSL* ssl;     /* NULL: plain */
  BIO* in;      /* ciphertext read, for SSL_read; owned by ssl */
  BIO* out;     /* ciphertext SSL wrote, to send; owned by ssl */
  bool is_handshaking;
  bool is_reading; /* the owner asked for plaintext */
  bool is_eof;     /* the end was handed to the owner */
  bool is_failed;  /* the handshake failed: input is ignored */
  int pending_end; /* the socket's end, not yet handed to the owner */
  uv_alloc_cb alloc_cb;
  uv_read_cb read_cb;
  net_tls_handshake_cb handshake_cb;
  uint8_t rbuf[16 * 1024 + 256]; /* one ciphertext read */
  void* data;
};

/* Initialises t->tcp on `loop` (the owner sets t->tcp.data, dials it and
 * closes it). With a context (NULL: plain), a session for `host`: SNI and
 * a name check, or for an IP literal an address check without SNI.
 * Returns 0, UV_ENOMEM or uv_tcp_init's error (then nothing to free). */
int net_tls_init(net_tls_t* t, uv_loop_t* loop, SSL_CTX* ctx, const char* host);

/* The connection as a stream. */
uv_stream_t* net_tls_stream(net_tls_t* t);

/* True while the handshake runs (a timeout then is NET_TLS_E_TIMEOUT). */
bool net_tls_is_handshaking(const net_tls_t* t);

/* Frees the session; call once t->tcp has closed. */
void net_tls_free(net_tls_t* t);

/* True when `t` encrypts. */
bool net_tls_is_on(const net_tls_t* t);

/* Runs the handshake on the connected stream; cb once it is over (plain:
 * at once, with 0). Returns 0 (cb will run) or a libuv error. */
int net_tls_handshake(net_tls_t* t, net_tls_handshake_cb cb);

/* Starts handing plaintext to read_cb(stream, n, buf) with buffers from
 * alloc_cb, as uv_read_start does (the owner frees them, UV_EOF at the
 * end). May run read_cb before returning (data that came with the
 * handshake). Returns 0 or a libuv error. */
int net_tls_read_start(net_tls_t* t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);

/* Writes `bufs` as uv_write would: `req` is the owner's and cb(req, status)
 * runs once the bytes (encrypted) are written or failed. Returns 0 or an
 * error (then cb never runs). */
int net_tls_write(net_tls_t* t,
                  uv_write_t* req,
                  const uv_buf_t bufs[],
                  unsigned nbufs,
                  uv_write_cb cb);

/* Sends close_notify (TLS), then shuts the stream's write side. */
int net_tls_shutdown(net_tls_t* t, uv_shutdown_t* req, uv_shutdown_cb cb);

#endif
