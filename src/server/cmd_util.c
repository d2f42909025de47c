/* cmd_util.c: helpers shared by the command files. See cmd_util.h. */
#include "server/cmd_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/jobs.h"


pending_t* srv_cmd_pending_new(srv_request_t* rq) {
  pending_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return NULL;
  }
  p->ticket = srv_conn_ticket(rq->conn);
  if (p->ticket == NULL) {
    free(p);
    return NULL;
  }
  p->mode = rq->mode;
  p->ctx = rq->conn->ctx;
  core_list_init(&p->waiter.link);
  return p;
}


/* The connection the answer goes to, or NULL when it closed. */
srv_conn_t* srv_cmd_pending_conn(const pending_t* p) {
  return p->ticket->conn;
}


/* The answer went out (or cannot): the connection goes on. */
void srv_cmd_pending_done(pending_t* p) {
  srv_conn_t* conn = srv_cmd_pending_conn(p);
  srv_ticket_release(p->ticket);
  if (p->job != NULL) {
    srv_job_unref(p->job);
  }
  free(p);
  if (conn != NULL) {
    srv_conn_resume(conn);
  }
}


srv_cmd_result_t srv_cmd_reply_oom(srv_request_t* rq) {
  srv_http_reply_error(rq->conn, &rq->mode, 503, "overloaded",
                       "the server is out of memory", "retry later", true,
                       "Retry-After: 1\r\n");
  return SRV_CMD_DONE;
}


void srv_cmd_reply_method_not_allowed(srv_request_t* rq, const char* allow) {
  char headers[64];
  snprintf(headers, sizeof(headers), "Allow: %s\r\n", allow);
  char message[96];
  snprintf(message, sizeof(message), "this route accepts %s", allow);
  srv_http_reply_error(rq->conn, &rq->mode, 405, "method_not_allowed", message,
                       NULL, false, headers);
}


/* The value of query parameter `name` (percent-encoding not needed for our
 * values), into out. False when absent or too long. */
bool srv_cmd_query_get(const char* url,
                       const char* name,
                       char* out,
                       size_t cap) {
  size_t name_len = strlen(name);
  const char* q = strchr(url, '?');
  while (q != NULL) {
    q++;
    if (strncmp(q, name, name_len) == 0 && q[name_len] == '=') {
      const char* v = q + name_len + 1;
      size_t n = strcspn(v, "&#");
      if (n >= cap) {
        return false;
      }
      memcpy(out, v, n);
      out[n] = '\0';
      return true;
    }
    q = strchr(q, '&');
  }
  return false;
}


bool srv_cmd_query_purge(const char* url) {
  char value[8];
  return srv_cmd_query_get(url, "purge", value, sizeof(value)) &&
         (strcmp(value, "1") == 0 || strcmp(value, "true") == 0);
}


bool srv_cmd_query_limit(srv_request_t* rq, long* limit) {
  char value[16];
  *limit = 100;
  if (!srv_cmd_query_get(net_http_url(rq->http), "limit", value,
                         sizeof(value))) {
    return true;
  }
  char* end = NULL;
  *limit = strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || *limit < 1 || *limit > 1000) {
    srv_http_reply_error(rq->conn, &rq->mode, 400, "invalid_field",
                         "limit must be an integer from 1 to 1000", NULL, false,
                         NULL);
    return false;
  }
  return true;
}
