/* test_tls.c: src/net/tls.c under net/http_client.c against an in-process
 * OpenSSL server (blocking, on its own thread, a loopback socket, a
 * self-signed certificate made here for DNS:localhost): a borrowed 3 MiB
 * request body (1 MiB slices) and a 2 MiB response come through whole and
 * in order; the CA file is what is trusted (the system store refuses the
 * certificate as self-signed); an address the certificate does not list is
 * refused; insecure_skip_verify connects anyway. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/http_client.h"
#include "net/tls.h"

#define REQ_BODY ((size_t) 3 << 20)
#define RESP_BODY ((size_t) 2 << 20)

typedef struct {
  int lfd;
  uint16_t port;
  SSL_CTX* ctx;
  pthread_t thread;
  size_t body_got; /* request body bytes seen, checked against the pattern */
  bool body_ok;
  bool handshake_ok;
  bool is_joined;
} srv_t;

static uint8_t pattern(size_t i) {
  return (uint8_t) ((i * 7 + (i >> 12)) & 0xff);
}


/* A self-signed certificate for DNS:localhost (no IP entry). */
static void make_cert(EVP_PKEY** key, X509** cert) {
  *key = EVP_EC_gen("P-256");
  cr_assert_not_null(*key);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, *key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char*) "localhost", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v;
  X509V3_set_ctx_nodb(&v);
  X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(NULL, &v, NID_subject_alt_name, "DNS:localhost");
  cr_assert_not_null(san);
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  cr_assert(X509_sign(x, *key, EVP_sha256()) > 0);
  *cert = x;
}


static bool read_exact(SSL* s, uint8_t* buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    int n = SSL_read(s, buf + got, (int) (len - got));
    if (n <= 0) {
      return false;
    }
    got += (size_t) n;
  }
  return true;
}


/* One connection: the request's headers, its body (checked), then a
 * response with RESP_BODY bytes of the pattern. */
static void* serve(void* arg) {
  srv_t* srv = arg;
  int fd = accept(srv->lfd, NULL, NULL);
  if (fd < 0) {
    return NULL;
  }
  SSL* s = SSL_new(srv->ctx);
  SSL_set_fd(s, fd);
  if (SSL_accept(s) != 1) {
    SSL_free(s);
    close(fd);
    return NULL;
  }
  srv->handshake_ok = true;
  char head[8192];
  size_t hl = 0;
  while (hl < sizeof(head) - 1 &&
         (hl < 4 || memcmp(head + hl - 4, "\r\n\r\n", 4) != 0)) {
    if (SSL_read(s, head + hl, 1) != 1) {
      goto out;
    }
    hl++;
  }
  head[hl] = '\0';
  const char* cl = strstr(head, "Content-Length: ");
  size_t want = cl != NULL ? strtoul(cl + 16, NULL, 10) : 0;
  uint8_t* body = malloc(want > 0 ? want : 1);
  srv->body_ok = body != NULL && read_exact(s, body, want);
  for (size_t i = 0; srv->body_ok && i < want; i++) {
    srv->body_ok = body[i] == pattern(i);
  }
  srv->body_got = want;
  free(body);
  char rh[128];
  int n = snprintf(rh, sizeof(rh),
                   "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   RESP_BODY);
  SSL_write(s, rh, n);
  uint8_t* resp = malloc(RESP_BODY);
  for (size_t i = 0; i < RESP_BODY; i++) {
    resp[i] = pattern(i);
  }
  SSL_write(s, resp, (int) RESP_BODY);
  free(resp);
  SSL_shutdown(s);
out:
  SSL_free(s);
  close(fd);
  return NULL;
}


static char ca_path[64];
static srv_t srv;


static void srv_start(void) {
  EVP_PKEY* key;
  X509* cert;
  make_cert(&key, &cert);
  snprintf(ca_path, sizeof(ca_path), "/tmp/cm-test-tls-%d.pem", (int) getpid());
  FILE* f = fopen(ca_path, "w");
  cr_assert_not_null(f);
  PEM_write_X509(f, cert);
  fclose(f);
  memset(&srv, 0, sizeof(srv));
  srv.ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(srv.ctx, cert);
  SSL_CTX_use_PrivateKey(srv.ctx, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(srv.lfd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(listen(srv.lfd, 4), 0);
  socklen_t al = sizeof(a);
  getsockname(srv.lfd, (struct sockaddr*) &a, &al);
  srv.port = ntohs(a.sin_port);
  pthread_create(&srv.thread, NULL, serve, &srv);
}


static void srv_stop(void) {
  shutdown(srv.lfd, SHUT_RDWR); /* an accept still waiting returns */
  if (!srv.is_joined) {
    pthread_join(srv.thread, NULL);
  }
  close(srv.lfd);
  SSL_CTX_free(srv.ctx);
  unlink(ca_path);
}


typedef struct {
  int status;
  bool done;
  uint64_t sent_max;
} result_t;


static void on_done(net_hreq_t* req, int status) {
  result_t* r = req->data;
  r->status = status;
  r->done = true;
}


static void on_sent(net_hreq_t* req, uint64_t sent) {
  result_t* r = req->data;
  r->sent_max = sent;
}


/* One POST through TLS to the test server as `host`; fills *req. */
static result_t post(const char* host,
                     const net_tls_config_t* cfg,
                     net_hreq_t* req,
                     const char* body) {
  SSL_CTX* ctx = NULL;
  cr_assert_eq(net_tls_ctx_new(cfg, &ctx), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  result_t r = {0};
  net_hreq_opts_t o = {
      .host = host,
      .port = srv.port,
      .method = "POST",
      .target = "/up",
      .body = body,
      .body_len = REQ_BODY,
      .is_body_borrowed = true,
      .content_type = "application/octet-stream",
      .connect_timeout_ms = 10000,
      .idle_timeout_ms = 10000,
      .max_body_bytes = RESP_BODY,
      .on_sent = on_sent,
      .tls_ctx = ctx,
  };
  cr_assert_eq(net_hreq_start(req, &loop, &o, on_done, &r), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert(r.done);
  uv_loop_close(&loop);
  net_tls_ctx_free(ctx);
  return r;
}


static char* make_body(void) {
  char* b = malloc(REQ_BODY);
  cr_assert_not_null(b);
  for (size_t i = 0; i < REQ_BODY; i++) {
    b[i] = (char) pattern(i);
  }
  return b;
}


Test(tls,
     body_and_response_whole_through_tls,
     .init = srv_start,
     .fini = srv_stop) {
  char* body = make_body();
  net_hreq_t req;
  net_tls_config_t cfg = {.ca_file = ca_path};
  result_t r = post("localhost", &cfg, &req, body);
  cr_assert_eq(r.status, 0, "status %d", r.status);
  cr_assert_eq(req.http_status, 200);
  cr_assert_eq(r.sent_max, REQ_BODY, "on_sent saw every slice");
  cr_assert_eq(req.body_len, RESP_BODY);
  for (size_t i = 0; i < RESP_BODY; i++) {
    cr_assert_eq(req.body[i], pattern(i), "response byte %zu", i);
  }
  net_hreq_free_body(&req);
  free(body);
  pthread_join(srv.thread, NULL); /* its results are read below */
  srv.is_joined = true;
  cr_assert(srv.body_ok, "the server got the body whole, in order");
  cr_assert_eq(srv.body_got, REQ_BODY);
}


static int expect_refusal(const char* host, const net_tls_config_t* cfg) {
  char* body = make_body();
  net_hreq_t req;
  result_t r = post(host, cfg, &req, body);
  net_hreq_free_body(&req);
  free(body);
  return r.status;
}


Test(tls,
     system_store_refuses_self_signed,
     .init = srv_start,
     .fini = srv_stop) {
  net_tls_config_t cfg = {0};
  int st = expect_refusal("localhost", &cfg);
  cr_assert_eq(st,
               NET_TLS_E_VERIFY_BASE - X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
               "status %d", st);
  cr_assert(net_tls_is_verify_error(st));
  cr_assert_str_eq(net_tls_verify_string(st), "self-signed certificate");
}


Test(tls,
     address_not_in_the_certificate_is_refused,
     .init = srv_start,
     .fini = srv_stop) {
  net_tls_config_t cfg = {.ca_file = ca_path};
  int st = expect_refusal("127.0.0.1", &cfg);
  cr_assert_eq(st, NET_TLS_E_VERIFY_BASE - X509_V_ERR_IP_ADDRESS_MISMATCH,
               "status %d", st);
  cr_assert_str_eq(net_tls_verify_string(st), "IP address mismatch");
}


Test(tls, insecure_skip_verify_connects, .init = srv_start, .fini = srv_stop) {
  char* body = make_body();
  net_hreq_t req;
  net_tls_config_t cfg = {.insecure_skip_verify = true};
  result_t r = post("127.0.0.1", &cfg, &req, body);
  cr_assert_eq(r.status, 0, "status %d", r.status);
  cr_assert_eq(req.http_status, 200);
  net_hreq_free_body(&req);
  free(body);
}


Test(tls, missing_ca_file_fails_the_context) {
  SSL_CTX* ctx = NULL;
  net_tls_config_t cfg = {.ca_file = "/nonexistent/ca.pem"};
  cr_assert_eq(net_tls_ctx_new(&cfg, &ctx), NET_TLS_E_CAFILE);
  cr_assert_null(ctx);
}
