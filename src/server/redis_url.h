/* redis_url.h: where Redis is and who the server is to it, from --redis
 * (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], the form redis-cli -u
 * takes) and --redis-password-file. Parsed and resolved once at start-up;
 * nothing here runs on the loop. */
#ifndef SRV_REDIS_URL_H
#define SRV_REDIS_URL_H

#include <stddef.h>

/* What a connection needs; immutable once the server runs. */
typedef struct {
  char host[256];     /* numeric address once resolved */
  int port;           /* default 6379 */
  int db;             /* SELECTed on every connect; 0..15 */
  char user[128];     /* ACL user; "" with a password: AUTH password */
  char password[512]; /* "" = no AUTH */
} srv_redis_url_t;

/* Parses a redis:// URL; USER and PASSWORD are percent-decoded (%40 for
 * '@', %3A for ':', %2F for '/'); "USER:@" leaves the password to
 * --redis-password-file (srv_redis_check_auth). 0, or -1 with a sentence
 * in `why` that never shows the password. */
int srv_redis_parse_url(const char* url,
                        srv_redis_url_t* out,
                        char* why,
                        size_t why_len);

/* Sets the password from the first line of `path` (the newline dropped;
 * it replaces one in the URL). 0, or -1 with a sentence in `why`: the file
 * is unreadable, empty, or its line is too long. Blocking: start-up only. */
int srv_redis_read_password_file(srv_redis_url_t* url,
                                 const char* path,
                                 char* why,
                                 size_t why_len);

/* After the URL and the password file: -1 (a sentence in `why`) when a
 * user has no password, else 0. */
int srv_redis_check_auth(const srv_redis_url_t* url, char* why, size_t why_len);

/* Resolves the host to a numeric address (blocking: start-up only). 0, or
 * -1 with a sentence in `why`. */
int srv_redis_resolve(srv_redis_url_t* url, char* why, size_t why_len);

#endif
