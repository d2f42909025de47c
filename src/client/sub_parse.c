/* sub_parse.c: what a subscription makes of each message: the envelope and
 * every field checked (core/msg.c, core/preview_bin.c), previews decoded
 * and held against the job's volume and scale, job events de-duplicated by
 * seq so each reaches the application once and in order, then handed to
 * sub_deliver.c. A message that fails is reported (on_error) and dropped,
 * never delivered. Also cm_preview_decode(), the same checks for a preview
 * fetched over REST (any thread). Client thread otherwise; not here:
 * connections and reconnects (sub.c). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/sub_int.h"
#include "core/msg.h"

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
    sub_reject(sub, "connected message with missing or invalid fields");
    return;
  }
  uint32_t s = (uint32_t) json_integer_value(scale);
  core_shape_t want = core_shape_downsample(&volume, s);
  if (memcmp(&want, &preview, sizeof(want)) != 0) {
    sub_reject(sub, "connected: preview_shape does not match volume / scale");
    return;
  }
  if (sub->encoding == CM_ENCODING_CHUNKS &&
      sub_chunks_on_connected(sub, d) != 0) {
    /* A server that does not speak chunks: no connection will do better. */
    sub_emit_error(sub, CM_SUB_ERR_SERVER, 0, 0, "no_chunks",
                   "connected: data.chunks is missing or not "
                   "{\"edge\":32,\"levels\":5,\"epoch\"}: the server "
                   "does not offer chunked delta previews",
                   "use another encoding with this server", false);
    sub_finish(sub, CM_EPROTO);
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
    sub_stats_lock(sub);
    sub->stats.last_seq = c.last_seq;
    sub_stats_unlock(sub);
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
    sub_stats_lock(sub);
    sub->stats.reconnects++;
    sub_stats_unlock(sub);
  }
  sub->connections++;
  sub->attempt = 0;
  client_servers_prefer(&sub->client->servers, sub->server); /* it works */
  sub->last_reason = 0;
  sub->last_close_code = 0;
  sub_emit_conn(sub, CM_CONN_OPEN, 0);
  sub_emit_connected(sub, &c);
  if (sub->encoding == CM_ENCODING_CHUNKS) {
    sub_chunks_send_view(sub); /* not remembered across connections */
  }
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
    sub_reject(sub, "progress message (seq %llu) with invalid fields",
               (unsigned long long) m->seq);
    return false;
  }
  p.eta_s = json_is_number(eta) ? json_number_value(eta) : -1;
  if (!get_number(d, "elapsed_s", &p.elapsed_s)) {
    p.elapsed_s = 0;
  }
  json_int_t sent = json_integer_value(json_object_get(d, "previews_sent"));
  p.previews_sent = sent > 0 ? (uint64_t) sent : 0;
  p.message = json_string_value(msg); /* copied by the event */
  sub_emit_progress(sub, &p);
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
    rc = core_msg_decode_preview(m->data, &sub->volume, &pv, err, sizeof(err));
  }
  if (rc == -ENOMEM) {
    sub_reject(sub, "preview (seq %llu) too large for memory",
               (unsigned long long) m->seq);
    return false;
  }
  if (rc != 0) {
    sub_reject(sub, "preview (seq %llu) rejected: %s",
               (unsigned long long) m->seq, err);
    return false;
  }
  if (pv.scale[0] != sub->scale || pv.scale[1] != sub->scale ||
      pv.scale[2] != sub->scale) {
    free(pv.voxels);
    sub_reject(sub, "preview (seq %llu) rejected: scale %u is not the job's %u",
               (unsigned long long) m->seq, pv.scale[0], sub->scale);
    return false;
  }
  sub_emit_preview(sub, m->seq, m->ts_us, &pv);
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
      sub_reject(sub, "completed message without artifacts");
      return false;
    }
    json_int_t b =
        json_integer_value(json_object_get(json_array_get(arts, 0), "bytes"));
    f.artifact_bytes = b > 0 ? (uint64_t) b : 0;
    f.progress = 1;
  } else if (!get_number(d, "progress", &f.progress)) {
    f.progress = 0;
  }
  char* text = json_dumps(d, JSON_COMPACT);
  f.data_json = text; /* copied by the event */
  sub_emit_finished(sub, &f);
  free(text);
  return true;
}


static bool on_job_error_msg(cm_sub_t* sub, const core_server_msg_t* m) {
  const json_t* d = m->data;
  const char* code = json_string_value(json_object_get(d, "code"));
  const char* message = json_string_value(json_object_get(d, "message"));
  if (code == NULL || message == NULL) {
    sub_reject(sub, "error message (seq %llu) without code or message",
               (unsigned long long) m->seq);
    return false;
  }
  sub_emit_error(sub, m->seq == 0 ? CM_SUB_ERR_SERVER : CM_SUB_ERR_JOB, m->seq,
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
      sub_reject(sub, "state message with an unknown state");
      return false;
    }
    get_state(m->data, "previous", &s.previous);
    sub_emit_job_state(sub, &s);
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
  sub_emit_error(sub, CM_SUB_ERR_UNKNOWN, m->seq, m->ts_us, t, msg, "", false);
  return true;
}


/* Takes ownership of m's data. */
static void on_decoded(cm_sub_t* sub, core_server_msg_t m) {
  if (strcmp(m.type, "pong") == 0) {
    core_msg_clear(&m);
    return;
  }
  if (strcmp(m.job_id, sub->job_id) != 0) {
    sub_reject(sub, "message for job %s on the subscription of %s", m.job_id,
               sub->job_id);
  } else if (strcmp(m.type, "connected") == 0) {
    on_connected_msg(sub, &m);
  } else if (!sub->is_ready) {
    sub_reject(sub, "%s message before connected", m.type);
  } else if (strcmp(m.type, "delta") == 0) {
    /* Ordered by base and complete, not by seq: a delta's seq is its
     * preview's, which may be below a progress already delivered, and 0
     * for the empty keyframe of a job without a preview yet. */
    sub_chunks_on_delta(sub, &m);
  } else if (m.seq == 0) {
    if (strcmp(m.type, "error") == 0) {
      on_job_error_msg(sub, &m);
    } else {
      sub_reject(sub, "%s message with seq 0", m.type);
    }
  } else if (m.seq <= sub->stats.last_seq &&
             !(is_terminal_type(m.type) && !sub->has_terminal)) {
    sub_stats_lock(sub);
    sub->stats.duplicates++; /* a replay after reconnecting */
    sub_stats_unlock(sub);
  } else if (on_job_event(sub, &m)) {
    if (m.seq > sub->stats.last_seq) {
      sub_stats_lock(sub);
      sub->stats.last_seq = m.seq;
      sub_stats_unlock(sub);
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


void sub_on_text(cm_sub_t* sub, const char* text, size_t len) {
  core_server_msg_t m;
  char err[256];
  if (core_msg_decode(text, len, &m, err, sizeof(err)) != 0) {
    sub_reject(sub, "invalid message: %s", err);
    return;
  }
  on_decoded(sub, m);
}


/* A binary preview (raw or zstd): decoded and validated here, then handled
 * like its text twin, seq checks included. */
void sub_on_binary(cm_sub_t* sub, const uint8_t* data, size_t len) {
  if (sub->encoding == CM_ENCODING_BASE64) {
    sub_reject(sub, "binary message of %zu bytes that was not asked for", len);
    return;
  }
  if (!sub->is_ready) {
    sub_reject(sub, "binary message before connected");
    return;
  }
  if (sub->encoding == CM_ENCODING_CHUNKS) {
    sub_chunks_on_binary(sub, data, len);
    return;
  }
  core_server_msg_t m;
  core_preview_t pv;
  char err[256];
  int rc = core_preview_bin_decode(data, len, &sub->volume, &m, &pv, err,
                                   sizeof(err));
  if (rc != 0) {
    sub_reject(sub, "binary preview rejected: %s",
               rc == -ENOMEM ? "too large for memory" : err);
    return;
  }
  sub->bin_preview = &pv;
  on_decoded(sub, m);
  sub->bin_preview = NULL;
  free(pv.voxels); /* NULL unless the preview was not delivered */
}


/* Where the value of `"key":` starts in [p, end), blanks skipped, or NULL.
 * Good enough to read an envelope's leading fields without parsing the
 * whole (absent) message: base64 holds no quotes. */
static const char* find_value(const char* p, const char* end, const char* key) {
  size_t klen = strlen(key);
  while (p < end) {
    const char* q = memmem(p, (size_t) (end - p), key, klen);
    if (q == NULL) {
      return NULL;
    }
    const char* v = q + klen;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) {
      v++;
    }
    if (v < end && *v == ':') {
      v++;
      while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) {
        v++;
      }
      return v;
    }
    p = v;
  }
  return NULL;
}


/* The type and seq of a message from its first bytes, when they show; a
 * binary message's envelope follows its 4-byte length. */
static void sniff_envelope(uint8_t opcode,
                           const uint8_t* head,
                           size_t head_len,
                           char type[32],
                           uint64_t* seq) {
  type[0] = '\0';
  *seq = 0;
  const char* p = (const char*) head;
  const char* end = p + head_len;
  if (opcode == WSLAY_BINARY_FRAME) {
    p = head_len >= 4 ? p + 4 : end;
  }
  const char* t = find_value(p, end, "\"type\"");
  if (t != NULL && t < end && *t == '"') {
    size_t n = 0;
    for (t++; t < end && *t != '"' && n < 31; t++) {
      type[n++] = *t >= ' ' && *t < 0x7f ? *t : '?';
    }
    type[t < end && *t == '"' ? n : 0] = '\0';
  }
  const char* s = find_value(p, end, "\"seq\"");
  for (; s != NULL && s < end && *s >= '0' && *s <= '9'; s++) {
    if (*seq > (UINT64_MAX - 9) / 10) {
      *seq = 0;
      return;
    }
    *seq = *seq * 10 + (uint64_t) (*s - '0');
  }
}


void sub_on_skipped(cm_sub_t* sub,
                    int status,
                    uint8_t opcode,
                    const uint8_t* head,
                    size_t head_len,
                    uint64_t len) {
  char type[32];
  uint64_t seq;
  sniff_envelope(opcode, head, head_len, type, &seq);
  char what[80];
  if (type[0] == '\0') {
    snprintf(what, sizeof(what), "a %s message",
             opcode == WSLAY_BINARY_FRAME ? "binary" : "text");
  } else if (seq > 0) {
    snprintf(what, sizeof(what), "%s seq %llu", type, (unsigned long long) seq);
  } else {
    snprintf(what, sizeof(what), "a %s message", type);
  }
  char msg[256];
  if (status == UV_ENOMEM) {
    snprintf(msg, sizeof(msg), "%s (%llu bytes) skipped: no memory for it",
             what, (unsigned long long) len);
  } else {
    snprintf(msg, sizeof(msg),
             "%s (%llu bytes) skipped: over this client's limit of %llu "
             "bytes (max_message_bytes)",
             what, (unsigned long long) len,
             (unsigned long long) sub->client->opts.max_message_bytes);
  }
  sub_stats_lock(sub);
  sub->stats.previews_skipped++;
  sub_stats_unlock(sub);
  sub_emit_error(sub, CM_SUB_ERR_SKIPPED, seq, 0,
                 status == UV_ENOMEM ? "out_of_memory" : "message_too_large",
                 msg,
                 "a larger preview_scale makes previews scale^3 times "
                 "smaller; or raise max_message_bytes",
                 false);
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
