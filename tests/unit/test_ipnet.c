/* test_ipnet.c: addresses, networks, and the X-Forwarded-For walk. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/ipnet.h"


static core_ip_t ip_of(const char* s) {
  core_ip_t ip;
  cr_assert_eq(core_ip_parse(s, strlen(s), &ip), 0, "%s", s);
  return ip;
}


static core_ipnet_t net_of(const char* s) {
  core_ipnet_t net;
  cr_assert_eq(core_ipnet_parse(s, &net), 0, "%s", s);
  return net;
}


static const char* fmt_ip(const core_ip_t* ip, char* buf) {
  core_ip_format(ip, buf, CORE_IP_TEXT_MAX);
  return buf;
}


Test(ipnet, parses_and_formats_addresses_canonically, .timeout = 10) {
  char buf[CORE_IP_TEXT_MAX];
  core_ip_t a = ip_of(" 10.0.0.1\t");
  cr_assert_str_eq(fmt_ip(&a, buf), "10.0.0.1");
  a = ip_of("2001:DB8:0:0::1");
  cr_assert_str_eq(fmt_ip(&a, buf), "2001:db8::1");
  a = ip_of("[2001:db8::2]");
  cr_assert_str_eq(fmt_ip(&a, buf), "2001:db8::2");
  /* A mapped IPv4 address is the IPv4 address. */
  core_ip_t m = ip_of("::ffff:192.0.2.7");
  core_ip_t v4 = ip_of("192.0.2.7");
  cr_assert_eq(memcmp(&m, &v4, sizeof(m)), 0);
  cr_assert_str_eq(fmt_ip(&m, buf), "192.0.2.7");
}


Test(ipnet, refuses_what_is_not_a_bare_address, .timeout = 10) {
  const char* bad[] = {"",
                       " ",
                       "unknown",
                       "10.0.0.1:80",
                       "[::1]:80",
                       "10.0.0",
                       "10.0.0.256",
                       "1.2.3.4.5",
                       "[10.0.0.1]",
                       "fe80::1%eth0",
                       "::1::2",
                       "10.0.0.1 x",
                       "0x0a.0.0.1",
                       "_gateway",
                       "1111:2222:3333:4444:5555:6666:7777:8888:9999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    core_ip_t ip;
    cr_assert_neq(core_ip_parse(bad[i], strlen(bad[i]), &ip), 0, "%s", bad[i]);
  }
  /* Only `len` bytes count: no NUL needed, nothing read past them. */
  core_ip_t ip;
  cr_assert_eq(core_ip_parse("10.0.0.1,junk", 8, &ip), 0);
}


Test(ipnet, networks_match_their_prefix, .timeout = 10) {
  core_ipnet_t n = net_of("10.0.0.0/8");
  core_ip_t out = ip_of("10.255.1.2");
  cr_assert(core_ipnet_contains(&n, &out));
  out = ip_of("11.0.0.0");
  cr_assert_not(core_ipnet_contains(&n, &out));
  n = net_of("192.168.1.128/25");
  out = ip_of("192.168.1.200");
  cr_assert(core_ipnet_contains(&n, &out));
  out = ip_of("192.168.1.127");
  cr_assert_not(core_ipnet_contains(&n, &out));
  n = net_of("127.0.0.1"); /* no prefix: the one address */
  out = ip_of("127.0.0.1");
  cr_assert(core_ipnet_contains(&n, &out));
  out = ip_of("127.0.0.2");
  cr_assert_not(core_ipnet_contains(&n, &out));
  n = net_of("0.0.0.0/0"); /* every IPv4 address, no IPv6 one */
  out = ip_of("203.0.113.9");
  cr_assert(core_ipnet_contains(&n, &out));
  out = ip_of("2001:db8::1");
  cr_assert_not(core_ipnet_contains(&n, &out));
  n = net_of("2001:db8::/32");
  out = ip_of("2001:db8:ffff::1");
  cr_assert(core_ipnet_contains(&n, &out));
  out = ip_of("2001:db9::1");
  cr_assert_not(core_ipnet_contains(&n, &out));
  n = net_of("::/0");
  cr_assert(core_ipnet_contains(&n, &out));
}


Test(ipnet, refuses_bad_networks, .timeout = 10) {
  const char* bad[] = {
      "10.0.0.1/8",  "10.0.0.0/33",    "::/129", "10.0.0.0/",
      "10.0.0.0/-1", "10.0.0.0/08x",   "/8",     "10.0.0.0/8/8",
      "10.0.0.0/ 8", "2001:db8::1/32", "host/8", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    core_ipnet_t n;
    cr_assert_neq(core_ipnet_parse(bad[i], &n), 0, "%s", bad[i]);
  }
}


Test(ipnet, formats_networks, .timeout = 10) {
  char buf[CORE_IPNET_TEXT_MAX];
  core_ipnet_t n = net_of("10.1.0.0/16");
  core_ipnet_format(&n, buf, sizeof(buf));
  cr_assert_str_eq(buf, "10.1.0.0/16");
  n = net_of("::1");
  core_ipnet_format(&n, buf, sizeof(buf));
  cr_assert_str_eq(buf, "::1/128");
  n = net_of("127.0.0.1");
  core_ipnet_format(&n, buf, sizeof(buf));
  cr_assert_str_eq(buf, "127.0.0.1/32");
}


/* The walk with the proxies 127.0.0.1 and 10.0.0.0/8 trusted, from the
 * peer 127.0.0.1; returns the client as text. */
static const char* walk(const char* const* values,
                        size_t n,
                        char* buf,
                        unsigned* taken) {
  core_ipnet_t trusted[2] = {net_of("127.0.0.1"), net_of("10.0.0.0/8")};
  core_ip_t peer = ip_of("127.0.0.1");
  core_ip_t out;
  *taken = core_xff_client(values, n, trusted, 2, &peer, &out);
  return fmt_ip(&out, buf);
}


Test(ipnet, xff_takes_the_rightmost_untrusted_address, .timeout = 10) {
  char buf[CORE_IP_TEXT_MAX];
  unsigned taken = 0;
  const char* one[] = {"198.51.100.1, 203.0.113.5, 10.1.1.1"};
  cr_assert_str_eq(walk(one, 1, buf, &taken), "203.0.113.5");
  cr_assert_eq(taken, 2);
  /* Several headers are one list, in order. */
  const char* two[] = {"198.51.100.1", "203.0.113.5,10.1.1.1", "127.0.0.1"};
  cr_assert_str_eq(walk(two, 3, buf, &taken), "203.0.113.5");
  /* Every hop trusted: the left-most. */
  const char* all[] = {"10.0.0.9 , 10.0.0.8", "127.0.0.1"};
  cr_assert_str_eq(walk(all, 2, buf, &taken), "10.0.0.9");
  cr_assert_eq(taken, 3);
  const char* v6[] = {"2001:db8::7"};
  cr_assert_str_eq(walk(v6, 1, buf, &taken), "2001:db8::7");
}


Test(ipnet, xff_malformed_stops_at_the_last_vouched_address, .timeout = 10) {
  char buf[CORE_IP_TEXT_MAX];
  unsigned taken = 9;
  const char* garbage[] = {"not an address"};
  cr_assert_str_eq(walk(garbage, 1, buf, &taken), "127.0.0.1");
  cr_assert_eq(taken, 0, "the peer itself");
  const char* empty[] = {""};
  cr_assert_str_eq(walk(empty, 1, buf, &taken), "127.0.0.1");
  cr_assert_eq(taken, 0);
  cr_assert_str_eq(walk(NULL, 0, buf, &taken), "127.0.0.1");
  cr_assert_eq(taken, 0);
  /* A spoofer behind a trusted hop gets that hop's view, not the peer's. */
  const char* behind[] = {"junk, 10.2.3.4"};
  cr_assert_str_eq(walk(behind, 1, buf, &taken), "10.2.3.4");
  cr_assert_eq(taken, 1);
  const char* port[] = {"198.51.100.1:4000"};
  cr_assert_str_eq(walk(port, 1, buf, &taken), "127.0.0.1");
  const char* commas[] = {",,,", "1.2.3.4,"};
  cr_assert_str_eq(walk(commas, 2, buf, &taken), "127.0.0.1");
  /* Left of the answer, anything goes: it is the client's to say. */
  const char* left[] = {"garbage, 203.0.113.5"};
  cr_assert_str_eq(walk(left, 1, buf, &taken), "203.0.113.5");
}


Test(ipnet, xff_survives_long_and_odd_input, .timeout = 10) {
  static char big[16 * 1024];
  for (size_t i = 0; i + 9 < sizeof(big); i += 9) {
    memcpy(big + i, "10.0.0.1,", 9);
  }
  big[sizeof(big) - 1] = '\0';
  big[sizeof(big) - 2] = '1';
  char buf[CORE_IP_TEXT_MAX];
  unsigned taken = 0;
  const char* v[] = {big};
  walk(v, 1, buf, &taken); /* terminates, whatever it answers */
  memset(big, ':', sizeof(big) - 1);
  cr_assert_str_eq(walk(v, 1, buf, &taken), "127.0.0.1");
  memset(big, '9', sizeof(big) - 1);
  cr_assert_str_eq(walk(v, 1, buf, &taken), "127.0.0.1");
}
