/* http_reply.c: HTTP responses. See http_reply.h. Loop thread only. */
#include "server/http_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/msg.h"


static const char* status_text(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 204:
    return "No Content";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 460:
    return "Checksum Mismatch";
  case 507:
    return "Insufficient Storage";
  case 417:
    return "Expectation Failed";
  case 426:
    return "Upgrade Required";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}


/* Formats the head into `out`; returns its length or -1. */
static int format_head(char* out,
                       size_t cap,
                       const srv_http_mode_t* mode,
                       int status,
                       const char* content_type,
                       uint64_t len,
                       const char* extra_headers) {
  if (status == 204) {
    /* No Content: neither a type nor a length (RFC 9110 8.6). */
    int n = snprintf(out, cap,
                     "HTTP/1.1 204 No Content\r\n"
                     "Server: cryomambad/" CM_VERSION
                     "\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: %s\r\n"
                     "%s\r\n",
                     mode->keep_alive ? "keep-alive" : "close",
                     extra_headers != NULL ? extra_headers : "");
    (void) content_type;
    (void) len;
    return n > 0 && (size_t) n < cap ? n : -1;
  }
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "Server: cryomambad/" CM_VERSION
                   "\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %llu\r\n"
                   "Cache-Control: no-store\r\n"
                   "Connection: %s\r\n"
                   "%s\r\n",
                   status, status_text(status), content_type,
                   (unsigned long long) len,
                   mode->keep_alive ? "keep-alive" : "close",
                   extra_headers != NULL ? extra_headers : "");
  return n > 0 && (size_t) n < cap ? n : -1;
}


static int send_frame(srv_conn_t* conn, int status, net_frame_t* f) {
  if (f == NULL) {
    srv_conn_close(conn);
    return -1;
  }
  conn->ctx->metrics.http_responses_by_class[status / 100 % 6]++;
  int rc = srv_conn_send(conn, f, NET_WQ_ESSENTIAL);
  net_frame_unref(f);
  return rc;
}


int srv_http_reply(srv_conn_t* conn,
                   const srv_http_mode_t* mode,
                   int status,
                   const char* content_type,
                   const void* body,
                   size_t body_len,
                   const char* extra_headers) {
  char head[4096];
  int n = format_head(head, sizeof(head), mode, status, content_type, body_len,
                      extra_headers);
  if (n < 0) {
    srv_conn_close(conn);
    return -1;
  }
  size_t sent_body = mode->head_only ? 0 : body_len;
  net_frame_t* f = net_frame_new(0, (size_t) n + sent_body);
  if (f != NULL) {
    memcpy(f->data, head, (size_t) n);
    if (sent_body > 0) {
      memcpy(f->data + n, body, sent_body);
    }
  }
  return send_frame(conn, status, f);
}


int srv_http_reply_continue(srv_conn_t* conn) {
  static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
  net_frame_t* f = net_frame_new(0, sizeof(interim) - 1);
  if (f == NULL) {
    srv_conn_close(conn);
    return -1;
  }
  memcpy(f->data, interim, sizeof(interim) - 1);
  int rc = srv_conn_send(conn, f, NET_WQ_ESSENTIAL); /* not a response */
  net_frame_unref(f);
  return rc;
}


int srv_http_reply_json(srv_conn_t* conn,
                        const srv_http_mode_t* mode,
                        int status,
                        json_t* body,
                        const char* extra_headers) {
  char* text = body != NULL
                   ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)
                   : NULL;
  json_decref(body);
  if (text == NULL) {
    return srv_http_reply_error(conn, mode, 500, "internal", "out of memory",
                                NULL, true, NULL);
  }
  int rc = srv_http_reply(conn, mode, status, "application/json", text,
                          strlen(text), extra_headers);
  free(text);
  return rc;
}


int srv_http_reply_error(srv_conn_t* conn,
                         const srv_http_mode_t* mode,
                         int status,
                         const char* code,
                         const char* message,
                         const char* hint,
                         bool retryable,
                         const char* extra_headers) {
  size_t len = 0;
  char* text = core_msg_error_json(code, message, hint, retryable, &len);
  if (text == NULL) {
    static const char fallback[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\","
        "\"hint\":null,\"retryable\":true}}";
    return srv_http_reply(conn, mode, 500, "application/json", fallback,
                          sizeof(fallback) - 1, NULL);
  }
  int rc = srv_http_reply(conn, mode, status, "application/json", text, len,
                          extra_headers);
  free(text);
  return rc;
}


int srv_http_reply_head(srv_conn_t* conn,
                        const srv_http_mode_t* mode,
                        int status,
                        const char* content_type,
                        uint64_t len,
                        const char* extra_headers) {
  char head[1024];
  int n = format_head(head, sizeof(head), mode, status, content_type, len,
                      extra_headers);
  return send_frame(conn, status,
                    n < 0 ? NULL : net_frame_from_bytes(head, (size_t) n));
}


int srv_http_reply_shared(srv_conn_t* conn,
                          const srv_http_mode_t* mode,
                          int status,
                          const char* content_type,
                          net_frame_t* shared,
                          size_t offset,
                          size_t len) {
  if (srv_http_reply_head(conn, mode, status, content_type, len, NULL) != 0) {
    return -1;
  }
  if (mode->head_only) {
    return 0;
  }
  net_frame_t* body = net_frame_slice(shared, offset, len);
  if (body == NULL) {
    srv_conn_close(conn);
    return -1;
  }
  int rc = srv_conn_send(conn, body, NET_WQ_ESSENTIAL);
  net_frame_unref(body);
  return rc;
}
