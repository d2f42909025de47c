/* sub.c: subscriptions to /ws/jobs/{id}: one net_wsc_t connection at a
 * time, reconnects with exponential backoff and jitter, strict validation
 * of every message (core/msg.c), de-duplication by seq so each job event
 * reaches the application once and in order, and delivery of events
 * through client_deliver(). Loop thread, except cm_sub_close() and
 * cm_sub_start() which post to it. */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "client/client_int.h"
#include "core/msg.h"
#include "core/preview_bin.h"
#include "core/shape.h"
#include "core/uuid.h"
#include "net/ws_client.h"

struct cm_sub_s {
  core_list_t node; /* in client->subs */
  cm_client_t* client;
  atomic_int refs; /* loop side, posted commands, the closed event */
  char job_id[CORE_UUID_STR_LEN + 1];
  cm_sub_cbs_t cbs;
  void* user_data;
  net_wsc_t* wsc;       /* the current connection, NULL between attempts */
  uv_timer_t timer;     /* reconnect delay */
  unsigned attempt;     /* consecutive failed connections */
  unsigned connections; /* connections that reached `connected` */
  bool is_ready;        /* this connection's `connected` arrived */
  bool has_volume;      /* volume/scale known (from `connected`) */
  core_shape_t volume;
  core_preview_t* bin_preview; /* set while a binary preview is handled */
  uint32_t scale;
  bool has_terminal; /* a terminal event was delivered */
  bool is_closing;   /* loop side: closing, no new connection */
  int close_status;  /* for on_closed */
  int last_reason;
  uint16_t last_close_code;
  atomic_bool is_user_closed; /* cm_sub_close called: deliver no more */
  cm_sub_stats_t stats;
};

typedef enum {
  EV_CONN,
  EV_CONNECTED,
  EV_PROGRESS,
  EV_JOB_STATE,
  EV_PREVIEW,
  EV_FINISHED,
  EV_ERROR,
  EV_CLOSED
} ev_kind_t;

/* One callback on its way to the application; owns its strings. */
typedef struct {
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
    int closed_status;
  } u;
  char* strs[3];
} sub_ev_t;

static void sub_connect(cm_sub_t* sub);
static void sub_finish(cm_sub_t* sub, int status);


static void sub_unref(cm_sub_t* sub) {
  if (atomic_fetch_sub(&sub->refs, 1) == 1) {
    free(sub);
  }
}


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
    free(ev->u.preview.voxels);
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
    sub->stats.messages++;
  }
  client_deliver(sub->client, run_ev, ev);
}


static void emit_conn(cm_sub_t* sub, cm_conn_state_t state, uint32_t delay_ms) {
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


static void emit_error(cm_sub_t* sub,
                       cm_sub_err_kind_t kind,
                       uint64_t seq,
                       int64_t ts_us,
                       const char* code,
                       const char* message,
                       const char* hint,
                       bool retryable) {
  if (kind == CM_SUB_ERR_INVALID || kind == CM_SUB_ERR_UNKNOWN) {
    sub->stats.rejected += kind == CM_SUB_ERR_INVALID;
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
    ev->u.error.is_retryable = retryable;
  }
  emit(sub, ev);
}


static void reject(cm_sub_t* sub, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reject(cm_sub_t* sub, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  emit_error(sub, CM_SUB_ERR_INVALID, 0, 0, "invalid_message", msg, "", false);
}


/* ---- validation helpers ---- */

static bool get_number(const json_t* obj, const char* key, double* out) {
  const json_t* v = json_object_get(obj, key);
  if (!json_is_number(v)) {
    return false;
  }
  *out = json_number_value(v);
  return isfinite(*out);
}


static bool get_shape(const json_t* obj, const char* key, core_shape_t* out) {
  const json_t* v = json_object_get(obj, key);
  if (!json_is_array(v) || json_array_size(v) != 3) {
    return false;
  }
  for (size_t i = 0; i < 3; i++) {
    const json_t* d = json_array_get(v, i);
    if (!json_is_integer(d) || json_integer_value(d) < 1 ||
        json_integer_value(d) > CORE_SHAPE_MAX_DIM) {
      return false;
    }
    out->d[i] = (uint32_t) json_integer_value(d);
  }
  return true;
}


static bool get_state(const json_t* obj, const char* key, cm_job_state_t* out) {
  *out = client_job_state_parse(json_string_value(json_object_get(obj, key)));
  return *out != CM_JOB_UNKNOWN;
}


static void on_connected_msg(cm_sub_t* sub, const core_server_msg_t* m) {
  const json_t* d = m->data;
  cm_connected_t c;
  memset(&c, 0, sizeof(c));
  core_shape_t volume, preview;
  const json_t* params = json_object_get(d, "params");
  const json_t* scale = json_object_get(params, "preview_scale");
  const json_t* last = json_object_get(d, "last_seq");
  if (m->seq != 0 || !get_state(d, "state", &c.state) ||
      !get_number(d, "progress", &c.progress) || c.progress < 0 ||
      c.progress > 1 || !json_is_integer(last) ||
      json_integer_value(last) < 0 ||
      !get_shape(json_object_get(d, "volume"), "shape", &volume) ||
      !get_shape(d, "preview_shape", &preview) || !json_is_integer(scale) ||
      json_integer_value(scale) < 1 ||
      json_integer_value(scale) > CORE_SCALE_MAX) {
    reject(sub, "connected message with missing or invalid fields");
    return;
  }
  uint32_t s = (uint32_t) json_integer_value(scale);
  core_shape_t want = core_shape_downsample(&volume, s);
  if (memcmp(&want, &preview, sizeof(want)) != 0) {
    reject(sub, "connected: preview_shape does not match volume / scale");
    return;
  }
  c.last_seq = (uint64_t) json_integer_value(last);
  if (c.last_seq < sub->stats.last_seq) {
    /* The server's counter went back (a restart that lost events): take
     * its word, or its replayed terminal event would look old. */
    client_log(sub->client, CM_LOG_WARN,
               "job %s: server's last_seq %llu is below %llu already seen",
               sub->job_id, (unsigned long long) c.last_seq,
               (unsigned long long) sub->stats.last_seq);
    sub->stats.last_seq = c.last_seq;
  }
  sub->volume = volume;
  sub->scale = s;
  sub->has_volume = true;
  sub->is_ready = true;
  for (int i = 0; i < 3; i++) {
    c.shape[i] = volume.d[i];
    c.preview_shape[i] = preview.d[i];
  }
  const json_t* vs =
      json_object_get(json_object_get(d, "volume"), "voxel_size");
  for (size_t i = 0; i < 3; i++) {
    c.voxel_size[i] = json_number_value(json_array_get(vs, i));
  }
  c.preview_scale = s;
  c.preview_hz = json_number_value(json_object_get(params, "preview_hz"));
  c.is_reconnect = sub->connections > 0;
  if (sub->connections > 0) {
    sub->stats.reconnects++;
  }
  sub->connections++;
  sub->attempt = 0;
  sub->last_reason = 0;
  sub->last_close_code = 0;
  emit_conn(sub, CM_CONN_OPEN, 0);
  sub_ev_t* ev = ev_new(sub, EV_CONNECTED);
  if (ev != NULL) {
    ev->u.connected = c;
  }
  emit(sub, ev);
}


static bool on_progress_msg(cm_sub_t* sub, const core_server_msg_t* m) {
  const json_t* d = m->data;
  cm_progress_t p;
  memset(&p, 0, sizeof(p));
  p.seq = m->seq;
  p.timestamp_us = m->ts_us;
  const json_t* msg = json_object_get(d, "message");
  const json_t* eta = json_object_get(d, "eta_s");
  if (!get_number(d, "progress", &p.progress) || p.progress < 0 ||
      p.progress > 1 || !get_state(d, "state", &p.state) ||
      (msg != NULL && !json_is_string(msg)) ||
      (eta != NULL && !json_is_null(eta) && !json_is_number(eta))) {
    reject(sub, "progress message (seq %llu) with invalid fields",
           (unsigned long long) m->seq);
    return false;
  }
  p.eta_s = json_is_number(eta) ? json_number_value(eta) : -1;
  if (!get_number(d, "elapsed_s", &p.elapsed_s)) {
    p.elapsed_s = 0;
  }
  json_int_t sent = json_integer_value(json_object_get(d, "previews_sent"));
  p.previews_sent = sent > 0 ? (uint64_t) sent : 0;
  sub_ev_t* ev = ev_new(sub, EV_PROGRESS);
  if (ev != NULL) {
    ev->u.progress = p;
    ev->u.progress.message = ev_str(ev, 0, json_string_value(msg));
  }
  emit(sub, ev);
  return true;
}


static bool on_preview_msg(cm_sub_t* sub, const core_server_msg_t* m) {
  core_preview_t pv;
  char err[256];
  int rc = 0;
  if (sub->bin_preview != NULL) {
    /* A binary message, already decoded and checked against the volume. */
    pv = *sub->bin_preview;
    sub->bin_preview->voxels = NULL; /* ownership moves on */
  } else {
    rc = core_msg_decode_preview(m->data, &sub->volume, &pv, err,
                                 sizeof(err));
  }
  if (rc == -ENOMEM) {
    reject(sub, "preview (seq %llu) too large for memory",
           (unsigned long long) m->seq);
    return false;
  }
  if (rc != 0) {
    reject(sub, "preview (seq %llu) rejected: %s", (unsigned long long) m->seq,
           err);
    return false;
  }
  if (pv.scale[0] != sub->scale || pv.scale[1] != sub->scale ||
      pv.scale[2] != sub->scale) {
    free(pv.voxels);
    reject(sub, "preview (seq %llu) rejected: scale %u is not the job's %u",
           (unsigned long long) m->seq, pv.scale[0], sub->scale);
    return false;
  }
  sub_ev_t* ev = ev_new(sub, EV_PREVIEW);
  if (ev == NULL) {
    free(pv.voxels);
    emit(sub, NULL);
    return false;
  }
  cm_preview_t* p = &ev->u.preview;
  p->seq = m->seq;
  p->timestamp_us = m->ts_us;
  for (int i = 0; i < 3; i++) {
    p->shape[i] = pv.shape.d[i];
    p->scale[i] = pv.scale[i];
  }
  p->dtype = "uint8";
  p->voxels = pv.voxels;
  p->len = pv.len;
  emit(sub, ev);
  return true;
}


static bool on_finished_msg(cm_sub_t* sub,
                            const core_server_msg_t* m,
                            cm_job_state_t state) {
  const json_t* d = m->data;
  cm_finished_t f;
  memset(&f, 0, sizeof(f));
  f.seq = m->seq;
  f.timestamp_us = m->ts_us;
  f.state = state;
  if (state == CM_JOB_COMPLETED) {
    const json_t* arts = json_object_get(d, "artifacts");
    if (!json_is_array(arts)) {
      reject(sub, "completed message without artifacts");
      return false;
    }
    json_int_t b =
        json_integer_value(json_object_get(json_array_get(arts, 0), "bytes"));
    f.artifact_bytes = b > 0 ? (uint64_t) b : 0;
    f.progress = 1;
  } else if (!get_number(d, "progress", &f.progress)) {
    f.progress = 0;
  }
  sub_ev_t* ev = ev_new(sub, EV_FINISHED);
  if (ev != NULL) {
    ev->u.finished = f;
    char* text = json_dumps(d, JSON_COMPACT);
    ev->u.finished.data_json = ev_str(ev, 0, text);
    free(text);
  }
  emit(sub, ev);
  return true;
}


static bool on_job_error_msg(cm_sub_t* sub, const core_server_msg_t* m) {
  const json_t* d = m->data;
  const char* code = json_string_value(json_object_get(d, "code"));
  const char* message = json_string_value(json_object_get(d, "message"));
  if (code == NULL || message == NULL) {
    reject(sub, "error message (seq %llu) without code or message",
           (unsigned long long) m->seq);
    return false;
  }
  emit_error(sub, m->seq == 0 ? CM_SUB_ERR_SERVER : CM_SUB_ERR_JOB, m->seq,
             m->ts_us, code, message,
             json_string_value(json_object_get(d, "hint")),
             json_is_true(json_object_get(d, "retryable")));
  return true;
}


static bool is_terminal_type(const char* type) {
  return strcmp(type, "completed") == 0 || strcmp(type, "cancelled") == 0 ||
         strcmp(type, "error") == 0;
}


/* One job event (seq >= 1), in order and not seen before. Returns true
 * when it was delivered (or skipped as unknown). */
static bool on_job_event(cm_sub_t* sub, const core_server_msg_t* m) {
  const char* t = m->type;
  if (strcmp(t, "progress") == 0) {
    return on_progress_msg(sub, m);
  }
  if (strcmp(t, "preview") == 0) {
    return on_preview_msg(sub, m);
  }
  if (strcmp(t, "state") == 0) {
    cm_state_change_t s = {.seq = m->seq, .timestamp_us = m->ts_us};
    if (!get_state(m->data, "state", &s.state)) {
      reject(sub, "state message with an unknown state");
      return false;
    }
    get_state(m->data, "previous", &s.previous);
    sub_ev_t* ev = ev_new(sub, EV_JOB_STATE);
    if (ev != NULL) {
      ev->u.job_state = s;
    }
    emit(sub, ev);
    return true;
  }
  if (strcmp(t, "completed") == 0) {
    return on_finished_msg(sub, m, CM_JOB_COMPLETED);
  }
  if (strcmp(t, "cancelled") == 0) {
    return on_finished_msg(sub, m, CM_JOB_CANCELLED);
  }
  if (strcmp(t, "error") == 0) {
    return on_job_error_msg(sub, m);
  }
  char msg[96];
  snprintf(msg, sizeof(msg), "unknown message type \"%s\" skipped", t);
  emit_error(sub, CM_SUB_ERR_UNKNOWN, m->seq, m->ts_us, t, msg, "", false);
  return true;
}


static void on_decoded(cm_sub_t* sub, core_server_msg_t m);


static void on_text(cm_sub_t* sub, const char* text, size_t len) {
  core_server_msg_t m;
  char err[256];
  if (core_msg_decode(text, len, &m, err, sizeof(err)) != 0) {
    reject(sub, "invalid message: %s", err);
    return;
  }
  on_decoded(sub, m);
}


/* A binary preview (raw or zstd): decoded and validated here, then handled
 * like its text twin, seq checks included. */
static void on_binary(cm_sub_t* sub, const uint8_t* data, size_t len) {
  if (sub->client->opts.preview_encoding == CM_ENCODING_BASE64) {
    reject(sub, "binary message of %zu bytes that was not asked for", len);
    return;
  }
  if (!sub->is_ready) {
    reject(sub, "binary message before connected");
    return;
  }
  core_server_msg_t m;
  core_preview_t pv;
  char err[256];
  int rc = core_preview_bin_decode(data, len, &sub->volume, &m, &pv, err,
                                   sizeof(err));
  if (rc != 0) {
    reject(sub, "binary preview rejected: %s",
           rc == -ENOMEM ? "too large for memory" : err);
    return;
  }
  sub->bin_preview = &pv;
  on_decoded(sub, m);
  sub->bin_preview = NULL;
  free(pv.voxels); /* NULL unless the preview was not delivered */
}


/* Takes ownership of m's data. */
static void on_decoded(cm_sub_t* sub, core_server_msg_t m) {
  if (strcmp(m.type, "pong") == 0) {
    core_msg_clear(&m);
    return;
  }
  if (strcmp(m.job_id, sub->job_id) != 0) {
    reject(sub, "message for job %s on the subscription of %s", m.job_id,
           sub->job_id);
  } else if (strcmp(m.type, "connected") == 0) {
    on_connected_msg(sub, &m);
  } else if (!sub->is_ready) {
    reject(sub, "%s message before connected", m.type);
  } else if (m.seq == 0) {
    if (strcmp(m.type, "error") == 0) {
      on_job_error_msg(sub, &m);
    } else {
      reject(sub, "%s message with seq 0", m.type);
    }
  } else if (m.seq <= sub->stats.last_seq &&
             !(is_terminal_type(m.type) && !sub->has_terminal)) {
    sub->stats.duplicates++; /* a replay after reconnecting */
  } else if (on_job_event(sub, &m)) {
    if (m.seq > sub->stats.last_seq) {
      sub->stats.last_seq = m.seq;
    }
    if (is_terminal_type(m.type)) {
      sub->has_terminal = true;
    }
  }
  core_msg_clear(&m);
  if (sub->has_terminal && !sub->is_closing) {
    sub_finish(sub, 0); /* nothing can follow a terminal event */
  }
}


/* ---- connection lifecycle ---- */

static void on_ws_open(net_wsc_t* wsc) {
  (void) wsc; /* ready once `connected` arrives */
}


static void on_ws_msg(net_wsc_t* wsc,
                      uint8_t opcode,
                      const uint8_t* data,
                      size_t len) {
  cm_sub_t* sub = wsc->data;
  sub->stats.bytes += len;
  if (sub->is_closing) {
    return;
  }
  if (opcode != WSLAY_TEXT_FRAME) {
    on_binary(sub, data, len);
    return;
  }
  on_text(sub, (const char*) data, len);
}


static uint32_t backoff_ms(const cm_sub_t* sub) {
  const cm_client_options_t* o = &sub->client->opts;
  uint64_t d = o->reconnect_initial_ms;
  for (unsigned i = 1; i < sub->attempt && d < o->reconnect_max_ms; i++) {
    d *= 2;
  }
  if (d > o->reconnect_max_ms) {
    d = o->reconnect_max_ms;
  }
  /* Jitter: uniform in [d/2, d], so clients cut off together do not all
   * come back in the same instant. */
  uint32_t r = 0;
  if (RAND_bytes((unsigned char*) &r, sizeof(r)) != 1) {
    r = (uint32_t) rand();
  }
  uint64_t half = d / 2;
  return (uint32_t) (d - half + (half > 0 ? r % (half + 1) : 0));
}


static void on_retry(uv_timer_t* timer) {
  cm_sub_t* sub = timer->data;
  sub_connect(sub);
}


/* Is this end of a connection final? Sets *status when it is. */
static bool is_fatal(cm_sub_t* sub, net_wsc_t* wsc, int status, int* out) {
  if (status == NET_WSC_E_HTTP) {
    unsigned h = wsc->http_status;
    if (h == 401 || h == 403) {
      *out = CM_EUNAUTHORIZED;
    } else if (h == 404) {
      *out = CM_ENOTFOUND;
    } else if (h >= 400 && h < 500 && h != 408 && h != 429) {
      *out = CM_EPROTO;
    } else {
      return false;
    }
    /* Show the server's sentence from its error envelope. */
    json_error_t jerr;
    json_t* root =
        wsc->http_body != NULL ? json_loads(wsc->http_body, 0, &jerr) : NULL;
    const json_t* e = json_object_get(root, "error");
    const char* code = json_string_value(json_object_get(e, "code"));
    const char* msg = json_string_value(json_object_get(e, "message"));
    char text[384];
    snprintf(text, sizeof(text), "the WebSocket handshake got HTTP %u: %s", h,
             msg != NULL ? msg : "refused");
    emit_error(sub, CM_SUB_ERR_SERVER, 0, 0, code != NULL ? code : "http_error",
               text, json_string_value(json_object_get(e, "hint")), false);
    json_decref(root);
    return true;
  }
  if (status == 0) {
    uint16_t code = wsc->close_code;
    const char* what = NULL;
    if (code == 4404) {
      what = "the server does not know this job (close 4404)";
      *out = CM_ENOTFOUND;
    } else if (code == 4000) {
      what = "the server calls the job id malformed (close 4000)";
      *out = CM_ECLOSED;
    } else if (code == 4401 || code == 4403) {
      what = "the server refused the token (close 4401)";
      *out = CM_EUNAUTHORIZED;
    }
    if (what != NULL) {
      emit_error(sub, CM_SUB_ERR_SERVER, 0, 0, "closed", what, "", false);
      return true;
    }
  }
  return false;
}


static void on_ws_close(net_wsc_t* wsc, int status) {
  cm_sub_t* sub = wsc->data;
  sub->wsc = NULL;
  sub->is_ready = false;
  int fatal = 0;
  bool is_final = !sub->is_closing && is_fatal(sub, wsc, status, &fatal);
  sub->last_reason = status;
  sub->last_close_code = status == 0 ? wsc->close_code : 0;
  free(wsc->http_body);
  free(wsc);
  if (sub->is_closing) {
    sub_finish(sub, sub->close_status);
    return;
  }
  if (is_final) {
    sub_finish(sub, fatal);
    return;
  }
  sub->attempt++;
  const cm_client_options_t* o = &sub->client->opts;
  if (o->max_reconnect_attempts > 0 &&
      sub->attempt > o->max_reconnect_attempts) {
    sub_finish(sub, CM_EGAVEUP);
    return;
  }
  uint32_t delay = backoff_ms(sub);
  client_log(sub->client, CM_LOG_INFO,
             "job %s: connection lost (%s); reconnect attempt %u in %u ms",
             sub->job_id, cm_strerror(status), sub->attempt, delay);
  emit_conn(sub, CM_CONN_RECONNECTING, delay);
  uv_timer_start(&sub->timer, on_retry, delay, 0);
}


static void sub_connect(cm_sub_t* sub) {
  cm_client_t* client = sub->client;
  emit_conn(sub, CM_CONN_CONNECTING, 0);
  net_wsc_t* wsc = calloc(1, sizeof(*wsc));
  char target[512];
  static const char* encoding_query[] = {"", "?encoding=raw",
                                        "?encoding=zstd"};
  cm_encoding_t enc = client->opts.preview_encoding;
  snprintf(target, sizeof(target), "%s/ws/jobs/%s%s", client->prefix,
           sub->job_id,
           (unsigned) enc <= CM_ENCODING_ZSTD ? encoding_query[enc] : "");
  net_wsc_opts_t o = {
      .host = client->host,
      .port = client->port,
      .target = target,
      .headers = client->auth_header,
      .connect_timeout_ms = client->opts.connect_timeout_ms,
      .keepalive_ms = client->opts.keepalive_ms,
      .max_msg_len = client->opts.max_message_bytes,
  };
  int err = wsc != NULL ? net_wsc_start(wsc, &client->loop, &o, on_ws_open,
                                        on_ws_msg, on_ws_close, sub)
                        : -ENOMEM;
  if (err != 0) {
    free(wsc);
    /* Treat like a failed connection: retry later. */
    sub->attempt++;
    sub->last_reason = err;
    uint32_t delay = backoff_ms(sub);
    emit_conn(sub, CM_CONN_RECONNECTING, delay);
    uv_timer_start(&sub->timer, on_retry, delay, 0);
    return;
  }
  sub->wsc = wsc;
}


static void on_timer_closed(uv_handle_t* handle) {
  cm_sub_t* sub = handle->data;
  emit_conn(sub, CM_CONN_CLOSED, 0);
  sub_ev_t* ev = ev_new(sub, EV_CLOSED);
  if (ev == NULL) {
    sub_unref(sub); /* cannot tell the application; at least free */
    return;
  }
  ev->u.closed_status = sub->close_status;
  emit(sub, ev); /* takes over the loop side's reference */
}


/* Ends the subscription with `status` once the connection is gone. */
static void sub_finish(cm_sub_t* sub, int status) {
  if (!sub->is_closing) {
    sub->is_closing = true;
    sub->close_status = status;
  }
  if (sub->wsc != NULL) {
    net_wsc_close(sub->wsc, 1000); /* on_ws_close comes back here */
    return;
  }
  if (!core_list_is_linked(&sub->node)) {
    return; /* already finishing */
  }
  core_list_remove(&sub->node);
  uv_timer_stop(&sub->timer);
  uv_close((uv_handle_t*) &sub->timer, on_timer_closed);
}


/* Puts the sub on the loop. The first connection starts from a zero
 * timer, so that even its CONNECTING event comes after cm_sub_start()
 * returned. */
static void do_start(void* arg) {
  cm_sub_t* sub = arg;
  cm_client_t* client = sub->client;
  uv_timer_init(&client->loop, &sub->timer);
  sub->timer.data = sub;
  core_list_push_back(&client->subs, &sub->node);
  if (client->is_stopped || atomic_load(&sub->is_user_closed)) {
    sub_finish(sub, 0);
    return;
  }
  uv_timer_start(&sub->timer, on_retry, 0, 0);
}


int cm_sub_start(cm_client_t* client,
                 const char* job_id,
                 const cm_sub_cbs_t* cbs,
                 void* user_data,
                 cm_sub_t** out) {
  if (job_id == NULL || !core_uuid_is_valid(job_id, strlen(job_id))) {
    return CM_EBADID;
  }
  cm_sub_t* sub = calloc(1, sizeof(*sub));
  if (sub == NULL) {
    return -ENOMEM;
  }
  core_list_init(&sub->node);
  sub->client = client;
  atomic_init(&sub->refs, 1);
  atomic_init(&sub->is_user_closed, false);
  memcpy(sub->job_id, job_id, CORE_UUID_STR_LEN + 1);
  if (cbs != NULL) {
    sub->cbs = *cbs;
  }
  sub->user_data = user_data;
  *out = sub;
  int err = client_post(client, do_start, sub);
  if (err != 0) {
    free(sub);
  }
  return err;
}


static void do_close(void* arg) {
  cm_sub_t* sub = arg;
  if (core_list_is_linked(&sub->node) || sub->wsc != NULL) {
    sub_finish(sub, 0);
  }
  sub_unref(sub); /* the command's reference */
}


void cm_sub_close(cm_sub_t* sub) {
  if (sub == NULL || atomic_exchange(&sub->is_user_closed, true)) {
    return;
  }
  atomic_fetch_add(&sub->refs, 1);
  if (client_post(sub->client, do_close, sub) != 0) {
    sub_unref(sub);
  }
}


void client_subs_stop_all(cm_client_t* client) {
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &client->subs) {
    sub_finish(CORE_CONTAINER_OF(it, cm_sub_t, node), 0);
  }
}


const char* cm_sub_job_id(const cm_sub_t* sub) {
  return sub->job_id;
}


void cm_sub_get_stats(const cm_sub_t* sub, cm_sub_stats_t* out) {
  *out = sub->stats;
}


int cm_preview_decode(const char* json,
                      size_t len,
                      const uint32_t volume_shape[3],
                      cm_preview_t* out,
                      char* err,
                      size_t err_len) {
  memset(out, 0, sizeof(*out));
  core_server_msg_t m;
  if (core_msg_decode(json, len, &m, err, err_len) != 0) {
    return CM_EPROTO;
  }
  if (strcmp(m.type, "preview") != 0) {
    snprintf(err, err_len, "a %s message, not a preview", m.type);
    core_msg_clear(&m);
    return CM_EPROTO;
  }
  core_shape_t volume;
  if (volume_shape != NULL) {
    memcpy(volume.d, volume_shape, sizeof(volume.d));
  }
  core_preview_t pv;
  int rc = core_msg_decode_preview(
      m.data, volume_shape != NULL ? &volume : NULL, &pv, err, err_len);
  if (rc == 0) {
    out->seq = m.seq;
    out->timestamp_us = m.ts_us;
    for (int i = 0; i < 3; i++) {
      out->shape[i] = pv.shape.d[i];
      out->scale[i] = pv.scale[i];
    }
    out->dtype = "uint8";
    out->voxels = pv.voxels;
    out->len = pv.len;
  }
  core_msg_clear(&m);
  return rc == -EINVAL ? CM_EPROTO : rc;
}
