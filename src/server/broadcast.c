/* broadcast.c: the hub's topics. See hub.h. Loop thread only. */
#include "server/hub.h"

#include <assert.h>
#include <stddef.h>


void srv_topic_init(srv_topic_t* t, atomic_uint_least64_t* held) {
  core_list_init(&t->sinks);
  core_list_init(&t->waiters);
  t->sink_count = 0;
  t->chunk_sinks = 0;
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    t->sinks_by_enc[e] = 0;
    t->latest[e] = NULL;
  }
  t->terminal = NULL;
  t->held = held;
}


void srv_topic_add(srv_topic_t* t, srv_sink_t* sink) {
  assert(!core_list_is_linked(&sink->link));
  core_list_push_back(&t->sinks, &sink->link);
  t->sink_count++;
  if (sink->wants_chunks) {
    t->chunk_sinks++;
  } else {
    t->sinks_by_enc[sink->encoding]++;
  }
}


void srv_topic_remove(srv_topic_t* t, srv_sink_t* sink) {
  if (!core_list_is_linked(&sink->link)) {
    return;
  }
  assert(t->sink_count > 0);
  core_list_remove(&sink->link);
  t->sink_count--;
  if (sink->wants_chunks) {
    assert(t->chunk_sinks > 0);
    t->chunk_sinks--;
  } else {
    assert(t->sinks_by_enc[sink->encoding] > 0);
    t->sinks_by_enc[sink->encoding]--;
  }
}


void srv_topic_publish(srv_topic_t* t, net_frame_t* frame, net_wq_class_t cls) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &t->sinks) {
    srv_sink_t* sink = CORE_CONTAINER_OF(it, srv_sink_t, link);
    sink->ops->deliver(sink, frame, cls);
  }
}


/* Drops the topic's reference; what slow readers still hold is counted. */
static void release(srv_topic_t* t, net_frame_t* f) {
  if (f != NULL) {
    net_frame_mark_held(f, t->held);
    net_frame_unref(f);
  }
}


net_frame_t* srv_topic_preview_for(const srv_topic_t* t, core_encoding_t enc) {
  if (t->latest[enc] != NULL) {
    return t->latest[enc];
  }
  return enc == CORE_ENC_ZSTD ? t->latest[CORE_ENC_RAW] : NULL;
}


void srv_topic_set_preview(srv_topic_t* t,
                           net_frame_t* frames[CORE_ENC_COUNT],
                           bool quiet) {
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    release(t, t->latest[e]);
    t->latest[e] = frames[e];
    frames[e] = NULL;
  }
  if (quiet) {
    return;
  }
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &t->sinks) {
    srv_sink_t* sink = CORE_CONTAINER_OF(it, srv_sink_t, link);
    net_frame_t* f =
        sink->wants_chunks ? NULL : srv_topic_preview_for(t, sink->encoding);
    if (f != NULL) {
      sink->ops->deliver(sink, f, NET_WQ_LATEST_PREVIEW);
    }
  }
}


void srv_topic_set_terminal(srv_topic_t* t, net_frame_t* frame) {
  /* Kept first, so a sink can tell the terminal message from others. */
  net_frame_unref(t->terminal);
  t->terminal = frame;
  srv_topic_publish(t, frame, NET_WQ_ESSENTIAL);
}


void srv_topic_drop_previews(srv_topic_t* t) {
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    release(t, t->latest[e]);
    t->latest[e] = NULL;
  }
}


uint64_t srv_topic_preview_bytes(const srv_topic_t* t) {
  uint64_t n = 0;
  for (int e = 0; e < CORE_ENC_COUNT; e++) {
    n += t->latest[e] != NULL ? t->latest[e]->cap : 0;
  }
  return n;
}


void srv_topic_wait(srv_topic_t* t, srv_waiter_t* w) {
  assert(!core_list_is_linked(&w->link));
  core_list_push_back(&t->waiters, &w->link);
}


void srv_topic_unwait(srv_waiter_t* w) {
  core_list_remove(&w->link);
}


void srv_topic_wake(srv_topic_t* t) {
  bool has_preview = t->latest[CORE_ENC_BASE64] != NULL;
  while (!core_list_is_empty(&t->waiters)) {
    core_list_t* node = core_list_front(&t->waiters);
    core_list_remove(node);
    srv_waiter_t* w = CORE_CONTAINER_OF(node, srv_waiter_t, link);
    w->ready(w, has_preview);
  }
}


void srv_topic_close(srv_topic_t* t) {
  while (!core_list_is_empty(&t->sinks)) {
    srv_sink_t* sink =
        CORE_CONTAINER_OF(core_list_front(&t->sinks), srv_sink_t, link);
    srv_topic_remove(t, sink);
    sink->ops->gone(sink);
  }
  /* Waiters are told there is no preview. */
  srv_topic_drop_previews(t);
  srv_topic_wake(t);
  net_frame_unref(t->terminal);
  t->terminal = NULL;
}
