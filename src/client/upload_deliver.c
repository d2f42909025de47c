/* upload_deliver.c: an upload's news on its way to the application:
 * progress (rate over the last few seconds, ETA, at a bounded rate) and
 * the one done event, each copied into an up_ev_t handed to
 * client_deliver() and run by run_ev() on the dispatch thread (the client
 * thread without one). run_ev() reads only the upload's immutable fields
 * and atomics. Also the info snapshot and the last reference. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/upload_int.h"

#define RATE_WINDOW_MS 5000

typedef enum {
  EV_PROGRESS,
  EV_DONE
} ev_kind_t;

struct up_ev_s {
  cm_upload_t* up;
  client_life_t* life;
  ev_kind_t kind;
  cm_upload_progress_t progress;
  int status;
  bool has_volume;
  cm_volume_t volume;
  cm_reply_t reply; /* owned: its body is freed after on_done */
};


void up_unref(cm_upload_t* up) {
  if (atomic_fetch_sub(&up->refs, 1) != 1) {
    return;
  }
  pthread_mutex_destroy(&up->shared.mu);
  for (unsigned i = 0; i < UPLOAD_RECORD_MAX_PARTS; i++) {
    free(up->streams[i].buf);
  }
  EVP_MD_CTX_free(up->md);
  free(up->record);
  cm_reply_clear(&up->end_reply);
  free(up->done_ev); /* NULL unless the upload never reached the loop */
  free(up);
}


static void run_ev(void* arg) {
  up_ev_t* ev = arg;
  cm_upload_t* up = ev->up;
  bool live = client_life_is_alive(ev->life);
  if (ev->kind == EV_PROGRESS) {
    if (live && !atomic_load(&up->is_user_cancelled) &&
        up->cbs.on_progress != NULL) {
      up->cbs.on_progress(up, &ev->progress, up->user_data);
    }
  } else {
    if (live && up->cbs.on_done != NULL) {
      up->cbs.on_done(up, ev->status, ev->has_volume ? &ev->volume : NULL,
                      &ev->reply, up->user_data);
    }
    cm_reply_clear(&ev->reply);
    up_unref(up); /* the loop side's reference, handed to this event */
  }
  client_life_unref(ev->life);
  free(ev);
}


static uint64_t bytes_of(const cm_upload_t* up, cm_upload_phase_t phase) {
  if (phase == CM_UPLOAD_HASHING) {
    return up->hashed;
  }
  uint64_t n = up_durable(up);
  for (unsigned i = 0; i < up->stream_count; i++) {
    n += up->streams[i].in_flight;
  }
  return n;
}


/* Bytes per second since the oldest sample of the window. */
static double rate_of(cm_upload_t* up, uint64_t now, uint64_t bytes) {
  unsigned i = up->sample_next;
  up->sample_ms[i] = now;
  up->sample_bytes[i] = bytes;
  up->sample_next = (i + 1) % 16;
  if (up->sample_count < 16) {
    up->sample_count++;
  }
  /* The oldest sample still in the window. */
  unsigned oldest = (up->sample_next + 16 - up->sample_count) % 16;
  while (oldest != i && now - up->sample_ms[oldest] > RATE_WINDOW_MS) {
    oldest = (oldest + 1) % 16;
  }
  uint64_t dt = now - up->sample_ms[oldest];
  if (oldest == i || dt == 0 || bytes < up->sample_bytes[oldest]) {
    return 0;
  }
  return (double) (bytes - up->sample_bytes[oldest]) * 1000.0 / (double) dt;
}


/* Where a main phase stands in client.h's order; -1 for the
 * interruptions (PAUSED, RETRYING). */
static int rank_of(cm_upload_phase_t phase) {
  switch (phase) {
  case CM_UPLOAD_STARTING:
    return 0;
  case CM_UPLOAD_HASHING:
    return 1;
  case CM_UPLOAD_UPLOADING:
    return 2;
  case CM_UPLOAD_COMPLETING:
    return 3;
  case CM_UPLOAD_DONE:
    return 4;
  case CM_UPLOAD_PAUSED:
  case CM_UPLOAD_RETRYING:
    return -1;
  }
  assert(0 && "not a phase");
  return -1;
}


/* The one transition check of the phases (client.h): main phases move
 * forward; the only step back, COMPLETING to UPLOADING, comes right after
 * an interruption. A break is the driver's bug, never the server's. */
static void check_phase(cm_upload_t* up, cm_upload_phase_t next) {
  int from = rank_of(up->main_phase);
  int to = rank_of(next);
  assert(from < rank_of(CM_UPLOAD_DONE) && "a phase after done");
  if (to < 0) {
    up->is_interrupted = true;
    return;
  }
  bool is_resend = up->is_interrupted &&
                   up->main_phase == CM_UPLOAD_COMPLETING &&
                   next == CM_UPLOAD_UPLOADING;
  assert((to >= from || is_resend) && "an upload phase went back");
  (void) is_resend;
  up->main_phase = next;
  up->is_interrupted = false;
}


void up_emit_progress(cm_upload_t* up, cm_upload_phase_t phase, bool force) {
  uint64_t now = uv_now(&up->client->loop);
  check_phase(up, phase);
  if (phase != up->phase) {
    force = true;
    up->sample_count = 0;
    up->sample_next = 0;
    up->phase = phase;
  }
  if (!force && now - up->last_emit_ms < up->opts.progress_interval_ms) {
    return;
  }
  up->last_emit_ms = now;
  up_ev_t* ev = calloc(1, sizeof(*ev));
  if (ev == NULL) {
    client_log(up->client, CM_LOG_ERROR, "out of memory: progress dropped");
    return;
  }
  cm_upload_progress_t* p = &ev->progress;
  p->phase = phase;
  p->bytes_total = up->size;
  p->bytes_done = phase == CM_UPLOAD_HASHING ? up->hashed
                  : up->is_dedup             ? up->size
                                             : up_durable(up);
  p->bytes_sent = bytes_of(up, CM_UPLOAD_UPLOADING);
  uint64_t moving = bytes_of(up, phase);
  p->rate_bps = rate_of(up, now, moving);
  p->eta_s = -1;
  if ((phase == CM_UPLOAD_HASHING || phase == CM_UPLOAD_UPLOADING) &&
      p->rate_bps > 0) {
    p->eta_s = (double) (up->size - moving) / p->rate_bps;
  }
  p->retries = up->retries;
  p->streams = up->stream_count > 0 ? up->stream_count : 1;
  p->last_error = phase == CM_UPLOAD_RETRYING ? up->last_error : 0;
  p->delay_ms = phase == CM_UPLOAD_RETRYING ? up->delay_ms : 0;
  ev->up = up;
  ev->kind = EV_PROGRESS;
  ev->life = client_life_ref(up->client);
  client_deliver(up->client, run_ev, ev);
}


int up_done_ev_alloc(cm_upload_t* up) {
  up->done_ev = calloc(1, sizeof(*up->done_ev));
  return up->done_ev != NULL ? 0 : -ENOMEM;
}


void up_emit_done(cm_upload_t* up,
                  int status,
                  const cm_volume_t* volume,
                  const cm_reply_t* reply) {
  up_ev_t* ev = up->done_ev;
  up->done_ev = NULL;
  ev->up = up;
  ev->kind = EV_DONE;
  ev->status = status;
  if (volume != NULL) {
    ev->has_volume = true;
    ev->volume = *volume;
    ev->reply.volume = *volume;
  }
  if (reply != NULL) {
    /* Moved, not copied: the fatal reply is the upload's and goes with
     * this event. */
    ev->reply = *reply;
    if (volume != NULL) {
      ev->reply.volume = *volume;
    }
  }
  ev->life = client_life_ref(up->client);
  atomic_store(&up->is_finished, true);
  client_deliver(up->client, run_ev, ev);
}


void up_info_sync(cm_upload_t* up) {
  pthread_mutex_lock(&up->shared.mu);
  cm_upload_info_t* i = &up->shared.info;
  i->size = up->size;
  i->is_resumed = up->is_resumed && up->is_resume_told;
  i->resumed_at = up->resumed_at;
  i->is_deduplicated = up->is_dedup;
  i->streams = up->stream_count > 0 ? up->stream_count : 1;
  i->bytes_sent = up->bytes_sent;
  i->retries = up->retries;
  memcpy(i->sha256, up->sha256, sizeof(i->sha256));
  const char* url = up->is_concat          ? up->final_url
                    : up->stream_count > 0 ? up->streams[0].url
                                           : "";
  snprintf(i->upload_url, sizeof(i->upload_url), "%s", url);
  snprintf(i->server, sizeof(i->server), "%s",
           up->client->servers.v[up->srv].url);
  i->failovers = up->failovers;
  pthread_mutex_unlock(&up->shared.mu);
}


void cm_upload_get_info(const cm_upload_t* up, cm_upload_info_t* out) {
  /* Locking changes no observable state: hence the cast. */
  cm_upload_t* u = (cm_upload_t*) up;
  pthread_mutex_lock(&u->shared.mu);
  *out = u->shared.info;
  pthread_mutex_unlock(&u->shared.mu);
}
