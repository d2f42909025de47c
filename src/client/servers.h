/* servers.h: the client's list of server URLs (options.server_urls, or the
 * one server_url) and the failover rules shared by REST (rest.c) and
 * subscriptions (sub.c). Parsed once by cm_client_new and immutable after,
 * except `preferred`: the server a new request or subscription tries
 * first, the last one that answered (atomic: async and *_sync REST calls
 * may run on several threads). */
#ifndef CLIENT_SERVERS_H
#define CLIENT_SERVERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most URLs a client takes; more is CM_EBADARG (a bound, so that one
 * request's failover round stays short). */
#define CLIENT_MAX_SERVERS 16

typedef struct {
  char host[256];
  uint16_t port;
  char prefix[256]; /* "" or "/something", no trailing slash */
  bool is_tls;
  char url[560]; /* for log lines: scheme://host:port/prefix */
} client_server_t;

typedef struct {
  client_server_t* v; /* count entries, owned */
  size_t count;
  atomic_size_t preferred;
} client_servers_t;

/* Parses `urls` (n of them; n == 0: `url`, a comma-separated list, NULL
 * meaning the default http://127.0.0.1:8000); spaces around each URL are
 * ignored. Returns 0, CM_EBADURL (one of them is not a server URL, or is
 * empty: "a,,b", a trailing comma), CM_EBADARG (more than
 * CLIENT_MAX_SERVERS, or n > 0 without urls) or -ENOMEM. */
int client_servers_init(client_servers_t* s,
                        const char* url,
                        const char* const* urls,
                        size_t n);

void client_servers_free(client_servers_t* s);

/* Whether any URL is https:// or wss:// (a TLS context is needed). */
bool client_servers_any_tls(const client_servers_t* s);

/* `e` as a resume record names a server: scheme://host:port[/prefix] with
 * the host in lower case (http://LocalHost:8000/ and http://localhost:8000 are
 * one server; hosts are not resolved, so localhost and 127.0.0.1 stay two). */
void client_servers_key(const client_server_t* e, char* out, size_t cap);

/* The index to try first. */
size_t client_servers_first(const client_servers_t* s);

/* The index after `i`, wrapping around. */
size_t client_servers_next(const client_servers_t* s, size_t i);

/* Server `i` answered: new work starts there. */
void client_servers_prefer(client_servers_t* s, size_t i);

/* REST failover rule (docs/protocol.md "Clients and several servers"):
 * whether a request that ended with `status` (0: an HTTP answer of
 * `http_status`) may be tried on the next server. `was_sent`: its bytes
 * were handed to the connection, so the server may have acted on them;
 * `is_safe`: a GET (repeating it changes nothing). Connection refused,
 * unreachable, name unknown and timeouts before sending always qualify;
 * after sending (reset, closed, timed out before a whole answer) only safe
 * requests; HTTP answers never, except 502/503/504 to a safe request (a
 * proxy in front of a dead server); refused certificates, cancellation and
 * local errors never. */
bool client_servers_should_fail_over(int status,
                                     unsigned http_status,
                                     bool was_sent,
                                     bool is_safe);

#endif
