/* lg_http.c: see lg_http.h. */
#include "lg_http.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


int lg_url_parse(const char* url, lg_url_t* out) {
  memset(out, 0, sizeof(*out));
  const char* p = strstr(url, "://");
  if (p == NULL) {
    return -EINVAL;
  }
  p += 3;
  size_t host_len = strcspn(p, ":/");
  if (host_len == 0 || host_len >= sizeof(out->host)) {
    return -EINVAL;
  }
  memcpy(out->host, p, host_len);
  p += host_len;
  out->port = 80;
  if (*p == ':') {
    char* end = NULL;
    long port = strtol(p + 1, &end, 10);
    if (port <= 0 || port > 65535) {
      return -EINVAL;
    }
    out->port = (uint16_t) port;
    p = end;
  }
  if (*p == '\0') {
    p = "/";
  }
  if (*p != '/' || strlen(p) >= sizeof(out->path)) {
    return -EINVAL;
  }
  strcpy(out->path, p);
  return 0;
}


static int dial(const char* host, uint16_t port) {
  char port_str[8];
  snprintf(port_str, sizeof(port_str), "%u", port);
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  struct addrinfo* res = NULL;
  if (getaddrinfo(host, port_str, &hints, &res) != 0) {
    return -EHOSTUNREACH;
  }
  int fd = socket(res->ai_family, res->ai_socktype, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    int err = -errno;
    if (fd >= 0) {
      close(fd);
    }
    freeaddrinfo(res);
    return err;
  }
  freeaddrinfo(res);
  return fd;
}


int lg_http_create_job(const char* host,
                       uint16_t port,
                       const char* body,
                       char* job_id) {
  int fd = dial(host, port);
  if (fd < 0) {
    return fd;
  }
  char req[2048];
  int n = snprintf(req, sizeof(req),
                   "POST /v1/jobs HTTP/1.1\r\nHost: %s:%u\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   host, port, strlen(body), body);
  if (n < 0 || (size_t) n >= sizeof(req) ||
      write(fd, req, (size_t) n) != (ssize_t) n) {
    close(fd);
    return -EIO;
  }
  /* Connection: close, so the answer ends at EOF. */
  char resp[16384];
  size_t len = 0;
  while (len < sizeof(resp) - 1) {
    ssize_t r = read(fd, resp + len, sizeof(resp) - 1 - len);
    if (r <= 0) {
      break;
    }
    len += (size_t) r;
  }
  close(fd);
  resp[len] = '\0';
  const char* id = strstr(resp, "\"job_id\"");
  if (strncmp(resp, "HTTP/1.1 2", 10) != 0 || id == NULL) {
    fprintf(stderr, "loadgen: POST /v1/jobs failed:\n%s\n", resp);
    return -EPROTO;
  }
  id = strchr(id + 8, '"');
  const char* end = id != NULL ? strchr(id + 1, '"') : NULL;
  if (end == NULL || end - id - 1 >= 64) {
    return -EPROTO;
  }
  memcpy(job_id, id + 1, (size_t) (end - id - 1));
  job_id[end - id - 1] = '\0';
  return 0;
}
