/* redis_conn.h: one asynchronous Redis connection on the server's loop
 * (hiredis 0.14 and its libuv adapter). It reconnects by itself with a
 * backoff (100 ms doubling to 5 s) after a refused connect or a lost
 * connection; at most `max_in_flight` commands wait for their replies at a
 * time (one more is refused at once, -EBUSY); every reply goes to its
 * callback on the loop, exactly once. A connection is either a command
 * connection or a subscriber one (RESP2: a connection in SUBSCRIBE mode
 * takes no other command), chosen at creation. Each connect begins with
 * AUTH (the URL or --redis-password-file gave a password) or a PING; the
 * connection is up (srv_redis_is_connected, on_connect) only once Redis
 * answers it OK, and a refusal is logged once per outage
 * (redis.auth_failed, redis.auth_required) and tried again with the
 * backoff. Loop thread only. */
#ifndef SRV_REDIS_CONN_H
#define SRV_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "server/log.h"
#include "server/redis_url.h"

/* The longest wait between reconnect attempts (doubling from 100 ms). */
#define SRV_REDIS_BACKOFF_MAX_MS 5000

typedef struct srv_redis_s srv_redis_t;
struct redisReply;

/* A reply, or NULL with status < 0: -ENOTCONN (lost before the reply),
 * -ETIMEDOUT (Redis stalled past timeout_ms), -ECANCELED (closed). An error
 * reply from Redis arrives as a reply of type REDIS_REPLY_ERROR with status 0.
 */
typedef void (*srv_redis_reply_cb)(void* arg,
                                   struct redisReply* reply,
                                   int status);

/* A subscriber connection's messages: `channel` and `payload` as received
 * (valid during the call only). */
typedef void (*srv_redis_message_cb)(void* arg,
                                     const char* channel,
                                     size_t channel_len,
                                     const char* payload,
                                     size_t payload_len);

typedef struct {
  const char* name;       /* in logs: "cmd", "sub", ... */
  unsigned max_in_flight; /* commands awaiting replies; >= 1 */
  bool is_subscriber;     /* SUBSCRIBE mode (on_message gets messages) */
  /* A command unanswered this long means Redis stalled: the connection is
   * dropped (pending callbacks get -ETIMEDOUT) and made again. 0: never;
   * subscriber connections have none (TCP keepalive finds a dead host). */
  uint64_t timeout_ms;
  void (*on_connect)(void* arg); /* every (re)connect: re-subscribe, ... */
  srv_redis_message_cb on_message;
  /* A subscriber connection: Redis confirmed a SUBSCRIBE (the channel is
   * passed as `payload`, with a zero-length `channel`). May be NULL. */
  srv_redis_message_cb on_subscribed;
  srv_redis_message_cb on_unsubscribed; /* the same for an UNSUBSCRIBE */
  void* arg;
} srv_redis_opts_t;

/* A connection that starts connecting at once. NULL when out of memory. */
srv_redis_t* srv_redis_new(uv_loop_t* loop,
                           const srv_redis_url_t* url,
                           const srv_redis_opts_t* opts,
                           const srv_logger_t* log);

/* Sends one command (argv with lengths; copied). 0: cb will run once;
 * -ENOTCONN: not connected now; -EBUSY: max_in_flight replies pending;
 * -ENOMEM. On a subscriber connection only SUBSCRIBE/UNSUBSCRIBE go
 * through srv_redis_subscribe(). */
int srv_redis_command(srv_redis_t* r,
                      srv_redis_reply_cb cb,
                      void* arg,
                      int argc,
                      const char** argv,
                      const size_t* lens);

/* srv_redis_command() with every argument a NUL-terminated string. */
int srv_redis_command_str(srv_redis_t* r,
                          srv_redis_reply_cb cb,
                          void* arg,
                          int argc,
                          const char** argv);

/* Subscriber connections: (un)subscribe a channel. 0 or -ENOTCONN/-ENOMEM;
 * after a reconnect the owner subscribes again from on_connect. */
int srv_redis_subscribe(srv_redis_t* r, const char* channel);
int srv_redis_unsubscribe(srv_redis_t* r, const char* channel);

/* True between a connect and the next loss. */
bool srv_redis_is_connected(const srv_redis_t* r);

/* Counters for /metrics. */
uint64_t srv_redis_connects_total(const srv_redis_t* r);
uint64_t srv_redis_timeouts_total(const srv_redis_t* r);
unsigned srv_redis_in_flight(const srv_redis_t* r);

/* Commands that may still be sent before -EBUSY (0 when disconnected), for
 * a MULTI ... EXEC that must go out whole. */
unsigned srv_redis_room(const srv_redis_t* r);

/* Disconnects (pending callbacks get -ECANCELED) and frees once its handles
 * are closed. NULL is a no-op. */
void srv_redis_close(srv_redis_t* r);

#endif
