/* http_reader.c: http-parser callbacks that gather one message at a time.
 * See http_reader.h. Loop thread only. */
#include "net/http_reader.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int on_message_begin(http_parser* p);
static int on_url(http_parser* p, const char* at, size_t len);
static int on_status(http_parser* p, const char* at, size_t len);
static int on_header_field(http_parser* p, const char* at, size_t len);
static int on_header_value(http_parser* p, const char* at, size_t len);
static int on_headers_complete(http_parser* p);
static int on_body(http_parser* p, const char* at, size_t len);
static int on_message_complete(http_parser* p);

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};


void net_http_reader_init(net_http_reader_t* r,
                          enum http_parser_type type,
                          size_t max_header_bytes,
                          size_t max_body_bytes,
                          net_http_message_cb on_message,
                          void* data) {
  memset(r, 0, sizeof(*r));
  http_parser_init(&r->parser, type);
  r->parser.data = r;
  r->max_header_bytes = max_header_bytes;
  r->max_body_bytes = max_body_bytes;
  r->on_message = on_message;
  r->data = data;
}


void net_http_reader_set_on_headers(net_http_reader_t* r,
                                    net_http_headers_cb on_headers) {
  r->on_headers = on_headers;
}


void net_http_reader_free(net_http_reader_t* r) {
  free(r->text);
  free(r->body);
  r->text = NULL;
  r->body = NULL;
  r->text_len = r->text_cap = 0;
  r->body_len = r->body_cap = 0;
}


/* Appends to the text buffer; `terminate` starts a new NUL-ended field. */
static int text_append(net_http_reader_t* r, const char* at, size_t len) {
  if (r->text_len + len + 1 > r->max_header_bytes) {
    r->error = NET_HTTP_E_HEADERS_TOO_LARGE;
    return -1;
  }
  if (r->text_len + len + 1 > r->text_cap) {
    size_t cap = r->text_cap == 0 ? 512 : r->text_cap;
    while (cap < r->text_len + len + 1) {
      cap *= 2;
    }
    if (cap > r->max_header_bytes) {
      cap = r->max_header_bytes;
    }
    char* grown = realloc(r->text, cap);
    if (grown == NULL) {
      r->error = NET_HTTP_E_NOMEM;
      return -1;
    }
    r->text = grown;
    r->text_cap = cap;
  }
  memcpy(r->text + r->text_len, at, len);
  r->text_len += len;
  r->text[r->text_len] = '\0';
  return 0;
}


/* Ends the current field with its NUL (already written) and reserves it. */
static int text_terminate(net_http_reader_t* r) {
  if (r->text_len + 1 > r->max_header_bytes) {
    r->error = NET_HTTP_E_HEADERS_TOO_LARGE;
    return -1;
  }
  return text_append(r, "", 0) == 0 ? (r->text_len++, 0) : -1;
}


static net_http_reader_t* reader_of(http_parser* p) {
  return p->data;
}


static int on_message_begin(http_parser* p) {
  net_http_reader_t* r = reader_of(p);
  r->text_len = 0;
  r->url_off = 0;
  r->url_len = 0;
  r->header_count = 0;
  r->in_value = false;
  r->in_field = false;
  r->body_len = 0;
  r->is_complete = false;
  r->in_message = true;
  r->headers_done = false;
  r->is_streaming = false;
  r->expects_continue = false;
  /* Slot 0 of text is the URL (or status reason), always NUL-terminated. */
  return text_append(r, "", 0);
}


static int on_url(http_parser* p, const char* at, size_t len) {
  net_http_reader_t* r = reader_of(p);
  r->url_len += (uint32_t) len;
  return text_append(r, at, len);
}


static int on_status(http_parser* p, const char* at, size_t len) {
  return on_url(p, at, len);
}


static int on_header_field(http_parser* p, const char* at, size_t len) {
  net_http_reader_t* r = reader_of(p);
  if (r->in_value || !r->in_field) {
    /* A new header starts: close the previous string. */
    if (text_terminate(r) != 0) {
      return -1;
    }
    if (r->header_count == NET_HTTP_MAX_HEADERS) {
      r->error = NET_HTTP_E_HEADERS_TOO_LARGE;
      return -1;
    }
    r->name_off[r->header_count] = (uint32_t) r->text_len;
    r->value_off[r->header_count] = UINT32_MAX;
    r->header_count++;
    r->in_value = false;
    r->in_field = true;
  }
  return text_append(r, at, len);
}


static int on_header_value(http_parser* p, const char* at, size_t len) {
  net_http_reader_t* r = reader_of(p);
  if (!r->in_value) {
    if (text_terminate(r) != 0) {
      return -1;
    }
    r->value_off[r->header_count - 1] = (uint32_t) r->text_len;
    r->in_value = true;
    r->in_field = false;
  }
  return text_append(r, at, len);
}


bool net_http_value_is(const char* v, const char* token) {
  if (v == NULL) {
    return false;
  }
  v += strspn(v, " \t");
  size_t len = strlen(v);
  while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
    len--;
  }
  return len == strlen(token) && strncasecmp(v, token, len) == 0;
}


/* Refuses what could frame the body differently in another parser (a
 * proxy in front of us): http-parser 2.9 accepts a space before the colon
 * of Transfer-Encoding and Content-Length ("Transfer-Encoding : chunked"),
 * any other name with spaces, a list ending in chunked ("gzip, chunked",
 * whose gzip we could not undo anyway) and repeated headers, and lets
 * HTTP/1.0 messages be chunked. Returns 0 or -1. */
static int check_framing(const net_http_reader_t* r) {
  unsigned te_count = 0;
  const char* te = NULL;
  bool has_length = false;
  for (unsigned i = 0; i < r->header_count; i++) {
    const char* name = r->text + r->name_off[i];
    if (name[0] == '\0' || strpbrk(name, " \t") != NULL) {
      return -1;
    }
    const char* value =
        r->value_off[i] != UINT32_MAX ? r->text + r->value_off[i] : "";
    if (strcasecmp(name, "Transfer-Encoding") == 0) {
      te_count++;
      te = value;
    } else if (strcasecmp(name, "Content-Length") == 0) {
      has_length = true;
    }
  }
  const http_parser* p = &r->parser;
  if (te_count > 1 || (te != NULL && !net_http_value_is(te, "chunked"))) {
    return -1;
  }
  if (te != NULL && (has_length || p->http_major == 0 ||
                     (p->http_major == 1 && p->http_minor == 0))) {
    return -1;
  }
  /* Never frame by a header we did not see under its exact name. */
  if ((p->flags & F_CHUNKED) != 0 && te == NULL) {
    return -1;
  }
  return 0;
}


static int on_headers_complete(http_parser* p) {
  net_http_reader_t* r = reader_of(p);
  if (r->header_count > 0 && !r->in_value) {
    /* A header field with no value callback: give it an empty value. */
    if (text_terminate(r) != 0) {
      return -1;
    }
    r->value_off[r->header_count - 1] = (uint32_t) r->text_len;
  }
  if (check_framing(r) != 0) {
    r->error = NET_HTTP_E_PARSE;
    return -1;
  }
  r->headers_done = true;
  r->is_streaming = r->want_stream != NULL && r->want_stream(r);
  if (!r->is_streaming && (p->flags & F_CONTENTLENGTH) &&
      p->content_length > r->max_body_bytes) {
    r->error = NET_HTTP_E_BODY_TOO_LARGE;
    return -1;
  }
  /* RFC 9110 10.1.1: an HTTP/1.0 client's 100-continue is ignored, and
   * without a body there is nothing to continue. */
  bool has_body = (p->flags & F_CHUNKED) != 0 ||
                  ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > 0);
  r->expects_continue =
      p->type == HTTP_REQUEST && has_body &&
      (p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1)) &&
      net_http_value_is(net_http_header(r, "Expect"), "100-continue");
  if (r->on_headers != NULL && r->on_headers(r) != 0) {
    r->error = NET_HTTP_E_STOPPED;
    return -1;
  }
  return 0;
}


/* A streamed body piece: handed on, never gathered. */
static int stream_chunk(net_http_reader_t* r, const char* at, size_t len) {
  int rc = r->on_chunk(r, (const uint8_t*) at, len);
  if (rc < 0) {
    r->error = NET_HTTP_E_STOPPED;
    return -1;
  }
  if (rc > 0) {
    r->is_paused = true;
    http_parser_pause(&r->parser, 1);
  }
  return 0;
}


static int on_body(http_parser* p, const char* at, size_t len) {
  net_http_reader_t* r = reader_of(p);
  if (r->is_streaming) {
    return stream_chunk(r, at, len);
  }
  if (r->body_len + len > r->max_body_bytes) {
    r->error = NET_HTTP_E_BODY_TOO_LARGE;
    return -1;
  }
  if (r->body_len + len + 1 > r->body_cap) {
    size_t cap = r->body_cap == 0 ? 1024 : r->body_cap;
    while (cap < r->body_len + len + 1) {
      cap *= 2;
    }
    uint8_t* grown = realloc(r->body, cap);
    if (grown == NULL) {
      r->error = NET_HTTP_E_NOMEM;
      return -1;
    }
    r->body = grown;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  r->body[r->body_len] = '\0'; /* lets callers treat a text body as a string */
  return 0;
}


static int on_message_complete(http_parser* p) {
  net_http_reader_t* r = reader_of(p);
  r->is_complete = true;
  r->in_message = false;
  r->is_upgrade = p->upgrade != 0;
  int rc = r->on_message != NULL ? r->on_message(r) : 0;
  if (rc < 0) {
    r->error = NET_HTTP_E_STOPPED;
    return -1;
  }
  if (rc > 0 || r->is_upgrade) {
    /* Stop here; after an upgrade the rest belongs to the new protocol. */
    r->is_paused = true;
    http_parser_pause(p, 1);
  }
  return 0;
}


size_t net_http_reader_feed(net_http_reader_t* r,
                            const uint8_t* bytes,
                            size_t len) {
  r->error = NET_HTTP_OK;
  size_t n =
      http_parser_execute(&r->parser, &settings, (const char*) bytes, len);
  enum http_errno herr = HTTP_PARSER_ERRNO(&r->parser);
  if (herr == HPE_PAUSED && r->is_paused) {
    return n;
  }
  if (herr != HPE_OK && r->error == NET_HTTP_OK) {
    r->error = NET_HTTP_E_PARSE;
  }
  return n;
}


void net_http_reader_set_streaming(net_http_reader_t* r,
                                   net_http_stream_cb want,
                                   net_http_chunk_cb on_chunk) {
  r->want_stream = want;
  r->on_chunk = on_chunk;
}


void net_http_reader_resume(net_http_reader_t* r) {
  r->is_paused = false;
  http_parser_pause(&r->parser, 0);
}


const char* net_http_url(const net_http_reader_t* r) {
  return r->text != NULL ? r->text + r->url_off : "";
}


const char* net_http_header(const net_http_reader_t* r, const char* name) {
  for (unsigned i = 0; i < r->header_count; i++) {
    if (r->value_off[i] != UINT32_MAX &&
        strcasecmp(r->text + r->name_off[i], name) == 0) {
      return r->text + r->value_off[i];
    }
  }
  return NULL;
}


size_t net_http_header_all(const net_http_reader_t* r,
                           const char* name,
                           const char** out,
                           size_t cap) {
  size_t n = 0;
  for (unsigned i = 0; i < r->header_count && n < cap; i++) {
    if (r->value_off[i] != UINT32_MAX &&
        strcasecmp(r->text + r->name_off[i], name) == 0) {
      out[n++] = r->text + r->value_off[i];
    }
  }
  return n;
}


unsigned net_http_method(const net_http_reader_t* r) {
  return r->parser.method;
}


unsigned net_http_status(const net_http_reader_t* r) {
  return r->parser.status_code;
}


bool net_http_should_keep_alive(const net_http_reader_t* r) {
  return http_should_keep_alive(&r->parser) != 0;
}


bool net_http_token_list_has(const char* list, const char* token) {
  if (list == NULL) {
    return false;
  }
  size_t token_len = strlen(token);
  const char* p = list;
  while (*p != '\0') {
    while (*p == ' ' || *p == '\t' || *p == ',') {
      p++;
    }
    const char* start = p;
    while (*p != '\0' && *p != ',') {
      p++;
    }
    const char* end = p;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
      end--;
    }
    if ((size_t) (end - start) == token_len &&
        strncasecmp(start, token, token_len) == 0) {
      return true;
    }
  }
  return false;
}
