/* ipnet.h: IP addresses and networks (ADDR[/PREFIX]) as text and as
 * 16-byte values, and the client address of a request relayed by trusted
 * proxies (X-Forwarded-For, walked right to left). IPv4 is held as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d), so an IPv4 network matches a
 * peer seen on a dual-stack socket too, and is printed dotted. Pure
 * functions, no I/O, no allocation. The server's use: src/server/proxy.c. */
#ifndef CORE_IPNET_H
#define CORE_IPNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_IP_TEXT_MAX 46    /* INET6_ADDRSTRLEN: the longest address text */
#define CORE_IPNET_TEXT_MAX 50 /* an address, '/', up to 3 digits, NUL */

typedef struct {
  uint8_t b[16]; /* network byte order; IPv4 mapped into ::ffff:0:0/96 */
} core_ip_t;

typedef struct {
  core_ip_t addr;  /* bits past the prefix are zero */
  unsigned prefix; /* 0..128 (an IPv4 /n is stored as /96+n) */
} core_ipnet_t;

/* An address: IPv4 dotted quad or IPv6 (RFC 4291 text, optionally in
 * brackets), `len` bytes of `s` (no NUL needed), surrounding spaces and
 * tabs ignored. No port, no zone, nothing else. Returns 0 or -EINVAL. */
int core_ip_parse(const char* s, size_t len, core_ip_t* out);

/* The address as text (dotted for IPv4 and mapped IPv4) into `buf` of at
 * least CORE_IP_TEXT_MAX bytes. */
void core_ip_format(const core_ip_t* ip, char* buf, size_t cap);

/* ADDR or ADDR/PREFIX (0..32 for IPv4, 0..128 for IPv6), NUL-terminated;
 * bits of ADDR past the prefix must be zero (10.0.0.1/8 is refused as a
 * likely typo). Returns 0 or -EINVAL. */
int core_ipnet_parse(const char* s, core_ipnet_t* out);

/* `net` as ADDR/PREFIX text (IPv4 prefixes as 0..32) into `buf` of at
 * least CORE_IPNET_TEXT_MAX bytes. */
void core_ipnet_format(const core_ipnet_t* net, char* buf, size_t cap);

/* True when `ip` is inside `net`. */
bool core_ipnet_contains(const core_ipnet_t* net, const core_ip_t* ip);

/* True when `ip` is inside one of the `n` networks. */
bool core_ipnet_any(const core_ipnet_t* nets, size_t n, const core_ip_t* ip);

/* The client of a request whose TCP peer `peer` is in `trusted` (n_trusted
 * networks), from the X-Forwarded-For values `values` (n_values headers, in
 * the order received; each a comma-separated list of addresses): walking
 * from the right, the first address not in `trusted`. An element that is
 * not an address (empty, "unknown", a port, garbage) stops the walk: the
 * answer is then the last address before it that a trusted hop vouched
 * for (the peer itself when it is the first). When every address is
 * trusted, the left-most. Always fills *out; returns the number of
 * addresses taken from the header (0: *out is the peer). */
unsigned core_xff_client(const char* const* values,
                         size_t n_values,
                         const core_ipnet_t* trusted,
                         size_t n_trusted,
                         const core_ip_t* peer,
                         core_ip_t* out);

#endif
