/* test_http_reader.c: the HTTP/1.1 reader (src/net/http_reader.c) on its
 * own, without sockets: body framing rules that keep requests from being
 * smuggled past a proxy. Every message is fed whole, in 7-byte chunks and
 * byte by byte, since http-parser calls back differently for each. */
#include <criterion/criterion.h>
#include <string.h>

#include "net/http_reader.h"

typedef struct {
  int messages;
  char body[256];
} seen_t;


static int on_message(net_http_reader_t* r) {
  seen_t* seen = r->data;
  seen->messages++;
  size_t n = r->body_len < sizeof(seen->body) - 1 ? r->body_len
                                                  : sizeof(seen->body) - 1;
  memcpy(seen->body, r->body, n);
  seen->body[n] = '\0';
  return 0;
}


/* Feeds `text` in pieces of `chunk` bytes; returns the reader's error. */
static int feed(enum http_parser_type type,
                const char* text,
                size_t chunk,
                seen_t* seen) {
  net_http_reader_t r;
  memset(seen, 0, sizeof(*seen));
  net_http_reader_init(&r, type, 16384, 65536, on_message, seen);
  size_t len = strlen(text);
  int err = NET_HTTP_OK;
  for (size_t off = 0; off < len && err == NET_HTTP_OK;) {
    size_t n = len - off < chunk ? len - off : chunk;
    size_t used = net_http_reader_feed(&r, (const uint8_t*) text + off, n);
    err = r.error;
    off += used;
    if (used < n && err == NET_HTTP_OK) {
      break; /* an upgrade; not used here */
    }
  }
  net_http_reader_free(&r);
  return err;
}


static const size_t chunks[] = {100000, 7, 1};


static void expect_refused(enum http_parser_type type, const char* text) {
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    seen_t seen;
    int err = feed(type, text, chunks[i], &seen);
    cr_expect_eq(err, NET_HTTP_E_PARSE, "chunk %zu: error %d for %s", chunks[i],
                 err, text);
    cr_expect_eq(seen.messages, 0, "chunk %zu: delivered %s", chunks[i], text);
  }
}


static void expect_body(enum http_parser_type type,
                        const char* text,
                        const char* body) {
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    seen_t seen;
    int err = feed(type, text, chunks[i], &seen);
    cr_expect_eq(err, NET_HTTP_OK, "chunk %zu: error %d for %s", chunks[i], err,
                 text);
    cr_expect_eq(seen.messages, 1, "chunk %zu: %d messages", chunks[i],
                 seen.messages);
    cr_expect_str_eq(seen.body, body, "chunk %zu", chunks[i]);
  }
}


#define CHUNKED_ABC "3\r\nabc\r\n0\r\n\r\n"

Test(http_reader, accepts_exactly_chunked_in_any_case, .timeout = 10) {
  expect_body(
      HTTP_REQUEST,
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKED_ABC,
      "abc");
  expect_body(
      HTTP_REQUEST,
      "POST / HTTP/1.1\r\ntransfer-encoding: CHUNKED \r\n\r\n" CHUNKED_ABC,
      "abc");
  expect_body(HTTP_REQUEST, "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
              "abc");
  expect_body(
      HTTP_RESPONSE,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKED_ABC,
      "abc");
}


Test(http_reader, refuses_transfer_coding_lists, .timeout = 10) {
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
  /* The same list, folded onto a continuation line (obs-fold). */
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: gzip,\r\n chunked\r\n"
                 "\r\n" CHUNKED_ABC);
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n"
                 "\r\n" CHUNKED_ABC);
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\nabc");
  expect_refused(HTTP_RESPONSE,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
}


Test(http_reader, refuses_repeated_transfer_encoding, .timeout = 10) {
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n" CHUNKED_ABC);
}


Test(http_reader, refuses_whitespace_in_header_names, .timeout = 10) {
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc");
  expect_refused(HTTP_REQUEST, "GET / HTTP/1.1\r\nHost : x\r\n\r\n");
  expect_refused(HTTP_REQUEST, "GET / HTTP/1.1\r\nX Y: z\r\n\r\n");
  expect_refused(HTTP_REQUEST,
                 "GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n"
                 "0\r\n\r\n");
  expect_refused(HTTP_RESPONSE,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
}


Test(http_reader, refuses_length_with_transfer_encoding, .timeout = 10) {
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n" CHUNKED_ABC);
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 3\r\n\r\n" CHUNKED_ABC);
}


Test(http_reader, refuses_chunked_http10, .timeout = 10) {
  expect_refused(HTTP_REQUEST,
                 "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n");
}
