/* ws_check.c: RFC 6455 server frames, parsed independently of src/net. See
 * ws_check.h. */
#include "ws_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum {
  OP_TEXT = 0x1,
  OP_BINARY = 0x2,
  OP_CLOSE = 0x8,
  OP_PING = 0x9
};
enum {
  OP_PONG = 0xa
};


static bool is_utf8(const uint8_t* p, size_t n) {
  static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= n) {
      return false; /* truncated sequence */
    }
    for (size_t k = 1; k <= extra; k++) {
      if ((p[i + k] & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past Unicode. */
    if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}


static bool is_valid_close_code(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
         (code >= 3000 && code <= 4999);
}


static bool failf(char* why, size_t why_len, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool failf(char* why, size_t why_len, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, why_len, fmt, ap);
  va_end(ap);
  return false;
}


/* Checks a close frame's payload. */
static bool check_close(size_t at,
                        const uint8_t* payload,
                        uint64_t len,
                        char* why,
                        size_t why_len) {
  if (len == 1) {
    return failf(why, why_len, "offset %zu: a close frame with 1 byte", at);
  }
  if (len >= 2) {
    unsigned code = (unsigned) payload[0] << 8 | payload[1];
    if (!is_valid_close_code(code)) {
      return failf(why, why_len, "offset %zu: close code %u", at, code);
    }
    if (!is_utf8(payload + 2, (size_t) len - 2)) {
      return failf(why, why_len, "offset %zu: close reason not UTF-8", at);
    }
  }
  return true;
}


bool fuzz_ws_check_stream(const uint8_t* p,
                          size_t n,
                          bool may_be_cut,
                          fuzz_ws_text_cb on_text,
                          void* data,
                          char* why,
                          size_t why_len) {
  static int trace = -1;
  if (trace < 0) {
    trace = getenv("FUZZ_WS_FEED_TRACE") != NULL;
  }
  size_t at = 0;
  bool has_close = false;
  while (at < n) {
    size_t start = at;
    if (n - at < 2) {
      break;
    }
    uint8_t b0 = p[at];
    uint8_t b1 = p[at + 1];
    at += 2;
    unsigned opcode = b0 & 0x0f;
    if ((b0 & 0x80) == 0) {
      return failf(why, why_len, "offset %zu: a fragment (FIN clear, 0x%02x)",
                   start, b0);
    }
    if ((b0 & 0x70) != 0) {
      return failf(why, why_len, "offset %zu: RSV bits set (0x%02x)", start,
                   b0);
    }
    if (opcode != OP_TEXT && opcode != OP_BINARY && opcode != OP_CLOSE &&
        opcode != OP_PING && opcode != OP_PONG) {
      return failf(why, why_len, "offset %zu: opcode 0x%x", start, opcode);
    }
    if (b1 & 0x80) {
      return failf(why, why_len, "offset %zu: a masked server frame", start);
    }
    uint64_t len = b1 & 0x7f;
    size_t ext = len == 126 ? 2 : (len == 127 ? 8 : 0);
    if (n - at < ext) {
      at = start;
      break;
    }
    if (ext > 0) {
      len = 0;
      for (size_t i = 0; i < ext; i++) {
        len = len << 8 | p[at + i];
      }
      at += ext;
      /* RFC 6455 5.2: the minimal number of bytes, top bit clear. */
      if ((ext == 2 && len < 126) || (ext == 8 && len <= 0xffff) || len >> 63) {
        return failf(why, why_len, "offset %zu: length %llu in %zu bytes",
                     start, (unsigned long long) len, ext);
      }
    }
    if (opcode >= OP_CLOSE && len > 125) {
      return failf(why, why_len, "offset %zu: control frame 0x%x of %llu bytes",
                   start, opcode, (unsigned long long) len);
    }
    if (has_close) {
      return failf(why, why_len,
                   "offset %zu: a frame (opcode 0x%x) after the close frame",
                   start, opcode);
    }
    if (len > n - at) {
      at = start;
      break;
    }
    const uint8_t* payload = p + at;
    at += (size_t) len;
    if (trace) {
      fprintf(stderr, "frame at %zu: opcode 0x%x, %llu bytes\n", start, opcode,
              (unsigned long long) len);
    }
    switch (opcode) {
    case OP_TEXT:
      on_text(start, payload, (size_t) len, data);
      break;
    case OP_BINARY:
      return failf(why, why_len, "offset %zu: a binary frame", start);
    case OP_CLOSE:
      has_close = true;
      if (!check_close(start, payload, len, why, why_len)) {
        return false;
      }
      break;
    case OP_PING:
      if (len != 0) {
        return failf(why, why_len, "offset %zu: a ping with a payload", start);
      }
      break;
    }
  }
  if (at < n && !may_be_cut) {
    return failf(why, why_len,
                 "the stream ends inside a frame: %zu of %zu "
                 "bytes parsed",
                 at, n);
  }
  return true;
}
