/* ws_check.h: an RFC 6455 parser for what a server sends, written apart
 * from src/net (it shares no code with the frames it checks) for the fuzz
 * targets: the stream must be whole, unmasked, unfragmented frames with
 * valid opcodes, minimal lengths, control frames of at most 125 bytes,
 * close frames with a valid code and a UTF-8 reason, and nothing after the
 * close frame. */
#ifndef FUZZ_WS_CHECK_H
#define FUZZ_WS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called for each text frame: `at` is its offset in the stream, `payload`
 * points into the stream. */
typedef void (*fuzz_ws_text_cb)(size_t at,
                                const uint8_t* payload,
                                size_t len,
                                void* data);

/* Checks the `n` bytes at `p`; a trailing partial frame is accepted only
 * when `may_be_cut`. Binary frames are refused (our server sends text).
 * Returns true, or false with the first problem in `why`. With
 * $FUZZ_WS_FEED_TRACE set, lists every frame on stderr. */
bool fuzz_ws_check_stream(const uint8_t* p,
                          size_t n,
                          bool may_be_cut,
                          fuzz_ws_text_cb on_text,
                          void* data,
                          char* why,
                          size_t why_len);

#endif
