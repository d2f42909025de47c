/* tls_ctx.c: the client TLS context (trust, verification, versions) and
 * the names of verification errors. See tls.h. */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>


bool net_tls_is_verify_error(int err) {
  return err < NET_TLS_E_VERIFY_BASE &&
         err >= NET_TLS_E_VERIFY_BASE - NET_TLS_E_VERIFY_MAX;
}


const char* net_tls_verify_string(int err) {
  if (!net_tls_is_verify_error(err)) {
    return "certificate verify failed";
  }
  /* OpenSSL's strings for known codes are constants (a static buffer only
   * for unknown ones, which this range may hold: a generic name then). */
  long v = NET_TLS_E_VERIFY_BASE - err;
  if (v > X509_V_ERR_EC_KEY_EXPLICIT_PARAMS) {
    return "certificate verify failed";
  }
  return X509_verify_cert_error_string(v);
}


int net_tls_ctx_new(const net_tls_config_t* cfg, SSL_CTX** out) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    return UV_ENOMEM;
  }
  /* TLS 1.0 and 1.1 are deprecated (RFC 8996). */
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  /* Only HTTP/1.1 is spoken: a proxy must not pick h2. */
  static const unsigned char alpn[] = {8,   'h', 't', 't', 'p',
                                       '/', '1', '.', '1'};
  (void) SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));
  if (cfg->insecure_skip_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = cfg->ca_file != NULL && cfg->ca_file[0] != '\0'
                 ? SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
      ERR_clear_error();
      SSL_CTX_free(ctx);
      return NET_TLS_E_CAFILE;
    }
  }
  *out = ctx;
  return 0;
}


void net_tls_ctx_free(SSL_CTX* ctx) {
  SSL_CTX_free(ctx);
}
