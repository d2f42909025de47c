/* frame.c: shared output buffers and WebSocket frame headers. See frame.h.
 * Any thread; only the refcount is shared state. */
#include "net/frame.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


net_frame_t* net_frame_new(size_t headroom, size_t len) {
  net_frame_t* f = malloc(sizeof(*f) + headroom + len + 1);
  if (f == NULL) {
    return NULL;
  }
  atomic_init(&f->refs, 1);
  f->headroom = headroom;
  f->data = f->bytes + headroom;
  f->len = len;
  return f;
}


net_frame_t* net_frame_from_bytes(const void* bytes, size_t len) {
  net_frame_t* f = net_frame_new(0, len);
  if (f != NULL && len > 0) {
    memcpy(f->data, bytes, len);
  }
  return f;
}


uint8_t* net_frame_prepend(net_frame_t* f, size_t n) {
  assert(n <= f->headroom);
  f->headroom -= n;
  f->data -= n;
  f->len += n;
  return f->data;
}


void net_frame_seal_ws(net_frame_t* f, uint8_t opcode) {
  uint8_t hdr[NET_WS_MAX_HEADER_LEN];
  size_t hdr_len = net_ws_header_encode(hdr, opcode, f->len, NULL);
  memcpy(net_frame_prepend(f, hdr_len), hdr, hdr_len);
}


net_frame_t* net_frame_ws_text(const char* text, size_t len) {
  net_frame_t* f = net_frame_new(NET_WS_MAX_HEADER_LEN, len);
  if (f == NULL) {
    return NULL;
  }
  memcpy(f->data, text, len);
  net_frame_seal_ws(f, NET_WS_OP_TEXT);
  return f;
}


net_frame_t* net_frame_ref(net_frame_t* f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}


void net_frame_unref(net_frame_t* f) {
  if (f == NULL) {
    return;
  }
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
    free(f);
  }
}


size_t net_ws_header_encode(uint8_t* out,
                            uint8_t opcode,
                            uint64_t payload_len,
                            const uint8_t* mask) {
  size_t n = 0;
  uint8_t mask_bit = mask != NULL ? 0x80 : 0;
  out[n++] = (uint8_t) (0x80 | (opcode & 0x0f));
  if (payload_len < 126) {
    out[n++] = (uint8_t) (mask_bit | payload_len);
  } else if (payload_len <= 0xffff) {
    out[n++] = (uint8_t) (mask_bit | 126);
    out[n++] = (uint8_t) (payload_len >> 8);
    out[n++] = (uint8_t) payload_len;
  } else {
    out[n++] = (uint8_t) (mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      out[n++] = (uint8_t) (payload_len >> shift);
    }
  }
  if (mask != NULL) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}


size_t net_ws_close_frame(uint8_t* out, uint16_t code, const char* reason) {
  size_t reason_len = reason != NULL ? strlen(reason) : 0;
  if (reason_len > 123) {
    reason_len = 123; /* control payloads are at most 125 bytes */
  }
  out[0] = 0x80 | NET_WS_OP_CLOSE;
  out[1] = (uint8_t) (2 + reason_len);
  out[2] = (uint8_t) (code >> 8);
  out[3] = (uint8_t) code;
  if (reason_len > 0) {
    memcpy(out + 4, reason, reason_len);
  }
  return 4 + reason_len;
}


const uint8_t* net_ws_frame_payload(const net_frame_t* f, size_t* len) {
  uint8_t len7 = f->data[1] & 0x7f;
  size_t hdr = len7 < 126 ? 2 : (len7 == 126 ? 4 : 10);
  *len = f->len - hdr;
  return f->data + hdr;
}
