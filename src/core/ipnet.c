/* ipnet.c: IP addresses, networks and X-Forwarded-For. See ipnet.h. */
#include "core/ipnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};


static bool is_space(char c) {
  return c == ' ' || c == '\t';
}


static bool is_v4(const core_ip_t* ip) {
  return memcmp(ip->b, v4_mapped, sizeof(v4_mapped)) == 0;
}


int core_ip_parse(const char* s, size_t len, core_ip_t* out) {
  while (len > 0 && is_space(*s)) {
    s++;
    len--;
  }
  while (len > 0 && is_space(s[len - 1])) {
    len--;
  }
  if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
    s++;
    len -= 2;
    if (memchr(s, '.', len) != NULL && memchr(s, ':', len) == NULL) {
      return -EINVAL; /* brackets are for IPv6 only */
    }
  }
  char text[CORE_IP_TEXT_MAX];
  if (len == 0 || len >= sizeof(text)) {
    return -EINVAL;
  }
  memcpy(text, s, len);
  text[len] = '\0';
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, text, &a4) == 1) {
    memcpy(out->b, v4_mapped, sizeof(v4_mapped));
    memcpy(out->b + 12, &a4, 4);
    return 0;
  }
  if (inet_pton(AF_INET6, text, &a6) == 1) {
    memcpy(out->b, &a6, 16);
    return 0;
  }
  return -EINVAL;
}


void core_ip_format(const core_ip_t* ip, char* buf, size_t cap) {
  const char* ok = is_v4(ip)
                       ? inet_ntop(AF_INET, ip->b + 12, buf, (socklen_t) cap)
                       : inet_ntop(AF_INET6, ip->b, buf, (socklen_t) cap);
  if (ok == NULL && cap > 0) {
    buf[0] = '\0'; /* cap below CORE_IP_TEXT_MAX: nothing fits */
  }
}


/* True when no bit of `ip` past `prefix` is set. */
static bool host_bits_zero(const core_ip_t* ip, unsigned prefix) {
  for (unsigned bit = prefix; bit < 128; bit++) {
    if (ip->b[bit / 8] & (0x80u >> (bit % 8))) {
      return false;
    }
  }
  return true;
}


int core_ipnet_parse(const char* s, core_ipnet_t* out) {
  const char* slash = strchr(s, '/');
  size_t addr_len = slash != NULL ? (size_t) (slash - s) : strlen(s);
  core_ipnet_t net;
  if (core_ip_parse(s, addr_len, &net.addr) != 0) {
    return -EINVAL;
  }
  unsigned max = is_v4(&net.addr) ? 32 : 128;
  unsigned prefix = max;
  if (slash != NULL) {
    const char* p = slash + 1;
    if (*p < '0' || *p > '9' || strlen(p) > 3) {
      return -EINVAL;
    }
    char* end = NULL;
    unsigned long v = strtoul(p, &end, 10);
    if (*end != '\0' || v > max) {
      return -EINVAL;
    }
    prefix = (unsigned) v;
  }
  net.prefix = max == 32 ? prefix + 96 : prefix;
  if (!host_bits_zero(&net.addr, net.prefix)) {
    return -EINVAL;
  }
  *out = net;
  return 0;
}


void core_ipnet_format(const core_ipnet_t* net, char* buf, size_t cap) {
  char ip[CORE_IP_TEXT_MAX];
  core_ip_format(&net->addr, ip, sizeof(ip));
  unsigned prefix =
      is_v4(&net->addr) && net->prefix >= 96 ? net->prefix - 96 : net->prefix;
  snprintf(buf, cap, "%s/%u", ip, prefix);
}


bool core_ipnet_contains(const core_ipnet_t* net, const core_ip_t* ip) {
  unsigned full = net->prefix / 8;
  if (memcmp(net->addr.b, ip->b, full) != 0) {
    return false;
  }
  unsigned rest = net->prefix % 8;
  if (rest == 0) {
    return true;
  }
  uint8_t mask = (uint8_t) (0xffu << (8 - rest));
  return (net->addr.b[full] & mask) == (ip->b[full] & mask);
}


bool core_ipnet_any(const core_ipnet_t* nets, size_t n, const core_ip_t* ip) {
  for (size_t i = 0; i < n; i++) {
    if (core_ipnet_contains(&nets[i], ip)) {
      return true;
    }
  }
  return false;
}


unsigned core_xff_client(const char* const* values,
                         size_t n_values,
                         const core_ipnet_t* trusted,
                         size_t n_trusted,
                         const core_ip_t* peer,
                         core_ip_t* out) {
  *out = *peer;
  unsigned taken = 0;
  /* Right to left: the last header's last element is the nearest hop's. */
  for (size_t h = n_values; h-- > 0;) {
    const char* v = values[h];
    size_t end = strlen(v);
    for (;;) {
      size_t start = end;
      while (start > 0 && v[start - 1] != ',') {
        start--;
      }
      core_ip_t ip;
      if (core_ip_parse(v + start, end - start, &ip) != 0) {
        return taken; /* what the nearest trusted hop vouched for */
      }
      *out = ip;
      taken++;
      if (!core_ipnet_any(trusted, n_trusted, &ip)) {
        return taken;
      }
      if (start == 0) {
        break;
      }
      end = start - 1; /* before the comma */
    }
  }
  return taken;
}
