/* fuzz_ipnet.c: libFuzzer target for core/ipnet.c. The input is split at
 * its first NUL byte: the part before is parsed as a network
 * (core_ipnet_parse) and, if it is one, as the only trusted network; the
 * rest is split at '\n' into X-Forwarded-For values. Checked: a parsed
 * network prints back to one that parses to the same network and contains
 * its own address; the walk's answer is the peer or an address it found,
 * and printing any answer round-trips through core_ip_parse. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/ipnet.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define MAX_VALUES 16


int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  char* text = malloc(size + 1);
  if (text == NULL) {
    return 0;
  }
  memcpy(text, data, size);
  text[size] = '\0';
  size_t head = strlen(text);
  core_ipnet_t nets[2];
  size_t n_nets = 0;
  if (core_ipnet_parse(text, &nets[0]) == 0) {
    char back[CORE_IPNET_TEXT_MAX];
    core_ipnet_format(&nets[0], back, sizeof(back));
    core_ipnet_t again;
    assert(core_ipnet_parse(back, &again) == 0);
    assert(memcmp(&again, &nets[0], sizeof(again)) == 0);
    assert(core_ipnet_contains(&nets[0], &nets[0].addr));
    n_nets = 1;
  }
  (void) core_ipnet_parse("127.0.0.1", &nets[n_nets++]);
  const char* values[MAX_VALUES];
  size_t n_values = 0;
  if (head < size) {
    char* p = text + head + 1;
    while (n_values < MAX_VALUES) {
      values[n_values++] = p;
      char* nl = strchr(p, '\n');
      if (nl == NULL) {
        break;
      }
      *nl = '\0';
      p = nl + 1;
    }
  }
  core_ip_t peer;
  assert(core_ip_parse("127.0.0.1", 9, &peer) == 0);
  core_ip_t client;
  unsigned taken =
      core_xff_client(values, n_values, nets, n_nets, &peer, &client);
  if (taken == 0) {
    assert(memcmp(&client, &peer, sizeof(peer)) == 0);
  }
  char ip[CORE_IP_TEXT_MAX];
  core_ip_format(&client, ip, sizeof(ip));
  core_ip_t again;
  assert(core_ip_parse(ip, strlen(ip), &again) == 0);
  assert(memcmp(&again, &client, sizeof(again)) == 0);
  free(text);
  return 0;
}
