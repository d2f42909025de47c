/* auth.c: bearer token checks. See auth.h. */
#include "server/auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/percent.h"


static void sha256(const char* s, size_t len, unsigned char out[32]) {
  unsigned int n = 0;
  EVP_Digest(s, len, out, &n, EVP_sha256(), NULL);
}


int srv_auth_add_token(srv_auth_t* auth, const char* token, srv_scope_t scope) {
  if (auth->count == SRV_AUTH_MAX_TOKENS || token[0] == '\0') {
    return -1;
  }
  sha256(token, strlen(token), auth->digest[auth->count]);
  auth->scope[auth->count] = scope;
  auth->count++;
  return 0;
}


int srv_auth_load_file(srv_auth_t* auth,
                       const char* path,
                       char* err,
                       size_t err_len) {
  FILE* f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, err_len, "cannot open auth file %s: %s", path,
             strerror(errno));
    return -1;
  }
  /* fopen() opens a directory and reading it yields nothing: that must not
   * pass for a file without tokens (or worse, for no authentication). */
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, err_len, "auth file %s is a directory", path);
    fclose(f);
    return -1;
  }
  unsigned count_before = auth->count;
  char line[256];
  int lineno = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    lineno++;
    char hex[80] = "";
    char scope[16] = "";
    char* p = line + strspn(line, " \t");
    if (*p == '#' || *p == '\n' || *p == '\0') {
      continue;
    }
    if (sscanf(p, "%79s %15s", hex, scope) != 2 || strlen(hex) != 64 ||
        auth->count == SRV_AUTH_MAX_TOKENS ||
        (strcmp(scope, "read") != 0 && strcmp(scope, "write") != 0)) {
      snprintf(err, err_len,
               "%s:%d: expected '<64 hex digits> <read|write>' "
               "(cryomambad --hash-token prints such a line)",
               path, lineno);
      fclose(f);
      return -1;
    }
    for (int i = 0; i < 32; i++) {
      int hi = core_hex_value(hex[2 * i]);
      int lo = core_hex_value(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        snprintf(err, err_len, "%s:%d: the digest is not hexadecimal", path,
                 lineno);
        fclose(f);
        return -1;
      }
      auth->digest[auth->count][i] = (unsigned char) (hi * 16 + lo);
    }
    auth->scope[auth->count] =
        strcmp(scope, "write") == 0 ? SRV_SCOPE_WRITE : SRV_SCOPE_READ;
    auth->count++;
  }
  bool failed = ferror(f) != 0;
  int read_errno = errno;
  fclose(f);
  if (failed) {
    snprintf(err, err_len, "cannot read auth file %s: %s", path,
             strerror(read_errno));
    return -1;
  }
  if (auth->count == count_before) {
    /* Asked for authentication, given none: refuse rather than run open. */
    snprintf(err, err_len,
             "auth file %s holds no token (only blank lines or comments); "
             "add '<sha256 hex> <read|write>' lines (cryomambad --hash-token "
             "prints one), or drop --auth-file to run without authentication",
             path);
    return -1;
  }
  return 0;
}


void srv_auth_print_line(const char* token, const char* scope) {
  unsigned char d[32];
  sha256(token, strlen(token), d);
  for (int i = 0; i < 32; i++) {
    printf("%02x", d[i]);
  }
  printf(" %s\n", scope);
}


/* Finds access_token= in the URL's query and percent-decodes its value into
 * `out` (RFC 3986: '+' stays '+'). Returns 1, 0 when there is none (or it
 * is empty), or -1 when it cannot be a token: a malformed %XX escape, a
 * decoded NUL (a C string would end there) or more than cap - 1 bytes. */
static int query_token(const char* url, char* out, size_t cap) {
  const char* q = strchr(url, '?');
  while (q != NULL) {
    q++;
    if (strncmp(q, "access_token=", 13) == 0) {
      const char* v = q + 13;
      size_t len = 0;
      if (!core_percent_decode(v, strcspn(v, "&#"), out, cap, &len)) {
        return -1;
      }
      return len > 0 ? 1 : 0;
    }
    q = strchr(q, '&');
  }
  return 0;
}


srv_auth_result_t srv_auth_check(const srv_auth_t* auth,
                                 const net_http_reader_t* r,
                                 srv_scope_t needed,
                                 bool allow_query) {
  if (auth->count == 0) {
    return SRV_AUTH_OK;
  }
  char from_query[512];
  const char* token = NULL;
  const char* header = net_http_header(r, "Authorization");
  if (header != NULL && strncasecmp(header, "Bearer ", 7) == 0) {
    token = header + 7 + strspn(header + 7, " ");
  } else if (allow_query) {
    int found = query_token(net_http_url(r), from_query, sizeof(from_query));
    if (found < 0) {
      return SRV_AUTH_INVALID;
    }
    token = found > 0 ? from_query : NULL;
  }
  if (token == NULL || token[0] == '\0') {
    return SRV_AUTH_MISSING;
  }
  unsigned char d[32];
  sha256(token, strlen(token), d);
  /* Compare against every entry, always, so timing says nothing. */
  int match = -1;
  for (unsigned i = 0; i < auth->count; i++) {
    if (CRYPTO_memcmp(d, auth->digest[i], sizeof(d)) == 0) {
      match = (int) i;
    }
  }
  if (match < 0) {
    return SRV_AUTH_INVALID;
  }
  if (needed == SRV_SCOPE_WRITE && auth->scope[match] != SRV_SCOPE_WRITE) {
    return SRV_AUTH_FORBIDDEN;
  }
  return SRV_AUTH_OK;
}
