/* upload_http_int.h: what the two halves of an upload's tus requests
 * share: upload_http.c (each request built and started, its body's
 * progress) and upload_http_reply.c (each answer classified and applied).
 * Client thread. */
#ifndef CLIENT_UPLOAD_HTTP_INT_H
#define CLIENT_UPLOAD_HTTP_INT_H

#include <stdbool.h>

#include "client/upload_int.h"

typedef enum {
  RQ_OPTIONS,
  RQ_CREATE, /* the single upload, or a part (stream >= 0) */
  RQ_PROBE,  /* concatenation: a plain creation that only asks for dedup */
  RQ_HEAD,   /* stream, or the final upload (stream -1) */
  RQ_PATCH,
  RQ_FINAL,
  RQ_DELETE,
  RQ_VOLUME
} rq_kind_t;

struct up_req_s {
  net_hreq_t h;
  core_list_t node; /* in up->reqs */
  cm_upload_t* up;
  rq_kind_t kind;
  int stream; /* -1: not a stream's */
  bool is_empty;
  bool is_step;  /* a DELETE the next step waits for */
  bool is_probe; /* OPTIONS before hashing: a failure only means unknown */
  size_t server; /* the index in client->servers it went to */
  char target[600];
  char* headers; /* owned */
};

/* The path of a URL: an absolute one (http[s]://host/path) loses its
 * authority; any other is itself. Borrows from `url`. */
const char* up_http_url_path(const char* url);

/* A request's end (net_hreq_t's done callback): the answer classified and
 * applied, the request freed, then up_advance(). */
void up_http_on_done(net_hreq_t* h, int status);

#endif
