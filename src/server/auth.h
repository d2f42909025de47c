/* auth.h: bearer tokens. Tokens are kept only as SHA-256 digests (an auth
 * file holds "<hex digest> <read|write>" lines; CRYOMAMBA_TOKEN, a plain
 * token with write scope, is hashed at start-up), compared in constant time.
 * With no token configured every request is allowed. */
#ifndef SRV_AUTH_H
#define SRV_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http_reader.h"

typedef enum {
  SRV_SCOPE_READ = 1,
  SRV_SCOPE_WRITE = 2 /* implies read */
} srv_scope_t;

#define SRV_AUTH_MAX_TOKENS 64

typedef struct {
  unsigned count;
  unsigned char digest[SRV_AUTH_MAX_TOKENS][32];
  srv_scope_t scope[SRV_AUTH_MAX_TOKENS];
} srv_auth_t;

/* Adds a plain token (hashed here, never stored). Returns 0 or -1 (full). */
int srv_auth_add_token(srv_auth_t* auth, const char* token, srv_scope_t scope);

/* Loads "<sha256 hex> <read|write>" lines ('#' comments, blank lines).
 * Returns 0, or -1 with a sentence in `err` (also for a directory, a read
 * error, or a file without any token). */
int srv_auth_load_file(srv_auth_t* auth,
                       const char* path,
                       char* err,
                       size_t err_len);

/* Prints the auth-file line for `token` to stdout (--hash-token). */
void srv_auth_print_line(const char* token, const char* scope);

typedef enum {
  SRV_AUTH_OK,
  SRV_AUTH_MISSING,  /* no token given: 401 */
  SRV_AUTH_INVALID,  /* unknown token: 401 */
  SRV_AUTH_FORBIDDEN /* known token without the scope: 403 */
} srv_auth_result_t;

/* Checks the request's token (Authorization: Bearer, or access_token in the
 * query when `allow_query`, for WebSocket clients that cannot set headers)
 * against `needed`. */
srv_auth_result_t srv_auth_check(const srv_auth_t* auth,
                                 const net_http_reader_t* r,
                                 srv_scope_t needed,
                                 bool allow_query);

#endif
