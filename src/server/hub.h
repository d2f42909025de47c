/* hub.h: per-job topics (broadcast.c). A topic holds the job's latest
 * preview per encoding and its terminal message (shared, sealed frames; the
 * topic owns one reference of each) and the sinks that registered for the
 * job: WebSocket subscribers and requests waiting for a preview. Publishing
 * hands each sink the one shared frame; the hub never copies a frame and
 * never knows what a sink is (no connection header is included here).
 * Frames the topic lets go of while sinks still hold them are counted as
 * "held for slow readers" (net_frame_mark_held). Loop thread only. */
#ifndef SRV_HUB_H
#define SRV_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/preview_bin.h"
#include "net/frame.h"
#include "net/wqueue.h"

typedef struct srv_sink_s srv_sink_t;

typedef struct {
  /* A frame for this sink; shared: the sink takes its own reference. */
  void (*deliver)(srv_sink_t* sink, net_frame_t* frame, net_wq_class_t cls);
  /* The topic is going away (its job was deleted): unregister and close. */
  void (*gone)(srv_sink_t* sink);
} srv_sink_ops_t;

struct srv_sink_s {
  core_list_t link; /* topic->sinks */
  const srv_sink_ops_t* ops;
  core_encoding_t encoding; /* which preview frame this sink wants */
  bool wants_chunks;        /* no previews: a chunks subscriber (§11) */
};

/* Someone waiting for the topic's preview to come back (a re-render of an
 * evicted final preview). Woken once, whatever the outcome. */
typedef struct srv_waiter_s srv_waiter_t;
struct srv_waiter_s {
  core_list_t link; /* topic->waiters */
  void (*ready)(srv_waiter_t* waiter, bool has_preview);
};

typedef struct {
  core_list_t sinks;
  unsigned sink_count;
  unsigned sinks_by_enc[CORE_ENC_COUNT];
  unsigned chunk_sinks;
  core_list_t waiters;
  net_frame_t* latest[CORE_ENC_COUNT]; /* NULL when none */
  net_frame_t* terminal;               /* NULL until the job ended */
  atomic_uint_least64_t* held;         /* the server's slow-reader counter */
} srv_topic_t;

/* An empty topic counting released frames in `*held`. */
void srv_topic_init(srv_topic_t* t, atomic_uint_least64_t* held);

/* Registers / unregisters a sink (unregistering an unlinked one is a
 * no-op). */
void srv_topic_add(srv_topic_t* t, srv_sink_t* sink);
void srv_topic_remove(srv_topic_t* t, srv_sink_t* sink);

/* Hands `frame` to every sink. */
void srv_topic_publish(srv_topic_t* t, net_frame_t* frame, net_wq_class_t cls);

/* Makes `frames` (one per encoding, NULL where not produced; references
 * stolen) the latest preview and hands each sink its encoding's frame,
 * unless `quiet` (a re-render: nobody new needs it). */
void srv_topic_set_preview(srv_topic_t* t,
                           net_frame_t* frames[CORE_ENC_COUNT],
                           bool quiet);

/* The latest preview for a sink's encoding, or NULL (zstd falls back to raw
 * until a zstd frame exists: same envelope). */
net_frame_t* srv_topic_preview_for(const srv_topic_t* t, core_encoding_t enc);

/* Publishes the terminal message and keeps it for late joiners (reference
 * stolen). */
void srv_topic_set_terminal(srv_topic_t* t, net_frame_t* frame);

/* Lets go of the preview frames (sinks keep what they hold). */
void srv_topic_drop_previews(srv_topic_t* t);

/* Bytes of the preview frames the topic holds. */
uint64_t srv_topic_preview_bytes(const srv_topic_t* t);

/* Waiting for the preview: add, cancel (no-op when not waiting), and wake
 * every waiter once (each is unlinked before its callback). */
void srv_topic_wait(srv_topic_t* t, srv_waiter_t* w);
void srv_topic_unwait(srv_waiter_t* w);
void srv_topic_wake(srv_topic_t* t);

/* Tells every sink and waiter the topic is gone, then drops all frames. */
void srv_topic_close(srv_topic_t* t);

#endif
