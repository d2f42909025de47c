/* redis_uv.c: hiredis's async context on a libuv loop. See redis_uv.h;
 * otherwise as hiredis 0.14's adapters/libuv.h. */
#include "server/redis_uv.h"

#include <stdlib.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

typedef struct {
  redisAsyncContext* context; /* NULL once hiredis cleaned up */
  uv_poll_t handle;
  int events; /* UV_READABLE | UV_WRITABLE wanted */
} uv_events_t;


static void on_poll(uv_poll_t* handle, int status, int events) {
  uv_events_t* p = handle->data;
  if (status < 0) {
    /* libuv stopped the handle: hiredis finds the socket's error itself
     * (and frees the context, or we watch again). */
    events = p->events;
  }
  if (p->context != NULL && (events & UV_READABLE)) {
    redisAsyncHandleRead(p->context);
  }
  if (p->context != NULL && (events & UV_WRITABLE)) {
    redisAsyncHandleWrite(p->context);
  }
  if (status < 0 && p->context != NULL && p->events != 0) {
    uv_poll_start(&p->handle, p->events, on_poll);
  }
}


static void update(uv_events_t* p) {
  if (p->events != 0) {
    uv_poll_start(&p->handle, p->events, on_poll);
  } else {
    uv_poll_stop(&p->handle);
  }
}


static void add_read(void* data) {
  uv_events_t* p = data;
  p->events |= UV_READABLE;
  update(p);
}


static void del_read(void* data) {
  uv_events_t* p = data;
  p->events &= ~UV_READABLE;
  update(p);
}


static void add_write(void* data) {
  uv_events_t* p = data;
  p->events |= UV_WRITABLE;
  update(p);
}


static void del_write(void* data) {
  uv_events_t* p = data;
  p->events &= ~UV_WRITABLE;
  update(p);
}


static void on_closed(uv_handle_t* h) {
  free(h->data);
}


static void cleanup(void* data) {
  uv_events_t* p = data;
  p->context = NULL; /* hiredis frees it after this */
  uv_close((uv_handle_t*) &p->handle, on_closed);
}


int srv_redis_uv_attach(redisAsyncContext* ac, uv_loop_t* loop) {
  if (ac->ev.data != NULL) {
    return REDIS_ERR;
  }
  uv_events_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    return REDIS_ERR;
  }
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    free(p);
    return REDIS_ERR;
  }
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  ac->ev.data = p;
  p->handle.data = p;
  p->context = ac;
  return REDIS_OK;
}
