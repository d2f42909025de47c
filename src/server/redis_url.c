/* redis_url.c: --redis and --redis-password-file into a srv_redis_url_t.
 * See redis_url.h. Error sentences quote the URL only without its user
 * information: a password must not reach a log or a terminal. */
#include "server/redis_url.h"

#include "core/percent.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FORM "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"


/* The user information [USER:]PASSWORD (redis-cli's reading: without a
 * colon it is all password). */
static int parse_userinfo(const char* p,
                          size_t n,
                          srv_redis_url_t* out,
                          char* why,
                          size_t why_len) {
  const char* colon = memchr(p, ':', n);
  size_t user_len = colon != NULL ? (size_t) (colon - p) : 0;
  const char* pass = colon != NULL ? colon + 1 : p;
  size_t pass_len = n - (size_t) (pass - p);
  size_t len;
  if (!core_percent_decode(p, user_len, out->user, sizeof(out->user), &len) ||
      !core_percent_decode(pass, pass_len, out->password, sizeof(out->password),
                           &len)) {
    snprintf(why, why_len,
             "--redis: the user or password in the URL is too long or has "
             "a bad %%-escape (%%40 for '@', %%3A for ':', %%2F for '/')");
    return -1;
  }
  if (out->password[0] == '\0' && out->user[0] == '\0') {
    /* USER: with no password takes it from --redis-password-file. */
    snprintf(why, why_len,
             "--redis: an empty password in the URL (give none: " FORM ")");
    return -1;
  }
  return 0;
}


int srv_redis_parse_url(const char* url,
                        srv_redis_url_t* out,
                        char* why,
                        size_t why_len) {
  memset(out, 0, sizeof(*out));
  out->port = 6379;
  const char* p = url;
  if (strncmp(p, "redis://", 8) != 0) {
    /* Not ours to quote: it may hold a password in another form. */
    snprintf(why, why_len, "--redis: expected " FORM);
    return -1;
  }
  p += 8;
  /* The authority ends at the first '/'; user information at its last
   * '@' (an unescaped '@' in a password still parses). */
  size_t auth_len = strcspn(p, "/");
  const char* at = NULL;
  for (size_t i = 0; i < auth_len; i++) {
    if (p[i] == '@') {
      at = p + i;
    }
  }
  if (at != NULL) {
    if (parse_userinfo(p, (size_t) (at - p), out, why, why_len) != 0) {
      return -1;
    }
    p = at + 1;
  }
  /* From here on the URL is quoted from its host: no secrets there. */
  size_t host_len = strcspn(p, ":/");
  if (host_len == 0 || host_len >= sizeof(out->host)) {
    snprintf(why, why_len, "--redis 'redis://%s': a host is needed (" FORM ")",
             p);
    return -1;
  }
  memcpy(out->host, p, host_len);
  const char* q = p + host_len;
  char* end = NULL;
  if (*q == ':') {
    errno = 0;
    long port = strtol(q + 1, &end, 10);
    if (errno != 0 || end == q + 1 || port < 1 || port > 65535 ||
        (*end != '\0' && *end != '/')) {
      snprintf(why, why_len, "--redis 'redis://%s': bad port", p);
      return -1;
    }
    out->port = (int) port;
    q = end;
  }
  if (*q == '/' && q[1] != '\0') {
    errno = 0;
    long db = strtol(q + 1, &end, 10);
    if (errno != 0 || end == q + 1 || *end != '\0' || db < 0 || db > 15) {
      snprintf(why, why_len, "--redis 'redis://%s': the database is 0..15", p);
      return -1;
    }
    out->db = (int) db;
  } else if (*q != '/' && *q != '\0') {
    snprintf(why, why_len, "--redis 'redis://%s': unexpected '%s'", p, q);
    return -1;
  }
  return 0;
}


int srv_redis_read_password_file(srv_redis_url_t* url,
                                 const char* path,
                                 char* why,
                                 size_t why_len) {
  FILE* f = fopen(path, "re");
  if (f == NULL) {
    snprintf(why, why_len, "--redis-password-file %s: %s", path,
             strerror(errno));
    return -1;
  }
  /* A directory opens too, and reads as nothing: say what it is. */
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(why, why_len, "--redis-password-file %s: a directory", path);
    fclose(f);
    return -1;
  }
  char line[sizeof(url->password) + 2];
  bool got = fgets(line, sizeof(line), f) != NULL;
  fclose(f);
  size_t n = got ? strcspn(line, "\r\n") : 0;
  if (n == 0 || n >= sizeof(url->password)) {
    snprintf(why, why_len, "--redis-password-file %s: %s", path,
             n == 0 ? "no password on its first line"
                    : "the password is longer than 511 bytes");
    return -1;
  }
  memcpy(url->password, line, n);
  url->password[n] = '\0';
  return 0;
}


int srv_redis_check_auth(const srv_redis_url_t* url,
                         char* why,
                         size_t why_len) {
  if (url->user[0] != '\0' && url->password[0] == '\0') {
    snprintf(why, why_len,
             "--redis: user '%s' needs a password (in the URL or "
             "--redis-password-file)",
             url->user);
    return -1;
  }
  return 0;
}


int srv_redis_resolve(srv_redis_url_t* url, char* why, size_t why_len) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  struct addrinfo* res = NULL;
  int rc = getaddrinfo(url->host, NULL, &hints, &res);
  if (rc != 0 || res == NULL) {
    snprintf(why, why_len, "--redis: cannot resolve '%s': %s", url->host,
             gai_strerror(rc));
    return -1;
  }
  char host[NI_MAXHOST];
  rc = getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof(host), NULL, 0,
                   NI_NUMERICHOST);
  freeaddrinfo(res);
  if (rc != 0 || strlen(host) >= sizeof(url->host)) {
    snprintf(why, why_len, "--redis: cannot resolve '%s'", url->host);
    return -1;
  }
  memcpy(url->host, host, strlen(host) + 1);
  return 0;
}
