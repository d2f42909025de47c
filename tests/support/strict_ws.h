/* strict_ws.h: a strict reader of the frames a WebSocket server sends
 * (RFC 6455 section 5.2), written apart from src/ so that it shares no
 * mistake with it: FIN set (our server never fragments), RSV bits clear,
 * a known opcode, no mask, the shortest length encoding, 64-bit lengths
 * below 2^63, control payloads of at most 125 bytes, nothing after a close
 * frame. Takes bytes in any split; single-threaded. */
#ifndef TEST_STRICT_WS_H
#define TEST_STRICT_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct strict_ws_s strict_ws_t;

/* Each returns false to stop the reader (the caller found a fault). */
typedef struct {
  /* A header passed every check; `len` payload bytes follow. */
  bool (*on_frame)(strict_ws_t* p, uint8_t opcode, uint64_t len);
  /* Bytes of a data frame's payload, `off` bytes into it. */
  bool (*on_data)(strict_ws_t* p, const uint8_t* bytes, size_t n, uint64_t off);
  /* The frame ended; a control frame's payload is in `ctrl`. */
  bool (*on_end)(strict_ws_t* p,
                 uint8_t opcode,
                 const uint8_t* ctrl,
                 size_t ctrl_len);
} strict_ws_cbs_t;

struct strict_ws_s {
  const strict_ws_cbs_t* cbs;
  void* data;
  uint8_t hdr[10];
  size_t hdr_len;
  size_t hdr_need;
  bool in_payload;
  uint8_t opcode;
  uint64_t len; /* payload bytes of the current frame */
  uint64_t off; /* of them, seen */
  uint8_t ctrl[125];
  bool is_closed;  /* a close frame ended: no byte may follow */
  bool is_stopped; /* a violation or a callback stopped the reader */
  char error[160]; /* the violation, "" if a callback stopped it */
  uint64_t frames; /* frames ended */
};

/* Prepares a reader calling `cbs` (borrowed) with `data` at hand. */
void strict_ws_init(strict_ws_t* p, const strict_ws_cbs_t* cbs, void* data);

/* Reads `n` bytes. Returns false once stopped: p->error names the
 * violation, or is empty when a callback returned false. */
bool strict_ws_feed(strict_ws_t* p, const uint8_t* bytes, size_t n);

#endif
