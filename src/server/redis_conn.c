/* redis_conn.c: an asynchronous Redis connection that reconnects by itself.
 * See redis_conn.h. hiredis owns the socket (its libuv adapter polls it on
 * our loop); we own the reconnect timer, the in-flight count and the
 * per-command trampolines that turn hiredis's callbacks into ours. */
#include "server/redis_conn.h"
#include "server/redis_uv.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS SRV_REDIS_BACKOFF_MAX_MS

struct srv_redis_s {
  uv_loop_t* loop;
  srv_redis_url_t url;
  srv_redis_opts_t opts;
  const srv_logger_t* log;
  redisAsyncContext* ac; /* NULL while disconnected */
  uv_timer_t timer;      /* reconnect backoff; the final free */
  uv_timer_t watchdog;   /* timeout_ms: a stalled Redis */
  uint64_t backoff_ms;
  uint64_t connects;
  uint64_t timeouts;
  uint64_t progress_ms; /* last reply, or the send that made in_flight 1 */
  unsigned in_flight;
  bool is_connected;
  bool is_closing;
  bool is_stalled;      /* dropped by the watchdog: pending get -ETIMEDOUT */
  bool is_authing;      /* connected, AUTH (or PING) sent: not usable yet */
  bool is_auth_refused; /* Redis refused the AUTH: this connection ends */
  bool was_down_logged; /* one warning per outage, not per attempt */
  bool was_auth_logged; /* one error per wrong password, not per attempt */
};

typedef struct {
  srv_redis_t* r;
  srv_redis_reply_cb cb;
  void* arg;
} pending_t;


static void start_connect(srv_redis_t* r);


static void on_timer(uv_timer_t* t) {
  srv_redis_t* r = t->data;
  if (!r->is_closing) {
    start_connect(r);
  }
}


static void schedule_reconnect(srv_redis_t* r, const char* why) {
  r->ac = NULL;
  r->is_connected = false;
  if (r->is_closing) {
    return;
  }
  if (!r->was_down_logged) {
    r->was_down_logged = true;
    srv_log(r->log, SRV_LOG_WARN, "redis.down", "s:conn", r->opts.name,
            "s:host", r->url.host, "i:port", (int64_t) r->url.port, "s:error",
            why, NULL);
  }
  uv_timer_start(&r->timer, on_timer, r->backoff_ms, 0);
  r->backoff_ms *= 2;
  if (r->backoff_ms > BACKOFF_MAX_MS) {
    r->backoff_ms = BACKOFF_MAX_MS;
  }
}


static void on_select(redisAsyncContext* ac, void* reply, void* privdata) {
  (void) privdata;
  redisReply* rep = reply;
  srv_redis_t* r = ac->data;
  if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
    srv_log(r->log, SRV_LOG_ERROR, "redis.select_failed", "s:conn",
            r->opts.name, "s:error", rep->str, NULL);
  }
}


/* Connected and, with a password, authenticated: usable. */
static void on_ready(srv_redis_t* r) {
  r->is_connected = true;
  r->connects++; /* usable ones: owners compare it to see a reconnect */
  r->progress_ms = uv_now(r->loop);
  r->backoff_ms = BACKOFF_FIRST_MS;
  r->was_down_logged = false;
  r->was_auth_logged = false;
  srv_log(r->log, SRV_LOG_INFO, "redis.connected", "s:conn", r->opts.name,
          "s:host", r->url.host, "i:port", (int64_t) r->url.port, "i:auth",
          (int64_t) (r->url.password[0] != '\0'), NULL);
  if (r->url.db != 0) {
    /* Sent before anything the owner sends: commands keep their order. */
    redisAsyncCommand(r->ac, on_select, NULL, "SELECT %d", r->url.db);
  }
  if (r->opts.on_connect != NULL) {
    r->opts.on_connect(r->opts.arg);
  }
}


static void log_auth_error(srv_redis_t* r, const char* event, const char* e) {
  if (r->was_auth_logged) {
    return;
  }
  r->was_auth_logged = true;
  srv_log(r->log, SRV_LOG_ERROR, event, "s:conn", r->opts.name, "s:host",
          r->url.host, "i:port", (int64_t) r->url.port, "s:user",
          r->url.user[0] != '\0' ? r->url.user : "default", "s:error", e, NULL);
}


static void on_handshake(redisAsyncContext* ac, void* reply, void* privdata) {
  srv_redis_t* r = privdata;
  redisReply* rep = reply;
  r->is_authing = false;
  if (rep == NULL || r->is_closing) {
    return; /* lost or freed meanwhile: on_disconnected, if anything */
  }
  if (rep->type == REDIS_REPLY_ERROR) {
    /* WRONGPASS, a password for a Redis without one, or none for one that
     * wants it (NOAUTH to the PING): the operator's to fix (config or
     * ACL); tried again with the backoff meanwhile. */
    log_auth_error(r,
                   r->url.password[0] != '\0' ? "redis.auth_failed"
                                              : "redis.auth_required",
                   rep->str);
    r->is_auth_refused = true;
    redisAsyncDisconnect(ac); /* after this callback; on_disconnected */
    return;
  }
  on_ready(r);
}


static void on_connected(const redisAsyncContext* cac, int status) {
  srv_redis_t* r = cac->data;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this callback. */
    schedule_reconnect(r, cac->errstr);
    return;
  }
  r->is_stalled = false;
  r->is_auth_refused = false;
  r->progress_ms = uv_now(r->loop); /* the watchdog times the AUTH too */
  /* First on the connection, and nothing else goes out before its answer:
   * AUTH, or a PING that tells whether Redis wants a password (NOAUTH)
   * before the connection counts as up. */
  const char* argv[3] = {"PING"};
  int argc = 1;
  if (r->url.password[0] != '\0') {
    argv[0] = "AUTH";
    if (r->url.user[0] != '\0') {
      argv[argc++] = r->url.user;
    }
    argv[argc++] = r->url.password;
  }
  size_t lens[3];
  for (int i = 0; i < argc; i++) {
    lens[i] = strlen(argv[i]);
  }
  if (redisAsyncCommandArgv(r->ac, on_handshake, r, argc, argv, lens) !=
      REDIS_OK) {
    redisAsyncDisconnect(r->ac); /* out of memory: try again later */
    return;
  }
  r->is_authing = true;
}


static void on_disconnected(const redisAsyncContext* cac, int status) {
  srv_redis_t* r = cac->data;
  (void) status;
  /* Pending callbacks already ran with NULL; hiredis frees the context. */
  schedule_reconnect(r, r->is_auth_refused       ? "authentication refused"
                        : cac->errstr[0] != '\0' ? cac->errstr
                                                 : "connection closed");
}


static void start_connect(srv_redis_t* r) {
  redisAsyncContext* ac = redisAsyncConnect(r->url.host, r->url.port);
  if (ac == NULL) {
    schedule_reconnect(r, "out of memory");
    return;
  }
  if (ac->err != 0) {
    char why[128];
    snprintf(why, sizeof(why), "%s", ac->errstr);
    redisAsyncFree(ac);
    schedule_reconnect(r, why);
    return;
  }
  ac->data = r;
  if (srv_redis_uv_attach(ac, r->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    schedule_reconnect(r, "cannot attach to the loop");
    return;
  }
  /* A dead host or a cut link shows up on an idle subscriber connection
   * too (a stalled Redis there just delivers nothing meanwhile). */
  redisEnableKeepAlive(&ac->c);
  r->ac = ac;
  redisAsyncSetConnectCallback(ac, on_connected);
  redisAsyncSetDisconnectCallback(ac, on_disconnected);
}


/* Replies come back in order, so the oldest unanswered command has waited
 * since the last reply (or since it was sent, if none was pending). */
static void on_watchdog(uv_timer_t* t) {
  srv_redis_t* r = t->data;
  bool is_waiting = r->is_connected ? r->in_flight > 0 : r->is_authing;
  if (r->ac == NULL || r->is_closing || !is_waiting) {
    return;
  }
  uint64_t waited = uv_now(r->loop) - r->progress_ms;
  if (waited < r->opts.timeout_ms) {
    return;
  }
  r->timeouts++;
  r->is_stalled = true;
  r->is_authing = false;
  r->is_connected = false; /* callbacks run meanwhile send nothing */
  srv_log(r->log, SRV_LOG_WARN, "redis.timeout", "s:conn", r->opts.name,
          "i:waited_ms", (int64_t) waited, "i:in_flight",
          (int64_t) r->in_flight, NULL);
  redisAsyncContext* ac = r->ac;
  /* Not inside a hiredis callback, so freeing is safe: pending callbacks
   * get NULL (-ETIMEDOUT), then on_disconnected schedules the reconnect. */
  redisAsyncFree(ac);
  if (r->ac == ac) { /* hiredis calls on_disconnected only if connected */
    schedule_reconnect(r, "timed out");
  }
}


srv_redis_t* srv_redis_new(uv_loop_t* loop,
                           const srv_redis_url_t* url,
                           const srv_redis_opts_t* opts,
                           const srv_logger_t* log) {
  srv_redis_t* r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return NULL;
  }
  r->loop = loop;
  r->url = *url;
  r->opts = *opts;
  if (r->opts.max_in_flight == 0) {
    r->opts.max_in_flight = 1;
  }
  r->log = log;
  r->backoff_ms = BACKOFF_FIRST_MS;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_timer_init(loop, &r->watchdog);
  r->watchdog.data = r;
  if (r->opts.timeout_ms > 0 && !r->opts.is_subscriber) {
    uint64_t tick = r->opts.timeout_ms / 4 > 0 ? r->opts.timeout_ms / 4 : 1;
    uv_timer_start(&r->watchdog, on_watchdog, tick, tick);
  }
  start_connect(r);
  return r;
}


static void on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  (void) ac;
  pending_t* p = privdata;
  srv_redis_t* r = p->r;
  assert(r->in_flight > 0);
  r->in_flight--;
  r->progress_ms = uv_now(r->loop);
  int status = 0;
  if (reply == NULL) {
    status = r->is_closing   ? -ECANCELED
             : r->is_stalled ? -ETIMEDOUT
                             : -ENOTCONN;
  }
  p->cb(p->arg, reply, status);
  free(p);
}


int srv_redis_command(srv_redis_t* r,
                      srv_redis_reply_cb cb,
                      void* arg,
                      int argc,
                      const char** argv,
                      const size_t* lens) {
  if (r->ac == NULL || !r->is_connected || r->is_closing ||
      r->opts.is_subscriber) {
    return -ENOTCONN;
  }
  if (r->in_flight >= r->opts.max_in_flight) {
    return -EBUSY;
  }
  pending_t* p = malloc(sizeof(*p));
  if (p == NULL) {
    return -ENOMEM;
  }
  *p = (pending_t){r, cb, arg};
  if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
    free(p);
    return -ENOMEM;
  }
  if (r->in_flight++ == 0) {
    r->progress_ms = uv_now(r->loop); /* the oldest unanswered starts now */
  }
  return 0;
}


int srv_redis_command_str(srv_redis_t* r,
                          srv_redis_reply_cb cb,
                          void* arg,
                          int argc,
                          const char** argv) {
  size_t lens[32];
  if (argc <= 0 || argc > 32) {
    return -EINVAL;
  }
  for (int i = 0; i < argc; i++) {
    lens[i] = strlen(argv[i]);
  }
  return srv_redis_command(r, cb, arg, argc, argv, lens);
}


/* Every reply of a subscriber connection: subscribe/unsubscribe
 * confirmations (ignored) and messages. */
static void on_sub_reply(redisAsyncContext* ac, void* reply, void* privdata) {
  (void) ac;
  srv_redis_t* r = privdata;
  redisReply* rep = reply;
  if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
      rep->element[0]->type != REDIS_REPLY_STRING ||
      rep->element[1]->type != REDIS_REPLY_STRING) {
    return;
  }
  bool is_sub = strcmp(rep->element[0]->str, "subscribe") == 0;
  if (is_sub || strcmp(rep->element[0]->str, "unsubscribe") == 0) {
    srv_redis_message_cb cb =
        is_sub ? r->opts.on_subscribed : r->opts.on_unsubscribed;
    if (cb != NULL && !r->is_closing) {
      cb(r->opts.arg, "", 0, rep->element[1]->str, rep->element[1]->len);
    }
    return;
  }
  if (strcmp(rep->element[0]->str, "message") != 0 ||
      rep->element[2]->type != REDIS_REPLY_STRING) {
    return;
  }
  if (r->opts.on_message != NULL && !r->is_closing) {
    r->opts.on_message(r->opts.arg, rep->element[1]->str, rep->element[1]->len,
                       rep->element[2]->str, rep->element[2]->len);
  }
}


static int sub_cmd(srv_redis_t* r, const char* verb, const char* channel) {
  if (r->ac == NULL || !r->is_connected || r->is_closing ||
      !r->opts.is_subscriber) {
    return -ENOTCONN;
  }
  const char* argv[2] = {verb, channel};
  size_t lens[2] = {strlen(verb), strlen(channel)};
  return redisAsyncCommandArgv(r->ac, on_sub_reply, r, 2, argv, lens) ==
                 REDIS_OK
             ? 0
             : -ENOMEM;
}


int srv_redis_subscribe(srv_redis_t* r, const char* channel) {
  return sub_cmd(r, "SUBSCRIBE", channel);
}


int srv_redis_unsubscribe(srv_redis_t* r, const char* channel) {
  return sub_cmd(r, "UNSUBSCRIBE", channel);
}


bool srv_redis_is_connected(const srv_redis_t* r) {
  return r != NULL && r->is_connected;
}


uint64_t srv_redis_connects_total(const srv_redis_t* r) {
  return r != NULL ? r->connects : 0;
}


uint64_t srv_redis_timeouts_total(const srv_redis_t* r) {
  return r != NULL ? r->timeouts : 0;
}


unsigned srv_redis_in_flight(const srv_redis_t* r) {
  return r != NULL ? r->in_flight : 0;
}


unsigned srv_redis_room(const srv_redis_t* r) {
  if (r == NULL || !r->is_connected || r->is_closing) {
    return 0;
  }
  return r->opts.max_in_flight - r->in_flight;
}


static void on_timer_closed(uv_handle_t* h) {
  srv_redis_t* r = h->data;
  if (h == (uv_handle_t*) &r->watchdog) {
    uv_close((uv_handle_t*) &r->timer, on_timer_closed);
  } else {
    free(r);
  }
}


/* From a zero timer, never from inside a hiredis callback: freeing the
 * context there would pull it from under hiredis. */
static void on_final(uv_timer_t* t) {
  srv_redis_t* r = t->data;
  if (r->ac != NULL) {
    redisAsyncContext* ac = r->ac;
    r->ac = NULL;
    redisAsyncFree(ac); /* pending callbacks get NULL: -ECANCELED */
  }
  uv_close((uv_handle_t*) &r->watchdog, on_timer_closed); /* then timer */
}


void srv_redis_close(srv_redis_t* r) {
  if (r == NULL || r->is_closing) {
    return;
  }
  r->is_closing = true;
  uv_timer_stop(&r->watchdog);
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, on_final, 0, 0);
}
