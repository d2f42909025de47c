/* strict_ws.c: the strict server-frame reader. See strict_ws.h. Opcodes and
 * bit masks are spelled out here rather than taken from src/net/frame.h. */
#include "strict_ws.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum {
  OP_TEXT = 0x1,
  OP_BINARY = 0x2,
  OP_CLOSE = 0x8,
  OP_PING = 0x9,
  OP_PONG = 0xa
};


static bool violation(strict_ws_t* p, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->error, sizeof(p->error), fmt, ap);
  va_end(ap);
  p->is_stopped = true;
  return false;
}


static bool stop_unless(strict_ws_t* p, bool go_on) {
  if (!go_on) {
    p->is_stopped = true;
  }
  return go_on;
}


static bool is_control(uint8_t op) {
  return (op & 0x08) != 0;
}


static bool end_frame(strict_ws_t* p) {
  p->in_payload = false;
  p->hdr_len = 0;
  p->frames++;
  if (p->opcode == OP_CLOSE) {
    p->is_closed = true;
  }
  size_t ctrl_len = is_control(p->opcode) ? (size_t) p->len : 0;
  return stop_unless(p, p->cbs->on_end(p, p->opcode, p->ctrl, ctrl_len));
}


/* The header is complete: its length must use the shortest encoding. */
static bool start_payload(strict_ws_t* p) {
  uint64_t len = p->hdr[1] & 0x7f;
  if (p->hdr_need > 2) {
    len = 0;
    for (size_t i = 2; i < p->hdr_need; i++) {
      len = len << 8 | p->hdr[i];
    }
    if (p->hdr_need == 4 && len < 126) {
      return violation(p, "length %llu in a 16-bit field",
                       (unsigned long long) len);
    }
    if (p->hdr_need == 10 && (len <= 0xffff || len >> 63 != 0)) {
      return violation(p, "length %llu in a 64-bit field",
                       (unsigned long long) len);
    }
  }
  p->len = len;
  p->off = 0;
  p->in_payload = true;
  if (!stop_unless(p, p->cbs->on_frame(p, p->opcode, len))) {
    return false;
  }
  return len > 0 || end_frame(p);
}


static bool header_byte(strict_ws_t* p, uint8_t byte) {
  p->hdr[p->hdr_len++] = byte;
  if (p->hdr_len == 1) {
    uint8_t op = byte & 0x0f;
    if (p->is_closed) {
      return violation(p, "byte 0x%02x after the close frame", byte);
    }
    if ((byte & 0x80) == 0) {
      return violation(p, "FIN clear (0x%02x): the server never fragments",
                       byte);
    }
    if ((byte & 0x70) != 0) {
      return violation(p, "reserved bits set (0x%02x)", byte);
    }
    if (op != OP_TEXT && op != OP_BINARY && op != OP_CLOSE && op != OP_PING &&
        op != OP_PONG) {
      return violation(p, "unknown opcode 0x%x", op);
    }
    p->opcode = op;
    return true;
  }
  if (p->hdr_len == 2) {
    uint8_t len7 = byte & 0x7f;
    if ((byte & 0x80) != 0) {
      return violation(p, "a masked server frame (opcode 0x%x)", p->opcode);
    }
    if (is_control(p->opcode) && len7 > 125) {
      return violation(p, "control frame 0x%x announces %u bytes", p->opcode,
                       len7);
    }
    p->hdr_need = len7 == 126 ? 4 : (len7 == 127 ? 10 : 2);
  }
  return p->hdr_len < p->hdr_need || start_payload(p);
}


void strict_ws_init(strict_ws_t* p, const strict_ws_cbs_t* cbs, void* data) {
  memset(p, 0, sizeof(*p));
  p->cbs = cbs;
  p->data = data;
}


bool strict_ws_feed(strict_ws_t* p, const uint8_t* bytes, size_t n) {
  while (n > 0 && !p->is_stopped) {
    if (!p->in_payload) {
      header_byte(p, *bytes++);
      n--;
      continue;
    }
    uint64_t left = p->len - p->off;
    size_t take = n < left ? n : (size_t) left;
    if (is_control(p->opcode)) {
      memcpy(p->ctrl + p->off, bytes, take);
    } else if (!stop_unless(p, p->cbs->on_data(p, bytes, take, p->off))) {
      break;
    }
    p->off += take;
    bytes += take;
    n -= take;
    if (p->off == p->len) {
      end_frame(p);
    }
  }
  return !p->is_stopped;
}
