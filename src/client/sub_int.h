/* sub_int.h: what the three parts of a subscription share: sub.c (the
 * connect / reconnect / close state machine and the public cm_sub_* calls),
 * sub_parse.c (validation of each message into an event) and sub_deliver.c
 * (events handed to the application). Every field is the client thread's
 * unless its comment names another rule. */
#ifndef CLIENT_SUB_INT_H
#define CLIENT_SUB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "client/client_int.h"
#include "client/sub_chunks.h"
#include "core/preview_bin.h"
#include "core/shape.h"
#include "core/uuid.h"
#include "net/ws_client.h"

typedef struct sub_ev_s sub_ev_t; /* sub_deliver.c */

struct cm_sub_s {
  core_list_t node; /* in client->subs while on the loop */
  cm_client_t* client;
  /* Immutable once cm_sub_start() returned; read by any thread. */
  char job_id[CORE_UUID_STR_LEN + 1];
  cm_sub_cbs_t cbs;
  void* user_data;
  cm_encoding_t encoding;
  uint32_t chunk_scale;    /* CHUNKS: the scale asked for, 0: the default */
  uint64_t max_mask_bytes; /* CHUNKS: bound on the dense masks, 0: none */
  /* The memory lives while any of these holds a reference: the
   * application (until cm_sub_free), the loop side (until the closed event
   * has run or been skipped), each posted command (until it ran). */
  atomic_int refs;
  atomic_bool is_user_closed; /* cm_sub_close called: deliver no more */
  atomic_bool is_finished;    /* the loop is done with it: closed event out */
  /* Loop side. */
  sub_ev_t* closed_ev;  /* made at start, so on_closed cannot be lost */
  net_wsc_t* wsc;       /* the current connection, NULL between attempts */
  uv_timer_t timer;     /* reconnect delay */
  unsigned attempt;     /* consecutive failed connections */
  size_t server;        /* client->servers index of the current attempt */
  unsigned connections; /* connections that reached `connected` */
  bool is_ready;        /* this connection's `connected` arrived */
  bool has_volume;      /* volume/scale known (from `connected`) */
  core_shape_t volume;
  uint32_t scale;
  core_preview_t* bin_preview; /* set while a binary preview is handled */
  sub_chunks_t ck;             /* CHUNKS: masks, since, view, the delta */
  uint64_t wire_seen;          /* wsc->rx_bytes already counted */
  bool has_terminal;           /* a terminal event was delivered */
  bool is_closing;             /* closing, no new connection */
  int close_status;            /* for on_closed */
  int last_reason;
  uint16_t last_close_code;
  /* Written on the client thread under stats_mu so that cm_sub_get_stats()
   * can copy a consistent snapshot from any thread; the client thread, the
   * only writer, reads them without it. */
  pthread_mutex_t stats_mu;
  cm_sub_stats_t stats;
};

/* sub.c: ends the subscription with `status` (kept if one was already
 * decided) once its connection is gone; on_closed follows. */
void sub_finish(cm_sub_t* sub, int status);

/* sub.c: drops one reference; the last one frees the sub. Any thread. */
void sub_unref(cm_sub_t* sub);

/* Brackets a change of sub->stats (client thread). */
static inline void sub_stats_lock(cm_sub_t* sub) {
  pthread_mutex_lock(&sub->stats_mu);
}

static inline void sub_stats_unlock(cm_sub_t* sub) {
  pthread_mutex_unlock(&sub->stats_mu);
}

/* sub_parse.c: one text or binary message of the current connection
 * (`data` borrowed for the call): validated, de-duplicated by seq and
 * delivered, or reported through on_error. */
void sub_on_text(cm_sub_t* sub, const char* text, size_t len);
void sub_on_binary(cm_sub_t* sub, const uint8_t* data, size_t len);

/* sub_parse.c: a message of `len` bytes the connection discarded unread
 * (status UV_EMSGSIZE: over max_message_bytes; UV_ENOMEM), its first
 * head_len bytes in `head`: counted and reported (CM_SUB_ERR_SKIPPED). */
void sub_on_skipped(cm_sub_t* sub,
                    int status,
                    uint8_t opcode,
                    const uint8_t* head,
                    size_t head_len,
                    uint64_t len);

/* sub_deliver.c: events for the application, each copied (strings too)
 * and handed to client_deliver(); all return nothing because a failed
 * allocation only drops the event (and logs it). */
void sub_emit_conn(cm_sub_t* sub, cm_conn_state_t state, uint32_t delay_ms);
void sub_emit_connected(cm_sub_t* sub, const cm_connected_t* ev);
void sub_emit_progress(cm_sub_t* sub, const cm_progress_t* ev);
void sub_emit_job_state(cm_sub_t* sub, const cm_state_change_t* ev);
/* Takes ownership of pv->voxels (freed if the event cannot be made). */
void sub_emit_preview(cm_sub_t* sub,
                      uint64_t seq,
                      int64_t ts_us,
                      core_preview_t* pv);
void sub_emit_finished(cm_sub_t* sub, const cm_finished_t* ev);
/* Copies the chunk list and the epoch; on_chunks runs under ck.mask_mu. */
void sub_emit_chunks(cm_sub_t* sub, const cm_chunks_t* ev);
void sub_emit_error(cm_sub_t* sub,
                    cm_sub_err_kind_t kind,
                    uint64_t seq,
                    int64_t ts_us,
                    const char* code,
                    const char* message,
                    const char* hint,
                    bool is_retryable);
/* An INVALID error: a message failed validation and was dropped. */
void sub_reject(cm_sub_t* sub, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Makes sub->closed_ev. Returns 0 or -ENOMEM. */
int sub_closed_ev_alloc(cm_sub_t* sub);
/* The last event: on_closed(sub->close_status), made beforehand so it
 * cannot fail; hands the loop side's reference over to it. */
void sub_emit_closed(cm_sub_t* sub);

#endif
