/* lg_http.h: the load generator's set-up requests: parsing ws:// and
 * http:// URLs, and creating a job with a blocking POST /v1/jobs before the
 * event loop starts (plain sockets; nothing here is on the measured path). */
#ifndef BENCH_LG_HTTP_H
#define BENCH_LG_HTTP_H

#include <stdint.h>

typedef struct {
  char host[256];
  uint16_t port;
  char path[512]; /* "/" when the URL has none */
} lg_url_t;

/* Parses "ws://host:port/path" or "http://host:port[/path]" (default ports
 * 80). Returns 0 or -EINVAL. */
int lg_url_parse(const char* url, lg_url_t* out);

/* POSTs `body` (JSON) to http://host:port/v1/jobs and copies the answer's
 * "job_id" string into `job_id` (>= 64 bytes). Returns 0, -errno, or
 * -EPROTO (non-2xx status or no job_id; the answer goes to stderr). */
int lg_http_create_job(const char* host,
                       uint16_t port,
                       const char* body,
                       char* job_id);

#endif
