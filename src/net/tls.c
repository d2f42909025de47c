/* tls.c: a TLS client session over memory BIOs, or plain libuv. See
 * tls.h. Loop thread only. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/list.h"

/* One write of ciphertext; `user` (may be NULL: handshake, alerts) is the
 * owner's request, told when these bytes are written. */
typedef struct {
  uv_write_t w;
  uv_write_t* user;
  uv_write_cb cb;
  char bytes[];
} tls_write_t;


static net_tls_t* tls_of(uv_handle_t* h) {
  return CORE_CONTAINER_OF((uv_tcp_t*) h, net_tls_t, tcp);
}


uv_stream_t* net_tls_stream(net_tls_t* t) {
  return (uv_stream_t*) &t->tcp;
}


bool net_tls_is_on(const net_tls_t* t) {
  return t->ssl != NULL;
}


bool net_tls_is_handshaking(const net_tls_t* t) {
  return t->is_handshaking;
}


static bool is_ip_literal(const char* host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host, addr) == 1 ||
         inet_pton(AF_INET6, host, addr) == 1;
}


int net_tls_init(net_tls_t* t,
                 uv_loop_t* loop,
                 SSL_CTX* ctx,
                 const char* host) {
  memset(t, 0, sizeof(*t));
  if (ctx != NULL) {
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
      BIO_free(t->in);
      BIO_free(t->out);
      SSL_free(t->ssl);
      t->ssl = NULL;
      return UV_ENOMEM;
    }
    /* An empty input BIO reads as "retry later", not as the end. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    bool ok = true;
    if (is_ip_literal(host)) {
      /* RFC 6066: no SNI for addresses; the SAN must list the IP. */
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    } else {
      SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set_tlsext_host_name(t->ssl, host) == 1 &&
           SSL_set1_host(t->ssl, host) == 1;
    }
    if (!ok) {
      SSL_free(t->ssl);
      t->ssl = NULL;
      return UV_ENOMEM;
    }
  }
  int err = uv_tcp_init(loop, &t->tcp);
  if (err != 0) {
    SSL_free(t->ssl);
    t->ssl = NULL;
  }
  return err;
}


void net_tls_free(net_tls_t* t) {
  SSL_free(t->ssl); /* frees both BIOs */
  t->ssl = NULL;
}


static void on_cipher_written(uv_write_t* w, int status) {
  tls_write_t* tw = w->data;
  if (tw->user != NULL) {
    tw->cb(tw->user, status);
  }
  free(tw);
}


/* Writes what SSL put in the output BIO. With `user`, cb(user) follows
 * these bytes (even when there are none). Returns 0 or an error. */
static int flush(net_tls_t* t, uv_write_t* user, uv_write_cb cb) {
  size_t n = BIO_ctrl_pending(t->out);
  if (n == 0 && user == NULL) {
    return 0;
  }
  if (n > UINT_MAX) {
    return UV_E2BIG;
  }
  tls_write_t* tw = malloc(sizeof(*tw) + n);
  if (tw == NULL) {
    return UV_ENOMEM;
  }
  if (n > 0 && BIO_read(t->out, tw->bytes, (int) n) != (int) n) {
    free(tw);
    return UV_EIO;
  }
  tw->user = user;
  tw->cb = cb;
  tw->w.data = tw;
  uv_buf_t buf = uv_buf_init(tw->bytes, (unsigned) n);
  int err = uv_write(&tw->w, net_tls_stream(t), &buf, 1, on_cipher_written);
  if (err != 0) {
    free(tw);
  }
  return err;
}


static void handshake_over(net_tls_t* t, int status) {
  t->is_handshaking = false;
  t->is_failed = status != 0;
  t->handshake_cb(t, status);
}


/* Takes the handshake one step further with the input so far. */
static void step_handshake(net_tls_t* t) {
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, rc);
  int err = flush(t, NULL, NULL); /* ClientHello, Finished or our alert */
  if (rc == 1 || e == SSL_ERROR_WANT_READ) {
    if (err != 0) {
      handshake_over(t, err);
    } else if (rc == 1) {
      handshake_over(t, 0);
    }
    return;
  }
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK && v > 0 && v <= NET_TLS_E_VERIFY_MAX) {
    handshake_over(t, NET_TLS_E_VERIFY_BASE - (int) v);
  } else {
    handshake_over(t, NET_TLS_E_HANDSHAKE);
  }
}


/* Hands the owner what SSL_read gives, a buffer of the owner's at a time
 * filled as far as the input allows, until the input runs dry, the end
 * came or the owner closed the stream. */
static void pump_read(net_tls_t* t) {
  uv_handle_t* h = (uv_handle_t*) &t->tcp;
  while (t->is_reading && !t->is_eof && !uv_is_closing(h)) {
    uv_buf_t buf = uv_buf_init(NULL, 0);
    t->alloc_cb(h, 65536, &buf);
    if (buf.base == NULL || buf.len == 0) {
      t->read_cb(net_tls_stream(t), UV_ENOBUFS, &buf);
      return;
    }
    size_t got = 0;
    int e = SSL_ERROR_NONE;
    while (got < buf.len) {
      size_t want = buf.len - got < INT_MAX ? buf.len - got : INT_MAX;
      ERR_clear_error();
      int n = SSL_read(t->ssl, buf.base + got, (int) want);
      if (n <= 0) {
        e = SSL_get_error(t->ssl, n);
        break;
      }
      got += (size_t) n;
    }
    /* SSL_read may have answered something (a key update). */
    int werr = flush(t, NULL, NULL);
    if (got > 0) {
      t->read_cb(net_tls_stream(t), (ssize_t) got, &buf);
      if (e == SSL_ERROR_NONE && werr == 0) {
        continue; /* the buffer filled: there may be more */
      }
      if (!t->is_reading || uv_is_closing(h)) {
        return;
      }
      buf = uv_buf_init(NULL, 0);
    }
    if (werr != 0) {
      t->is_eof = true;
      t->read_cb(net_tls_stream(t), werr, &buf);
      return;
    }
    if (e == SSL_ERROR_WANT_READ) {
      if (buf.base != NULL) {
        t->read_cb(net_tls_stream(t), 0, &buf); /* libuv's "nothing" */
      }
      if (t->pending_end != 0 && !uv_is_closing(h)) {
        t->is_eof = true;
        uv_buf_t none = uv_buf_init(NULL, 0);
        t->read_cb(net_tls_stream(t), t->pending_end, &none);
      }
      return;
    }
    /* close_notify is the end; anything else broke the protocol. */
    t->is_eof = true;
    t->read_cb(net_tls_stream(t),
               e == SSL_ERROR_ZERO_RETURN ? UV_EOF : UV_EPROTO, &buf);
    return;
  }
}


static void on_raw_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void) suggested;
  net_tls_t* t = tls_of(h);
  *buf = uv_buf_init((char*) t->rbuf, sizeof(t->rbuf));
}


static void on_raw_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  net_tls_t* t = tls_of((uv_handle_t*) s);
  if (t->is_failed || t->is_eof || nread == 0) {
    return;
  }
  if (nread < 0) {
    uv_read_stop(s);
    if (t->is_handshaking) {
      /* A peer that hangs up mid-handshake (a proxy restarting, or one
       * that refused us): worth another attempt, unlike a TLS error. */
      handshake_over(t, nread == UV_EOF ? NET_TLS_E_CLOSED : (int) nread);
      return;
    }
    t->pending_end = (int) nread;
    if (t->is_reading) {
      pump_read(t);
    }
    return;
  }
  if (BIO_write(t->in, buf->base, (int) nread) != (int) nread) {
    uv_read_stop(s);
    if (t->is_handshaking) {
      handshake_over(t, UV_ENOMEM);
    } else {
      t->pending_end = UV_ENOMEM;
      if (t->is_reading) {
        pump_read(t);
      }
    }
    return;
  }
  if (t->is_handshaking) {
    step_handshake(t);
    if (t->is_handshaking || t->is_failed) {
      return;
    }
  }
  if (t->is_reading) {
    pump_read(t);
  }
}


int net_tls_handshake(net_tls_t* t, net_tls_handshake_cb cb) {
  t->handshake_cb = cb;
  if (t->ssl == NULL) {
    cb(t, 0);
    return 0;
  }
  int err = uv_read_start(net_tls_stream(t), on_raw_alloc, on_raw_read);
  if (err != 0) {
    return err;
  }
  t->is_handshaking = true;
  step_handshake(t);
  return 0;
}


int net_tls_read_start(net_tls_t* t, uv_alloc_cb alloc_cb, uv_read_cb read_cb) {
  if (t->ssl == NULL) {
    return uv_read_start(net_tls_stream(t), alloc_cb, read_cb);
  }
  t->alloc_cb = alloc_cb;
  t->read_cb = read_cb;
  t->is_reading = true;
  if (BIO_ctrl_pending(t->in) > 0 || SSL_has_pending(t->ssl) ||
      t->pending_end != 0) {
    pump_read(t);
  }
  return 0;
}


int net_tls_write(net_tls_t* t,
                  uv_write_t* req,
                  const uv_buf_t bufs[],
                  unsigned nbufs,
                  uv_write_cb cb) {
  if (t->ssl == NULL) {
    return uv_write(req, net_tls_stream(t), bufs, nbufs, cb);
  }
  if (t->is_handshaking || t->is_failed) {
    return UV_ENOTCONN;
  }
  for (unsigned i = 0; i < nbufs; i++) {
    if (bufs[i].len == 0) {
      continue;
    }
    if (bufs[i].len > INT_MAX) {
      return UV_E2BIG;
    }
    ERR_clear_error();
    /* The output BIO grows as needed: SSL_write takes it all at once. */
    if (SSL_write(t->ssl, bufs[i].base, (int) bufs[i].len) <= 0) {
      return UV_EPROTO;
    }
  }
  return flush(t, req, cb);
}


int net_tls_shutdown(net_tls_t* t, uv_shutdown_t* req, uv_shutdown_cb cb) {
  if (t->ssl != NULL && !t->is_handshaking && !t->is_failed) {
    ERR_clear_error();
    (void) SSL_shutdown(t->ssl); /* queues close_notify; no answer awaited */
    int err = flush(t, NULL, NULL);
    if (err != 0) {
      return err;
    }
  }
  return uv_shutdown(req, net_tls_stream(t), cb);
}
