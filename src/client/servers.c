/* servers.c: the list of server URLs a client fails over between, and the
 * rule deciding when a REST request may move on to the next one. The rule
 * errs on the side of reporting: a request that may have been acted upon
 * is resent only when repeating it cannot change anything (a GET), so that
 * a failover never creates a second job or cancels twice. */
#include "client/servers.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client/client_int.h"


/* Parses one URL (`len` bytes of `text`, spaces around it ignored) into
 * `e`. Returns 0 or CM_EBADURL. */
static int parse_one(const char* text, size_t len, client_server_t* e) {
  while (len > 0 && (*text == ' ' || *text == '\t')) {
    text++;
    len--;
  }
  while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t')) {
    len--;
  }
  char url[1024];
  if (len == 0 || len >= sizeof(url)) {
    return CM_EBADURL;
  }
  memcpy(url, text, len);
  url[len] = '\0';
  int err = client_parse_url(url, e->host, sizeof(e->host), &e->port, e->prefix,
                             sizeof(e->prefix), &e->is_tls);
  if (err != 0) {
    return err;
  }
  bool v6 = strchr(e->host, ':') != NULL;
  snprintf(e->url, sizeof(e->url), "%s://%s%s%s:%u%s",
           e->is_tls ? "https" : "http", v6 ? "[" : "", e->host, v6 ? "]" : "",
           e->port, e->prefix);
  return 0;
}


int client_servers_init(client_servers_t* s,
                        const char* url,
                        const char* const* urls,
                        size_t n) {
  memset(s, 0, sizeof(*s));
  atomic_init(&s->preferred, 0);
  const char* list = url != NULL ? url : "http://127.0.0.1:8000";
  size_t count = n;
  if (n == 0) {
    /* server_url: a comma-separated list (a URL with a comma in its
     * prefix cannot be given this way; use server_urls). */
    count = 1;
    for (const char* p = list; *p != '\0'; p++) {
      count += *p == ',';
    }
  }
  if (count > CLIENT_MAX_SERVERS || (n > 0 && urls == NULL)) {
    return CM_EBADARG;
  }
  s->v = calloc(count, sizeof(*s->v));
  if (s->v == NULL) {
    return -ENOMEM;
  }
  const char* p = list;
  for (size_t i = 0; i < count; i++) {
    int err;
    if (n > 0) {
      err = urls[i] != NULL ? parse_one(urls[i], strlen(urls[i]), &s->v[i])
                            : CM_EBADURL;
    } else {
      size_t len = strcspn(p, ",");
      err = parse_one(p, len, &s->v[i]);
      p += len + (p[len] == ',');
    }
    if (err != 0) {
      client_servers_free(s);
      return err;
    }
  }
  s->count = count;
  return 0;
}


void client_servers_free(client_servers_t* s) {
  free(s->v);
  s->v = NULL;
  s->count = 0;
}


bool client_servers_any_tls(const client_servers_t* s) {
  for (size_t i = 0; i < s->count; i++) {
    if (s->v[i].is_tls) {
      return true;
    }
  }
  return false;
}


void client_servers_key(const client_server_t* e, char* out, size_t cap) {
  char host[sizeof(e->host)];
  size_t n = strlen(e->host);
  for (size_t i = 0; i <= n; i++) {
    host[i] = (char) tolower((unsigned char) e->host[i]);
  }
  bool v6 = strchr(host, ':') != NULL;
  snprintf(out, cap, "%s://%s%s%s:%u%s", e->is_tls ? "https" : "http",
           v6 ? "[" : "", host, v6 ? "]" : "", e->port, e->prefix);
}


size_t client_servers_first(const client_servers_t* s) {
  size_t i = atomic_load(&s->preferred);
  return i < s->count ? i : 0;
}


size_t client_servers_next(const client_servers_t* s, size_t i) {
  return s->count > 0 ? (i + 1) % s->count : 0;
}


void client_servers_prefer(client_servers_t* s, size_t i) {
  if (i < s->count) {
    atomic_store(&s->preferred, i);
  }
}


/* Failures of the transport that say nothing about the request itself:
 * the server is not there, or went away. Local errors (a download's disk
 * full), refused certificates and a failed TLS negotiation (the same
 * configuration everywhere, most likely) are not among them. */
static bool is_transport_error(int status) {
  switch (status) {
  case UV_ECONNREFUSED:
  case UV_ETIMEDOUT:
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_ENETDOWN:
  case UV_EHOSTDOWN:
  case UV_EADDRNOTAVAIL:
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_EAI_FAIL:
  case UV_ECONNRESET:
  case UV_ECONNABORTED:
  case UV_EPIPE:
  case UV_EOF:
  case UV_EPROTO: /* closed before a whole answer */
  case CM_ETLS_TIMEOUT:
  case CM_ETLS_CLOSED:
    return true;
  default:
    return false;
  }
}


bool client_servers_should_fail_over(int status,
                                     unsigned http_status,
                                     bool was_sent,
                                     bool is_safe) {
  if (status == 0) {
    /* An answer. A 4xx is the service's word and stands; so does any 5xx
     * to a request that may have been acted upon. */
    return is_safe &&
           (http_status == 502 || http_status == 503 || http_status == 504);
  }
  if (!is_transport_error(status)) {
    return false;
  }
  if (http_status != 0) {
    return is_safe; /* cut off mid-answer: the server did act */
  }
  return !was_sent || is_safe;
}
