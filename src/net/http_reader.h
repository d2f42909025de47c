/* http_reader.h: incremental HTTP/1.1 message reader over http-parser, for
 * requests (server) and responses (client). Collects the URL, headers and
 * body of each message within limits and hands complete messages to a
 * callback; pipelined messages are delivered in order; parsing stops at an
 * upgrade, leaving the rest of the bytes to the new protocol. Refuses
 * (NET_HTTP_E_PARSE) a message whose body length two parsers could read
 * differently: a header name with whitespace in it, a Transfer-Encoding
 * other than one header `chunked`, or Transfer-Encoding together with
 * Content-Length or in HTTP/1.0. Loop thread. */
#ifndef NET_HTTP_READER_H
#define NET_HTTP_READER_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_HTTP_MAX_HEADERS 64

typedef enum {
  NET_HTTP_OK = 0,
  NET_HTTP_E_PARSE = -9101,             /* malformed HTTP: 400 */
  NET_HTTP_E_HEADERS_TOO_LARGE = -9102, /* 431 */
  NET_HTTP_E_BODY_TOO_LARGE = -9103,    /* 413 */
  NET_HTTP_E_NOMEM = -9104,
  NET_HTTP_E_STOPPED = -9105 /* the message callback said stop */
} net_http_err_t;

typedef struct net_http_reader_s net_http_reader_t;

/* Called for each complete message; return 0 to continue parsing, 1 to pause
 * (feed returns early; call net_http_reader_resume() before feeding the rest)
 * or -1 to stop for good (the reader reports NET_HTTP_E_STOPPED). */
typedef int (*net_http_message_cb)(net_http_reader_t* r);

/* Body streaming (optional, net_http_reader_set_streaming). `want` runs once
 * a message's headers are complete: true means its body goes to `on_chunk`
 * piece by piece instead of into r->body, and max_body_bytes does not apply
 * (the receiver bounds it). `on_chunk` gets each piece (borrowed for the
 * call) and returns 0 to go on, 1 to pause (as for on_message: feed returns
 * early, net_http_reader_resume() before feeding the rest) or -1 to stop. */
typedef bool (*net_http_stream_cb)(net_http_reader_t* r);
typedef int (*net_http_chunk_cb)(net_http_reader_t* r,
                                 const uint8_t* bytes,
                                 size_t len);

/* Called when a message's headers are complete, before its body is read
 * (to answer Expect: 100-continue, or to refuse before the body comes);
 * return 0 to go on or -1 to stop for good (NET_HTTP_E_STOPPED). */
typedef int (*net_http_headers_cb)(net_http_reader_t* r);

struct net_http_reader_s {
  http_parser parser;
  /* URL and header fields, NUL-separated, in one buffer (malloc'd, grown up
   * to max_header_bytes; freed by net_http_reader_free). */
  char* text;
  size_t text_len, text_cap;
  uint32_t url_off, url_len;
  uint32_t name_off[NET_HTTP_MAX_HEADERS];
  uint32_t value_off[NET_HTTP_MAX_HEADERS];
  unsigned header_count;
  bool in_field; /* the last callback was a header name */
  bool in_value; /* the last callback was a header value */
  uint8_t* body; /* malloc'd, up to max_body_bytes */
  size_t body_len, body_cap;
  size_t max_header_bytes, max_body_bytes;
  bool in_message;   /* a message has begun and is not complete yet */
  bool headers_done; /* the current message's headers are complete */
  bool is_complete;  /* a whole message is held */
  bool is_upgrade;   /* the last message asked for a protocol upgrade */
  bool is_paused;    /* feeding stopped after a message (pause or upgrade) */
  /* An HTTP/1.1 request with Expect: 100-continue and a body (chunked or a
   * Content-Length above 0) that the client holds back until it gets
   * "100 Continue"; set when the headers are complete, cleared at the next
   * message. */
  bool expects_continue;
  int error;
  net_http_message_cb on_message;
  net_http_headers_cb on_headers; /* NULL unless set */
  void* data;
  /* Body streaming; both NULL unless set. */
  net_http_stream_cb want_stream;
  net_http_chunk_cb on_chunk;
  bool is_streaming; /* the current message's body goes to on_chunk */
};

/* Prepares a reader for requests (HTTP_REQUEST) or responses. */
void net_http_reader_init(net_http_reader_t* r,
                          enum http_parser_type type,
                          size_t max_header_bytes,
                          size_t max_body_bytes,
                          net_http_message_cb on_message,
                          void* data);

/* Sets the callback run as each message's headers complete (NULL: none). */
void net_http_reader_set_on_headers(net_http_reader_t* r,
                                    net_http_headers_cb on_headers);

/* Feeds bytes. Returns the number consumed (less than len after an upgrade
 * or an error) and sets r->error (0 or net_http_err_t). */
size_t net_http_reader_feed(net_http_reader_t* r,
                            const uint8_t* bytes,
                            size_t len);

/* Enables body streaming for the messages chosen by `want` (see above). */
void net_http_reader_set_streaming(net_http_reader_t* r,
                                   net_http_stream_cb want,
                                   net_http_chunk_cb on_chunk);

/* Continues after a pause requested by the message callback. */
void net_http_reader_resume(net_http_reader_t* r);

/* The current message's pieces; valid inside on_headers (all but the body)
 * and on_message, and until the next feed. Header lookup is case-insensitive;
 * NULL when absent. */
const char* net_http_url(const net_http_reader_t* r);
const char* net_http_header(const net_http_reader_t* r, const char* name);
/* Every value of header `name` in the order received, at most `cap` of them
 * into `out` (borrowed, valid as net_http_header's); returns how many. */
size_t net_http_header_all(const net_http_reader_t* r,
                           const char* name,
                           const char** out,
                           size_t cap);
unsigned net_http_method(const net_http_reader_t* r);
unsigned net_http_status(const net_http_reader_t* r);
bool net_http_should_keep_alive(const net_http_reader_t* r);

/* Frees the reader's buffers; it may be initialised again afterwards. */
void net_http_reader_free(net_http_reader_t* r);

/* True when the header value `value` (may be NULL) is `token`,
 * case-insensitively, ignoring surrounding spaces and tabs. */
bool net_http_value_is(const char* value, const char* token);

/* True when the comma-separated header value `list` contains `token`,
 * case-insensitively (e.g. Connection: keep-alive, Upgrade). */
bool net_http_token_list_has(const char* list, const char* token);

#endif
