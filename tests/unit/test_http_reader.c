/* test_http_reader.c: the HTTP/1.1 reader (src/net/http_reader.c) on its
 * own, without sockets: body framing rules that keep requests from being
 * smuggled past a proxy. Every message is fed whole, in 7-byte chunks and
 * byte by byte, since http-parser calls back differently for each. */
#include <criterion/criterion.h>
#include <stdio.h>
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


typedef struct {
  int headers;            /* on_headers calls */
  int messages;           /* on_message calls */
  bool expects[2];        /* expects_continue seen in on_headers */
  size_t body_at_headers; /* body bytes held when the headers completed */
  int stop_at;            /* on_headers call (1-based) that returns -1 */
} cont_t;


static int on_headers_cont(net_http_reader_t* r) {
  cont_t* c = r->data;
  if (c->headers < 2) {
    c->expects[c->headers] = r->expects_continue;
  }
  c->headers++;
  c->body_at_headers += r->body_len;
  return c->headers == c->stop_at ? -1 : 0;
}


static int on_message_cont(net_http_reader_t* r) {
  cont_t* c = r->data;
  c->messages++;
  return 0;
}


static int feed_cont(const char* text, size_t chunk, cont_t* c) {
  net_http_reader_t r;
  net_http_reader_init(&r, HTTP_REQUEST, 16384, 65536, on_message_cont, c);
  net_http_reader_set_on_headers(&r, on_headers_cont);
  size_t len = strlen(text);
  for (size_t off = 0; off < len && r.error == NET_HTTP_OK;) {
    size_t n = len - off < chunk ? len - off : chunk;
    off += net_http_reader_feed(&r, (const uint8_t*) text + off, n);
  }
  int err = r.error;
  net_http_reader_free(&r);
  return err;
}


/* Two pipelined requests; says whether each expected a 100 Continue. */
static void expect_continue(const char* first,
                            const char* second,
                            bool first_expects,
                            bool second_expects) {
  char text[1024];
  snprintf(text, sizeof(text), "%s%s", first, second);
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    cont_t c = {0};
    cr_expect_eq(feed_cont(text, chunks[i], &c), NET_HTTP_OK, "%s", text);
    cr_expect_eq(c.headers, 2, "chunk %zu: %d on_headers", chunks[i],
                 c.headers);
    cr_expect_eq(c.messages, 2);
    cr_expect_eq(c.body_at_headers, 0, "the body came before on_headers");
    cr_expect_eq(c.expects[0], first_expects, "chunk %zu: %s", chunks[i],
                 first);
    cr_expect_eq(c.expects[1], second_expects, "chunk %zu: %s", chunks[i],
                 second);
  }
}


#define PLAIN_GET "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

Test(http_reader, flags_100_continue_with_a_body_to_come, .timeout = 10) {
  expect_continue(
      "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
      "abc",
      PLAIN_GET, true, false);
  expect_continue(
      "POST / HTTP/1.1\r\nexpect:  100-Continue \r\nTransfer-Encoding: "
      "chunked\r\n\r\n" CHUNKED_ABC,
      PLAIN_GET, true, false);
  /* The flag does not leak into the next request. */
  expect_continue(
      "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\ny", true, false);
}


Test(http_reader, no_100_continue_without_body_or_in_http10, .timeout = 10) {
  expect_continue(
      "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
      "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", false, false);
  expect_continue(
      "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
      "abc",
      "POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", false,
      false);
}


Test(http_reader, on_headers_can_stop_before_the_body, .timeout = 10) {
  static const char text[] =
      "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
      "abc" PLAIN_GET;
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    cont_t c = {.stop_at = 1};
    cr_expect_eq(feed_cont(text, chunks[i], &c), NET_HTTP_E_STOPPED);
    cr_expect_eq(c.headers, 1);
    cr_expect_eq(c.messages, 0, "chunk %zu: a refused message delivered",
                 chunks[i]);
  }
}
