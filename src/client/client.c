/* client.c: the cm_client_t lifecycle: options and URL, the loop on the
 * caller's thread or an own thread, commands posted from other threads,
 * callbacks handed to the application (directly or through dispatch),
 * error names. REST is in rest.c, subscriptions in sub*.c, uploads in
 * upload*.c. */
#include "client/client_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/tls.h"
#include "net/ws_client.h"

typedef struct {
  core_list_t node;
  void (*fn)(void*);
  void* arg;
} client_cmd_t;


const char* cm_version(void) {
  return CM_VERSION;
}


void cm_free(void* ptr) {
  free(ptr);
}


const char* cm_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
  case CM_EHTTP:
    return "the server answered with an HTTP error";
  case CM_EUNAUTHORIZED:
    return "unauthorized (401): the token is missing or wrong";
  case CM_ENOTFOUND:
    return "not found (404)";
  case CM_ECONFLICT:
    return "conflict (409): the job is not in a state that allows this";
  case CM_EPROTO:
    return "the server's answer does not follow the CryoMamba protocol";
  case CM_EBADURL:
    return "the server URL is not http[s]://host[:port][/prefix]";
  case CM_ETLS:
    return "the TLS handshake failed (is it a TLS server? an http:// server "
           "or no common TLS version >= 1.2)";
  case CM_ETLS_TIMEOUT:
    return "the TLS handshake timed out (the peer stalled)";
  case CM_ETLS_CLOSED:
    return "the peer closed the connection during the TLS handshake";
  case CM_ECAFILE:
    return "the CA file could not be loaded (missing, unreadable or not PEM "
           "certificates)";
  case CM_EBADID:
    return "the job id is not a UUID";
  case CM_ECLOSED:
    return "the server ended the subscription";
  case CM_EGAVEUP:
    return "gave up reconnecting";
  case CM_EBADARG:
    return "invalid argument";
  case CM_ECHANGED:
    return "the file changed while it was being uploaded";
  case CM_ENOTREG:
    return "not a regular file (a pipe, a device or a socket)";
  case NET_WSC_E_HTTP:
    return "the WebSocket handshake was refused";
  case -ENOMEM:
    return "out of memory";
  case -EINVAL:
    return "invalid argument";
  }
  if (net_tls_is_verify_error(err)) {
    return net_tls_verify_string(err);
  }
  if (err < 0 && err > -4096) {
    return uv_strerror(err);
  }
  return "unknown error";
}


bool cm_is_tls_verify_error(int err) {
  return net_tls_is_verify_error(err);
}


bool cm_is_tls_error(int err) {
  return err == CM_ETLS || err == CM_ETLS_TIMEOUT || err == CM_ETLS_CLOSED ||
         err == CM_ECAFILE || net_tls_is_verify_error(err);
}


void cm_client_options_init(cm_client_options_t* opts) {
  memset(opts, 0, sizeof(*opts));
  opts->server_url = "http://127.0.0.1:8000";
  opts->connect_timeout_ms = 10000;
  opts->request_timeout_ms = 30000;
  opts->keepalive_ms = 20000;
  opts->reconnect_initial_ms = 500;
  opts->reconnect_max_ms = 30000;
  opts->max_message_bytes = (uint64_t) 1 << 30;
  opts->max_body_bytes = (size_t) 64 << 20;
}


int client_parse_url(const char* url,
                     char* host,
                     size_t host_len,
                     uint16_t* port,
                     char* prefix,
                     size_t prefix_len,
                     bool* is_tls) {
  const char* p = url;
  *is_tls = false;
  if (strncasecmp(p, "https://", 8) == 0) {
    p += 8;
    *is_tls = true;
  } else if (strncasecmp(p, "wss://", 6) == 0) {
    p += 6;
    *is_tls = true;
  } else if (strncasecmp(p, "http://", 7) == 0) {
    p += 7;
  } else if (strncasecmp(p, "ws://", 5) == 0) {
    p += 5;
  } else if (strstr(p, "://") != NULL) {
    return CM_EBADURL;
  }
  const char* host_end;
  const char* host_start = p;
  if (*p == '[') {
    host_start = p + 1;
    host_end = strchr(p, ']');
    if (host_end == NULL) {
      return CM_EBADURL;
    }
    p = host_end + 1;
  } else {
    host_end = p + strcspn(p, ":/?#");
    p = host_end;
  }
  size_t n = (size_t) (host_end - host_start);
  if (n == 0 || n >= host_len) {
    return CM_EBADURL;
  }
  memcpy(host, host_start, n);
  host[n] = '\0';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char) host[i];
    if (c <= ' ' || c == '@' || c >= 0x7f) {
      return CM_EBADURL;
    }
  }
  *port = *is_tls ? 443 : 80;
  if (*p == ':') {
    char* end;
    unsigned long v = strtoul(p + 1, &end, 10);
    if (end == p + 1 || v == 0 || v > 65535) {
      return CM_EBADURL;
    }
    *port = (uint16_t) v;
    p = end;
  }
  if (*p != '\0' && *p != '/') {
    return CM_EBADURL;
  }
  size_t plen = strlen(p);
  while (plen > 0 && p[plen - 1] == '/') {
    plen--;
  }
  if (plen >= prefix_len || strcspn(p, " \r\n?#") < plen) {
    return CM_EBADURL;
  }
  memcpy(prefix, p, plen);
  prefix[plen] = '\0';
  return 0;
}


static void on_async(uv_async_t* async) {
  cm_client_t* client = async->data;
  core_list_t todo;
  core_list_init(&todo);
  pthread_mutex_lock(&client->mu);
  while (!core_list_is_empty(&client->cmds)) {
    core_list_t* node = core_list_front(&client->cmds);
    core_list_remove(node);
    core_list_push_back(&todo, node);
  }
  pthread_mutex_unlock(&client->mu);
  while (!core_list_is_empty(&todo)) {
    core_list_t* node = core_list_front(&todo);
    core_list_remove(node);
    client_cmd_t* cmd = CORE_CONTAINER_OF(node, client_cmd_t, node);
    cmd->fn(cmd->arg);
    free(cmd);
  }
}


int cm_client_new(const cm_client_options_t* opts, cm_client_t** out) {
  cm_client_options_t defaults;
  if (opts == NULL) {
    cm_client_options_init(&defaults);
    opts = &defaults;
  }
  cm_client_t* client = calloc(1, sizeof(*client));
  if (client == NULL) {
    return -ENOMEM;
  }
  client->opts = *opts;
  int err = client_servers_init(&client->servers, opts->server_url,
                                opts->server_urls, opts->server_url_count);
  if (err != 0) {
    free(client);
    return err;
  }
  client->opts.server_url = NULL; /* not kept; servers are */
  client->opts.server_urls = NULL;
  client->opts.server_url_count = 0;
  if (client_servers_any_tls(&client->servers)) {
    /* Made once: the CA file is read here, and a bad one fails now. */
    net_tls_config_t tc = {
        .ca_file = opts->tls_ca_file,
        .insecure_skip_verify = opts->tls_insecure_skip_verify,
    };
    err = net_tls_ctx_new(&tc, &client->tls_ctx);
    if (err != 0) {
      client_servers_free(&client->servers);
      free(client);
      return err == UV_ENOMEM ? -ENOMEM : err;
    }
  }
  client->opts.tls_ca_file = NULL; /* read; not kept */
  if (opts->token != NULL && opts->token[0] != '\0') {
    const char* t = opts->token;
    if (strlen(t) > 1024 || strcspn(t, "\r\n") != strlen(t)) {
      net_tls_ctx_free(client->tls_ctx);
      client_servers_free(&client->servers);
      free(client);
      return CM_EBADARG;
    }
    snprintf(client->auth_header, sizeof(client->auth_header),
             "Authorization: Bearer %s\r\n", t);
  }
  client->opts.token = NULL;
  if (client->opts.reconnect_initial_ms == 0) {
    client->opts.reconnect_initial_ms = 1;
  }
  if (client->opts.reconnect_max_ms < client->opts.reconnect_initial_ms) {
    client->opts.reconnect_max_ms = client->opts.reconnect_initial_ms;
  }
  client->life = calloc(1, sizeof(*client->life));
  if (client->life == NULL || uv_loop_init(&client->loop) != 0) {
    free(client->life);
    net_tls_ctx_free(client->tls_ctx);
    client_servers_free(&client->servers);
    free(client);
    return -ENOMEM;
  }
  atomic_init(&client->life->refs, 1);
  atomic_init(&client->life->is_alive, true);
  pthread_mutex_init(&client->mu, NULL);
  core_list_init(&client->cmds);
  core_list_init(&client->subs);
  core_list_init(&client->reqs);
  core_list_init(&client->uploads);
  uv_async_init(&client->loop, &client->async, on_async);
  client->async.data = client;
  /* Posted commands must not keep cm_client_run() alive. */
  uv_unref((uv_handle_t*) &client->async);
  *out = client;
  return 0;
}


int client_post(cm_client_t* client, void (*fn)(void*), void* arg) {
  if (!client->has_thread) {
    fn(arg);
    return 0;
  }
  client_cmd_t* cmd = malloc(sizeof(*cmd));
  if (cmd == NULL) {
    return -ENOMEM;
  }
  cmd->fn = fn;
  cmd->arg = arg;
  pthread_mutex_lock(&client->mu);
  core_list_push_back(&client->cmds, &cmd->node);
  pthread_mutex_unlock(&client->mu);
  uv_async_send(&client->async);
  return 0;
}


client_life_t* client_life_ref(cm_client_t* client) {
  atomic_fetch_add(&client->life->refs, 1);
  return client->life;
}


void client_life_unref(client_life_t* life) {
  if (atomic_fetch_sub(&life->refs, 1) == 1) {
    free(life);
  }
}


bool client_life_is_alive(const client_life_t* life) {
  return atomic_load(&life->is_alive);
}


void client_deliver(cm_client_t* client, void (*run)(void*), void* arg) {
  if (client->opts.dispatch != NULL) {
    client->opts.dispatch(run, arg, client->opts.dispatch_data);
  } else {
    run(arg);
  }
}


void client_log(const cm_client_t* client,
                cm_log_level_t level,
                const char* fmt,
                ...) {
  if (client->opts.log == NULL) {
    return;
  }
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  client->opts.log(level, msg, client->opts.log_data);
}


int cm_client_run(cm_client_t* client) {
  if (client->has_thread) {
    return UV_EBUSY;
  }
  return uv_run(&client->loop, UV_RUN_DEFAULT);
}


static void do_stop(void* arg) {
  cm_client_t* client = arg;
  if (client->is_stopped) {
    return;
  }
  client->is_stopped = true;
  client_subs_stop_all(client);
  client_uploads_stop_all(client);
  client_reqs_abort_all(client);
  if (client->has_thread) {
    /* The thread's loop ends once everything closed. */
    uv_close((uv_handle_t*) &client->async, NULL);
  }
}


static void* thread_main(void* arg) {
  cm_client_t* client = arg;
  /* A write to a peer that closed (a server refusing an upload's body
   * early) raises SIGPIPE for the writing thread; blocked here, the write
   * fails with EPIPE instead of killing an application that did not
   * ignore the signal. It stays pending on this thread only. */
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  uv_run(&client->loop, UV_RUN_DEFAULT);
  return NULL;
}


int cm_client_start_thread(cm_client_t* client) {
  if (client->has_thread) {
    return UV_EBUSY;
  }
  client->has_thread = true;
  uv_ref((uv_handle_t*) &client->async);
  if (pthread_create(&client->thread, NULL, thread_main, client) != 0) {
    client->has_thread = false;
    uv_unref((uv_handle_t*) &client->async);
    return UV_EAGAIN;
  }
  return 0;
}


void cm_client_stop(cm_client_t* client) {
  if (atomic_exchange(&client->is_stopping, true)) {
    return;
  }
  if (client_post(client, do_stop, client) != 0) {
    /* No memory for the command: wake the loop anyway; free() joins. */
    uv_async_send(&client->async);
  }
}


void cm_client_free(cm_client_t* client) {
  if (client == NULL) {
    return;
  }
  /* Callbacks still queued in a dispatcher are skipped from now on. */
  atomic_store(&client->life->is_alive, false);
  cm_client_stop(client);
  if (client->has_thread) {
    pthread_join(client->thread, NULL);
  } else {
    if (!uv_is_closing((uv_handle_t*) &client->async)) {
      uv_close((uv_handle_t*) &client->async, NULL);
    }
    uv_run(&client->loop, UV_RUN_DEFAULT);
  }
  /* Commands posted after the loop stopped taking them (a cm_sub_close or
   * cm_sub_start racing the stop) still hold what they were given: run them
   * here, on a stopped client, so each lets go of it (their callbacks are
   * skipped), and let the loop close what they opened. */
  while (!core_list_is_empty(&client->cmds)) {
    core_list_t* node = core_list_front(&client->cmds);
    core_list_remove(node);
    client_cmd_t* cmd = CORE_CONTAINER_OF(node, client_cmd_t, node);
    cmd->fn(cmd->arg);
    free(cmd);
  }
  uv_run(&client->loop, UV_RUN_DEFAULT);
  uv_loop_close(&client->loop);
  pthread_mutex_destroy(&client->mu);
  client_life_unref(client->life);
  net_tls_ctx_free(client->tls_ctx);
  client_servers_free(&client->servers);
  free(client);
}


const char* cm_job_state_name(cm_job_state_t state) {
  switch (state) {
  case CM_JOB_UNKNOWN:
    return "unknown";
  case CM_JOB_QUEUED:
    return "queued";
  case CM_JOB_RUNNING:
    return "running";
  case CM_JOB_COMPLETED:
    return "completed";
  case CM_JOB_FAILED:
    return "failed";
  case CM_JOB_CANCELLED:
    return "cancelled";
  }
  return "unknown";
}


bool cm_job_state_is_terminal(cm_job_state_t state) {
  return state == CM_JOB_COMPLETED || state == CM_JOB_FAILED ||
         state == CM_JOB_CANCELLED;
}


cm_job_state_t client_job_state_parse(const char* name) {
  static const cm_job_state_t all[] = {CM_JOB_QUEUED, CM_JOB_RUNNING,
                                       CM_JOB_COMPLETED, CM_JOB_FAILED,
                                       CM_JOB_CANCELLED};
  if (name == NULL) {
    return CM_JOB_UNKNOWN;
  }
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    if (strcmp(name, cm_job_state_name(all[i])) == 0) {
      return all[i];
    }
  }
  return CM_JOB_UNKNOWN;
}


const char* cm_conn_state_name(cm_conn_state_t state) {
  switch (state) {
  case CM_CONN_CONNECTING:
    return "connecting";
  case CM_CONN_OPEN:
    return "open";
  case CM_CONN_RECONNECTING:
    return "reconnecting";
  case CM_CONN_CLOSED:
    return "closed";
  }
  return "unknown";
}
