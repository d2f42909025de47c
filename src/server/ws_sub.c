/* ws_sub.c: a WebSocket connection's subscription (ws_conn.c is the rest of
 * the connection; ws_conn_int.h their shared state): a sink on the job's
 * topic; connected, then the latest preview or, for the chunks encoding,
 * its rounds; the terminal message after the final preview; a late
 * joiner's wait for a preview rebuilt, a gateway's wait for its mirror's
 * chunk table. Loop thread only. */
#include <stdbool.h>
#include <stdlib.h>

#include "server/chunk_jobs.h"
#include "server/cluster.h"
#include "server/cluster_enc.h"
#include "server/job_json.h"
#include "server/jobs.h"
#include "server/ws_chunks.h"
#include "server/ws_conn_int.h"
#include "server/ws_query.h"


/* ---- the subscription: a sink on the job's topic ---- */

static void sink_deliver(srv_sink_t* sink,
                         net_frame_t* frame,
                         net_wq_class_t cls) {
  ws_state_t* st = CORE_CONTAINER_OF(sink, ws_state_t, sink);
  if (st->ws.is_closing) {
    return; /* no data frame after a close frame */
  }
  if (st->query.is_chunks && st->job != NULL &&
      frame == st->job->topic.terminal) {
    srv_chunk_sub_terminal(&st->chunks, frame); /* after the last round */
    return;
  }
  srv_conn_send(st->conn, frame, cls);
  if (!st->conn->is_closing && st->flow == WS_READING &&
      net_wq_is_full(&st->conn->wq)) {
    srv_ws_update_flow(st);
  }
}


void srv_ws_unsubscribe(ws_state_t* st) {
  if (st->job != NULL) {
    srv_topic_remove(&st->job->topic, &st->sink);
  }
  srv_cluster_leave(&st->cjoin); /* a no-op off a gateway */
  core_list_remove(&st->cwait.link);
  if (st->job == NULL) {
    return;
  }
  srv_topic_unwait(&st->waiter);
  srv_chunk_sub_stop(&st->chunks);
  srv_job_unref(st->job);
  st->job = NULL;
}


static void sink_gone(srv_sink_t* sink) {
  ws_state_t* st = CORE_CONTAINER_OF(sink, ws_state_t, sink);
  srv_ws_unsubscribe(st);
  srv_ws_close_with(st, 4404, "the job was deleted");
}


const srv_sink_ops_t srv_ws_sink_ops = {
    .deliver = sink_deliver,
    .gone = sink_gone,
};


/* The job's terminal message (if it ended), after its final preview. A
 * send before it may have closed the connection (the peer reset), which
 * unsubscribes: then there is nothing left to send. */
static void send_terminal(ws_state_t* st) {
  if (st->job != NULL && st->job->topic.terminal != NULL) {
    sink_deliver(&st->sink, st->job->topic.terminal, NET_WQ_ESSENTIAL);
  }
}


/* A late joiner of a completed job whose preview had left memory: the
 * re-render landed (or failed: then the terminal message comes alone). */
void srv_ws_on_preview_ready(srv_waiter_t* w, bool has_preview) {
  ws_state_t* st = CORE_CONTAINER_OF(w, ws_state_t, waiter);
  if (st->job == NULL) {
    return;
  }
  net_frame_t* preview =
      srv_topic_preview_for(&st->job->topic, st->sink.encoding);
  if (has_preview && preview != NULL) {
    sink_deliver(&st->sink, preview, NET_WQ_LATEST_PREVIEW);
  } else {
    srv_log(&st->conn->ctx->log, SRV_LOG_WARN, "ws.final_preview_missing",
            "s:job_id", st->job->id, NULL);
  }
  send_terminal(st);
}


/* A gateway's mirror took another attempt's chunk table (a takeover): this
 * connection's masks are of the old one, and a delta of another epoch must
 * not follow its connected message (§11): the client reconnects, and its
 * since/epoch gets a keyframe of the new table. */
static void on_chunks_replaced(srv_chunk_sub_t* s) {
  srv_ws_close_with(CORE_CONTAINER_OF(s, ws_state_t, chunks), 1012,
                    "the job's chunk table was replaced: reconnect");
}


/* A chunks subscriber: connected (with data.chunks), then its rounds; an
 * ended job's terminal message waits for the round completing its mask. */
static void subscribe_chunks(ws_state_t* st, srv_job_t* job) {
  st->job = srv_job_ref(job);
  st->sink.wants_chunks = true;
  srv_topic_add(&job->topic, &st->sink);
  int level = st->query.level >= 0
                  ? st->query.level
                  : srv_ws_default_level(job->params.preview_scale);
  if (srv_chunk_sub_start(&st->chunks, st->conn, job, (unsigned) level,
                          st->query.has_since ? st->query.epoch : NULL,
                          st->query.since) != 0) {
    srv_ws_close_with(st, 1011, "out of memory");
    return;
  }
  st->chunks.on_replaced = on_chunks_replaced;
  json_t* data = srv_job_connected_data(job);
  json_object_set_new(data, "chunks", srv_chunk_sub_connected(&st->chunks));
  srv_ws_send_local(st, "connected", data);
  if (st->job == NULL) {
    return; /* the send failed and closed the connection */
  }
  srv_chunk_sub_pump(&st->chunks);
  if (st->job != NULL && job->topic.terminal != NULL) {
    srv_chunk_sub_terminal(&st->chunks, job->topic.terminal);
  }
}


/* A gateway's chunks subscriber waits for its mirror's table to be read
 * from Redis: its connected message carries the worker's epoch. */
static void on_table_read(srv_chunk_watch_t* w) {
  ws_state_t* st = CORE_CONTAINER_OF(w, ws_state_t, cwait);
  srv_job_t* job = st->job;
  if (job == NULL || job->chunks == NULL || !job->chunks->is_ready) {
    return;
  }
  core_list_remove(&st->cwait.link);
  st->job = NULL; /* subscribe_chunks takes its own */
  subscribe_chunks(st, job);
  srv_job_unref(job);
}


static bool wait_for_table(ws_state_t* st, srv_job_t* job) {
  srv_chunks_t* t = srv_chunks_for_job(job);
  if (t == NULL) {
    srv_ws_close_with(st, 1011, "out of memory");
    return true;
  }
  if (t->is_ready) {
    return false;
  }
  st->job = srv_job_ref(job);
  st->cwait.changed = on_table_read;
  core_list_push_back(&t->watches, &st->cwait.link);
  return true;
}


void srv_ws_subscribe(ws_state_t* st, srv_job_t* job) {
  if (st->query.is_chunks) {
    if (st->conn->ctx->cfg.role != SRV_ROLE_GATEWAY ||
        !wait_for_table(st, job)) {
      subscribe_chunks(st, job);
    }
    return;
  }
  st->job = srv_job_ref(job);
  srv_topic_add(&job->topic, &st->sink);
  srv_ws_send_local(st, "connected", srv_job_connected_data(job));
  if (st->job == NULL) {
    return; /* the send failed and closed the connection */
  }
  if (st->conn->ctx->cfg.role == SRV_ROLE_GATEWAY &&
      job->topic.latest[st->sink.encoding] == NULL) {
    /* A gateway has the latest preview in base64: made in this encoding
     * on the pool, and it and the terminal message follow. */
    srv_topic_wait(&job->topic, &st->waiter);
    if (srv_cluster_fill_preview(st->conn->ctx, job) == 0) {
      return;
    }
    srv_topic_unwait(&st->waiter);
  }
  net_frame_t* preview = srv_topic_preview_for(&job->topic, st->sink.encoding);
  if (preview != NULL) {
    sink_deliver(&st->sink, preview, NET_WQ_LATEST_PREVIEW);
  } else if (job->state == CORE_JOB_COMPLETED && job->final_preview_seq != 0) {
    /* Its final preview left memory (restart, cache trim): it is rendered
     * again, and it and the terminal message follow when ready. */
    srv_topic_wait(&job->topic, &st->waiter);
    job->engine->ops->rebuild_preview(job);
    return;
  }
  send_terminal(st);
}
