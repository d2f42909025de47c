/* redis_uv.h: hiredis's async context on a libuv loop. hiredis 0.14's own
 * adapter (adapters/libuv.h) returns from its poll callback when libuv
 * reports an error status, and libuv has then stopped the poll handle (it
 * does so on POLLERR, e.g. Redis killed while a write was pending): the
 * connection's loss is never noticed and it stays "connected" for ever.
 * This one hands an error status to hiredis as readiness, so its read or
 * write sees the socket error and disconnects (the owner reconnects), and
 * re-arms the handle otherwise. Loop thread only. */
#ifndef SRV_REDIS_UV_H
#define SRV_REDIS_UV_H

#include <uv.h>

struct redisAsyncContext;

/* Attaches `ac` (not yet attached) to `loop`: REDIS_OK or REDIS_ERR. */
int srv_redis_uv_attach(struct redisAsyncContext* ac, uv_loop_t* loop);

#endif
