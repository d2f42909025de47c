/* wqueue.c: per-connection output queue over shared frames. See wqueue.h.
 * Loop thread only. Each queued item is a small malloc'd node holding one
 * frame reference; the node is freed when the frame moves in flight. */
#include "net/wqueue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  core_list_t link;
  net_frame_t* frame; /* one reference, owned by the item */
  size_t offset;      /* bytes already written by the fast path */
  net_wq_class_t cls;
} net_wq_item_t;

static void start_write(net_wqueue_t* wq);


void net_wq_init(net_wqueue_t* wq,
                 uv_stream_t* stream,
                 net_wq_cb cb,
                 void* data) {
  memset(wq, 0, sizeof(*wq));
  wq->stream = stream;
  core_list_init(&wq->items);
  wq->cb = cb;
  wq->data = data;
}


static void item_free(net_wq_item_t* item) {
  net_frame_unref(item->frame);
  free(item);
}


/* Drops the queued (not started) item of a latest-only class, if any. */
static void drop_stale(net_wqueue_t* wq, net_wq_class_t cls) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &wq->items) {
    net_wq_item_t* item = CORE_CONTAINER_OF(it, net_wq_item_t, link);
    /* A frame partly written already must be finished, never dropped. */
    if (item->cls == cls && item->offset == 0) {
      core_list_remove(it);
      wq->item_count--;
      wq->frames_dropped++;
      item_free(item);
      return; /* the invariant allows at most one */
    }
  }
}


/* Queues `frame` from `offset` on (its first `offset` bytes are written).
 * Returns 0 or UV_ENOMEM. Starts no write. */
static int enqueue(net_wqueue_t* wq,
                   net_frame_t* frame,
                   size_t offset,
                   net_wq_class_t cls) {
  net_wq_item_t* item = malloc(sizeof(*item));
  if (item == NULL) {
    return UV_ENOMEM;
  }
  if (!wq->is_writing && wq->item_count == 0) {
    wq->progress_ms = uv_now(wq->stream->loop); /* a stall starts now */
  }
  if (cls != NET_WQ_ESSENTIAL) {
    drop_stale(wq, cls);
  }
  item->frame = net_frame_ref(frame);
  item->offset = offset;
  item->cls = cls;
  core_list_init(&item->link);
  core_list_push_back(&wq->items, &item->link);
  wq->item_count++;
  return 0;
}


int net_wq_push(net_wqueue_t* wq, net_frame_t* frame, net_wq_class_t cls) {
  if (wq->is_closed) {
    return UV_EPIPE;
  }
  size_t offset = 0;
  if (!wq->is_writing && wq->item_count == 0 && wq->ctrl_len == 0) {
    /* Fast path: an idle peer usually takes the whole frame at once, and
     * then no item, no reference and no write callback is needed. */
    size_t first = frame->len < NET_WQ_MAX_BUF ? frame->len : NET_WQ_MAX_BUF;
    uv_buf_t buf = uv_buf_init((char*) frame->data, (unsigned) first);
    int n = uv_try_write(wq->stream, &buf, 1);
    if (n >= 0) {
      wq->bytes_written += (size_t) n;
      if ((size_t) n == frame->len) {
        return 0;
      }
      offset = (size_t) n;
    } else if (n != UV_EAGAIN) {
      return n; /* the peer is gone; the owner closes */
    }
  }
  int rc = enqueue(wq, frame, offset, cls);
  if (rc == 0) {
    start_write(wq);
  }
  return rc;
}


int net_wq_push_all(net_wqueue_t* wq, net_frame_t* const* frames, size_t n) {
  assert(n <= NET_WQ_PUSH_ALL_MAX);
  if (wq->is_closed) {
    return UV_EPIPE;
  }
  size_t done = 0;   /* frames written whole */
  size_t offset = 0; /* bytes of frames[done] written */
  if (!wq->is_writing && wq->item_count == 0 && wq->ctrl_len == 0) {
    /* One writev for the lot: an idle peer takes small frames at once. */
    uv_buf_t bufs[NET_WQ_PUSH_ALL_MAX];
    unsigned nb = 0;
    for (size_t i = 0; i < n; i++) {
      if (frames[i]->len >= NET_WQ_MAX_BUF) {
        break; /* huge frames go through the queue */
      }
      bufs[nb++] =
          uv_buf_init((char*) frames[i]->data, (unsigned) frames[i]->len);
    }
    int w = nb > 0 ? uv_try_write(wq->stream, bufs, nb) : UV_EAGAIN;
    if (w < 0 && w != UV_EAGAIN) {
      return w; /* the peer is gone; the owner closes */
    }
    size_t left = w > 0 ? (size_t) w : 0;
    wq->bytes_written += left;
    while (done < n && left >= frames[done]->len) {
      left -= frames[done]->len;
      done++;
    }
    offset = left;
  }
  for (size_t i = done; i < n; i++) {
    int rc = enqueue(wq, frames[i], i == done ? offset : 0, NET_WQ_ESSENTIAL);
    if (rc != 0) {
      return rc;
    }
  }
  if (done < n) {
    start_write(wq);
  }
  return 0;
}


int net_wq_push_ctrl(net_wqueue_t* wq,
                     const uint8_t* bytes,
                     size_t len,
                     bool more) {
  if (wq->is_closed) {
    return UV_EPIPE;
  }
  if (wq->ctrl_len + len > NET_WQ_CTRL_MAX) {
    return UV_ENOBUFS;
  }
  if (wq->ctrl == NULL) {
    wq->ctrl = malloc(NET_WQ_CTRL_MAX);
    if (wq->ctrl == NULL) {
      return UV_ENOMEM;
    }
  }
  memcpy(wq->ctrl + wq->ctrl_len, bytes, len);
  wq->ctrl_len += len;
  if (!more) {
    wq->ctrl_sealed = wq->ctrl_len;
    start_write(wq);
  }
  return 0;
}


void net_wq_drop_open_ctrl(net_wqueue_t* wq) {
  wq->ctrl_len = wq->ctrl_sealed;
}


size_t net_wq_ctrl_room(const net_wqueue_t* wq) {
  return NET_WQ_CTRL_MAX - wq->ctrl_len;
}


void net_wq_discard_pending(net_wqueue_t* wq) {
  while (!core_list_is_empty(&wq->items)) {
    core_list_t* node = core_list_front(&wq->items);
    core_list_remove(node);
    item_free(CORE_CONTAINER_OF(node, net_wq_item_t, link));
  }
  wq->item_count = 0;
}


static bool is_idle(const net_wqueue_t* wq) {
  return !wq->is_writing && wq->item_count == 0 && wq->ctrl_len == 0;
}


bool net_wq_drain(net_wqueue_t* wq) {
  if (is_idle(wq)) {
    return true;
  }
  wq->want_drain_cb = true;
  return false;
}


bool net_wq_is_full(const net_wqueue_t* wq) {
  return wq->item_count >= NET_WQ_MAX_ITEMS ||
         wq->ctrl_len > NET_WQ_CTRL_MAX / 2;
}


static void release_in_flight(net_wqueue_t* wq) {
  for (unsigned i = 0; i < wq->in_flight_count; i++) {
    net_frame_unref(wq->in_flight[i]);
    wq->in_flight[i] = NULL;
  }
  wq->in_flight_count = 0;
}


static void on_write(uv_write_t* req, int status) {
  net_wqueue_t* wq = req->data;
  wq->is_writing = false;
  wq->progress_ms = uv_now(wq->stream->loop);
  release_in_flight(wq);
  if (status < 0) {
    if (!wq->is_closed && wq->cb != NULL) {
      wq->cb(wq, status);
    }
    return;
  }
  start_write(wq);
  if (is_idle(wq) && wq->want_drain_cb && !wq->is_closed && wq->cb != NULL) {
    wq->want_drain_cb = false;
    wq->cb(wq, 0);
  }
}


static void start_write(net_wqueue_t* wq) {
  if (wq->is_writing || wq->is_closed) {
    return;
  }
  uv_buf_t bufs[NET_WQ_BATCH + 1];
  unsigned n = 0;
  size_t open_len = wq->ctrl_len - wq->ctrl_sealed;
  assert(wq->ctrl_sealed <= wq->ctrl_len);
  if (wq->ctrl_sealed > 0 && open_len > 0 && wq->ctrl_in_flight == NULL) {
    wq->ctrl_in_flight = malloc(NET_WQ_CTRL_MAX);
    if (wq->ctrl_in_flight == NULL) {
      return; /* retried at the next push or write callback */
    }
  }
  if (wq->ctrl_sealed > 0) {
    /* Swap buffers so new control bytes can queue while these are written;
     * an unsealed frame's head moves to the new buffer, unwritten. */
    uint8_t* tmp = wq->ctrl_in_flight;
    wq->ctrl_in_flight = wq->ctrl;
    wq->ctrl = tmp;
    if (open_len > 0) {
      memcpy(wq->ctrl, wq->ctrl_in_flight + wq->ctrl_sealed, open_len);
    }
    bufs[n++] =
        uv_buf_init((char*) wq->ctrl_in_flight, (unsigned) wq->ctrl_sealed);
    wq->bytes_written += wq->ctrl_sealed;
    wq->ctrl_len = open_len;
    wq->ctrl_sealed = 0;
  }
  while (n < NET_WQ_BATCH && !core_list_is_empty(&wq->items)) {
    core_list_t* node = core_list_front(&wq->items);
    net_wq_item_t* item = CORE_CONTAINER_OF(node, net_wq_item_t, link);
    net_frame_t* f = item->frame;
    size_t offset = item->offset;
    size_t left = f->len - offset;
    if (left > NET_WQ_MAX_BUF) {
      /* uv_buf_t lengths are 32-bit: a huge frame goes out a piece per
       * write and stays at the head (partly written, so never dropped). */
      wq->in_flight[wq->in_flight_count++] = net_frame_ref(f);
      bufs[n++] = uv_buf_init((char*) f->data + offset, NET_WQ_MAX_BUF);
      item->offset += NET_WQ_MAX_BUF;
      wq->bytes_written += NET_WQ_MAX_BUF;
      break;
    }
    core_list_remove(node);
    wq->item_count--;
    item->frame = NULL;
    free(item);
    wq->in_flight[wq->in_flight_count++] = f;
    bufs[n++] = uv_buf_init((char*) f->data + offset, (unsigned) left);
    wq->bytes_written += left;
  }
  if (n == 0) {
    return;
  }
  wq->req.data = wq;
  int err = uv_write(&wq->req, wq->stream, bufs, n, on_write);
  if (err != 0) {
    release_in_flight(wq);
    if (wq->cb != NULL) {
      wq->cb(wq, err);
    }
    return;
  }
  wq->is_writing = true;
}


static uint64_t unique_bytes_of(const net_frame_t* f) {
  while (f->parent != NULL) {
    f = f->parent;
  }
  return atomic_load_explicit(&f->refs, memory_order_relaxed) == 1 ? f->cap : 0;
}


uint64_t net_wq_unique_bytes(const net_wqueue_t* wq) {
  uint64_t n = 0;
  for (unsigned i = 0; i < wq->in_flight_count; i++) {
    n += unique_bytes_of(wq->in_flight[i]);
  }
  const core_list_t* it;
  for (it = wq->items.next; it != &wq->items; it = it->next) {
    n += unique_bytes_of(CORE_CONTAINER_OF(it, net_wq_item_t, link)->frame);
  }
  return n;
}


void net_wq_close(net_wqueue_t* wq) {
  net_wq_discard_pending(wq);
  wq->is_closed = true;
}


void net_wq_free_buffers(net_wqueue_t* wq) {
  assert(!wq->is_writing);
  free(wq->ctrl);
  free(wq->ctrl_in_flight);
  wq->ctrl = NULL;
  wq->ctrl_in_flight = NULL;
}
