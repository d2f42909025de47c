/* sub_deliver.c: a subscription's events on their way to the application.
 * Each event is copied into a sub_ev_t that owns its strings and voxels,
 * handed to client_deliver() on the client thread and run by run_ev() on
 * whichever thread the dispatch hook picks (the client thread without
 * one). run_ev() is the only code here that runs off the client thread;
 * it reads only the sub's immutable fields and its atomics. Not here: what
 * the messages mean (sub_parse.c), connections (sub.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/sub_int.h"

typedef enum {
  EV_CONN,
  EV_CONNECTED,
  EV_PROGRESS,
  EV_JOB_STATE,
  EV_PREVIEW,
  EV_FINISHED,
  EV_ERROR,
  EV_CHUNKS,
  EV_CLOSED
} ev_kind_t;

/* One callback on its way to the application; owns its strings. */
struct sub_ev_s {
  cm_sub_t* sub;
  client_life_t* life;
  ev_kind_t kind;
  union {
    cm_conn_event_t conn;
    cm_connected_t connected;
    cm_progress_t progress;
    cm_state_change_t job_state;
    cm_preview_t preview;
    cm_finished_t finished;
    cm_sub_error_t error;
    cm_chunks_t chunks;
    int closed_status;
  } u;
  char* strs[3];
  cm_chunk_ref_t* refs; /* EV_CHUNKS: the event's copy of the list */
};


/* Runs on the dispatch thread: calls the application unless the client is
 * gone or the application closed the sub, then frees the event. */
static void run_ev(void* arg) {
  sub_ev_t* ev = arg;
  cm_sub_t* sub = ev->sub;
  const cm_sub_cbs_t* c = &sub->cbs;
  void* u = sub->user_data;
  bool live = client_life_is_alive(ev->life);
  bool open = live && !atomic_load(&sub->is_user_closed);
  switch (ev->kind) {
  case EV_CONN:
    if (open && c->on_state != NULL) {
      c->on_state(sub, &ev->u.conn, u);
    }
    break;
  case EV_CONNECTED:
    if (open && c->on_connected != NULL) {
      c->on_connected(sub, &ev->u.connected, u);
    }
    break;
  case EV_PROGRESS:
    if (open && c->on_progress != NULL) {
      c->on_progress(sub, &ev->u.progress, u);
    }
    break;
  case EV_JOB_STATE:
    if (open && c->on_job_state != NULL) {
      c->on_job_state(sub, &ev->u.job_state, u);
    }
    break;
  case EV_PREVIEW:
    if (open && c->on_preview != NULL) {
      c->on_preview(sub, &ev->u.preview, u);
    }
    free(ev->u.preview.voxels); /* NULL if the application took them */
    break;
  case EV_FINISHED:
    if (open && c->on_finished != NULL) {
      c->on_finished(sub, &ev->u.finished, u);
    }
    break;
  case EV_ERROR:
    if (open && c->on_error != NULL) {
      c->on_error(sub, &ev->u.error, u);
    }
    break;
  case EV_CHUNKS:
    if (open && c->on_chunks != NULL) {
      /* The masks hold still while the application reads them. */
      pthread_mutex_lock(&sub->ck.mask_mu);
      c->on_chunks(sub, &ev->u.chunks, u);
      pthread_mutex_unlock(&sub->ck.mask_mu);
    }
    break;
  case EV_CLOSED:
    if (live && c->on_closed != NULL) {
      c->on_closed(sub, ev->u.closed_status, u);
    }
    sub_unref(sub); /* the loop side's reference, handed to this event */
    break;
  }
  for (int i = 0; i < 3; i++) {
    free(ev->strs[i]);
  }
  free(ev->refs);
  client_life_unref(ev->life);
  free(ev);
}


static sub_ev_t* ev_new(cm_sub_t* sub, ev_kind_t kind) {
  sub_ev_t* ev = calloc(1, sizeof(*ev));
  if (ev != NULL) {
    ev->sub = sub;
    ev->kind = kind;
  }
  return ev;
}


/* Copies `s` (NULL: "") into the event; "" when out of memory. */
static const char* ev_str(sub_ev_t* ev, int slot, const char* s) {
  ev->strs[slot] = strdup(s != NULL ? s : "");
  return ev->strs[slot] != NULL ? ev->strs[slot] : "";
}


static void emit(cm_sub_t* sub, sub_ev_t* ev) {
  if (ev == NULL) {
    client_log(sub->client, CM_LOG_ERROR, "out of memory: event dropped");
    return;
  }
  ev->life = client_life_ref(sub->client);
  if (ev->kind != EV_CLOSED && ev->kind != EV_CONN) {
    sub_stats_lock(sub);
    sub->stats.messages++;
    sub_stats_unlock(sub);
  }
  client_deliver(sub->client, run_ev, ev);
}


void sub_emit_conn(cm_sub_t* sub, cm_conn_state_t state, uint32_t delay_ms) {
  sub_ev_t* ev = ev_new(sub, EV_CONN);
  if (ev != NULL) {
    ev->u.conn.state = state;
    ev->u.conn.attempt = sub->attempt;
    ev->u.conn.delay_ms = delay_ms;
    ev->u.conn.reason = sub->last_reason;
    ev->u.conn.close_code = sub->last_close_code;
  }
  emit(sub, ev);
}


void sub_emit_connected(cm_sub_t* sub, const cm_connected_t* c) {
  sub_ev_t* ev = ev_new(sub, EV_CONNECTED);
  if (ev != NULL) {
    ev->u.connected = *c;
  }
  emit(sub, ev);
}


void sub_emit_progress(cm_sub_t* sub, const cm_progress_t* p) {
  sub_ev_t* ev = ev_new(sub, EV_PROGRESS);
  if (ev != NULL) {
    ev->u.progress = *p;
    ev->u.progress.message = ev_str(ev, 0, p->message);
  }
  emit(sub, ev);
}


void sub_emit_job_state(cm_sub_t* sub, const cm_state_change_t* s) {
  sub_ev_t* ev = ev_new(sub, EV_JOB_STATE);
  if (ev != NULL) {
    ev->u.job_state = *s;
  }
  emit(sub, ev);
}


void sub_emit_preview(cm_sub_t* sub,
                      uint64_t seq,
                      int64_t ts_us,
                      core_preview_t* pv) {
  sub_ev_t* ev = ev_new(sub, EV_PREVIEW);
  if (ev == NULL) {
    free(pv->voxels);
    pv->voxels = NULL;
    emit(sub, NULL);
    return;
  }
  cm_preview_t* p = &ev->u.preview;
  p->seq = seq;
  p->timestamp_us = ts_us;
  for (int i = 0; i < 3; i++) {
    p->shape[i] = pv->shape.d[i];
    p->scale[i] = pv->scale[i];
  }
  p->dtype = "uint8";
  p->voxels = pv->voxels;
  p->len = pv->len;
  pv->voxels = NULL; /* the event's now */
  emit(sub, ev);
}


void sub_emit_finished(cm_sub_t* sub, const cm_finished_t* f) {
  sub_ev_t* ev = ev_new(sub, EV_FINISHED);
  if (ev != NULL) {
    ev->u.finished = *f;
    ev->u.finished.data_json = ev_str(ev, 0, f->data_json);
  }
  emit(sub, ev);
}


void sub_emit_chunks(cm_sub_t* sub, const cm_chunks_t* k) {
  sub_ev_t* ev = ev_new(sub, EV_CHUNKS);
  if (ev != NULL && k->chunk_count > 0) {
    ev->refs = malloc(k->chunk_count * sizeof(*ev->refs));
    if (ev->refs == NULL) {
      free(ev);
      ev = NULL;
    } else {
      memcpy(ev->refs, k->chunks, k->chunk_count * sizeof(*ev->refs));
    }
  }
  if (ev != NULL) {
    ev->u.chunks = *k;
    ev->u.chunks.chunks = ev->refs;
    ev->u.chunks.epoch = ev_str(ev, 0, k->epoch);
  }
  emit(sub, ev);
}


void sub_emit_error(cm_sub_t* sub,
                    cm_sub_err_kind_t kind,
                    uint64_t seq,
                    int64_t ts_us,
                    const char* code,
                    const char* message,
                    const char* hint,
                    bool is_retryable) {
  if (kind == CM_SUB_ERR_INVALID || kind == CM_SUB_ERR_UNKNOWN ||
      kind == CM_SUB_ERR_SKIPPED) {
    sub_stats_lock(sub);
    sub->stats.rejected += kind == CM_SUB_ERR_INVALID;
    sub_stats_unlock(sub);
    client_log(sub->client, CM_LOG_WARN, "job %s: %s", sub->job_id, message);
  }
  sub_ev_t* ev = ev_new(sub, EV_ERROR);
  if (ev != NULL) {
    ev->u.error.kind = kind;
    ev->u.error.seq = seq;
    ev->u.error.timestamp_us = ts_us;
    ev->u.error.code = ev_str(ev, 0, code);
    ev->u.error.message = ev_str(ev, 1, message);
    ev->u.error.hint = ev_str(ev, 2, hint);
    ev->u.error.is_retryable = is_retryable;
  }
  emit(sub, ev);
}


void sub_reject(cm_sub_t* sub, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  sub_emit_error(sub, CM_SUB_ERR_INVALID, 0, 0, "invalid_message", msg, "",
                 false);
}


int sub_closed_ev_alloc(cm_sub_t* sub) {
  sub->closed_ev = ev_new(sub, EV_CLOSED);
  return sub->closed_ev != NULL ? 0 : -ENOMEM;
}


void sub_emit_closed(cm_sub_t* sub) {
  sub_emit_conn(sub, CM_CONN_CLOSED, 0);
  sub_ev_t* ev = sub->closed_ev;
  sub->closed_ev = NULL;
  ev->u.closed_status = sub->close_status;
  emit(sub, ev); /* takes over the loop side's reference */
}
