/* upload.c: an upload's driver and its outcomes. up_advance(), after
 * every event, looks at what is known and starts what comes next: open
 * the file and read its record, hash it, ask the server (OPTIONS), create
 * the upload (or its parts), HEAD what a resume or a failure left unknown,
 * read and send chunks, complete, fetch the volume, end. Also retries
 * (backoff with jitter), starting over, and the end (terminate on cancel,
 * remove the record, close the file, on_done). The public calls:
 * upload_api.c; requests: upload_http.c, their answers:
 * upload_http_reply.c; file work: upload_work.c; callbacks:
 * upload_deliver.c. Client thread. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "client/upload_int.h"

#define MAX_START_OVERS 3
/* Connects in a row a server holding durable bytes of the upload may
 * refuse before the upload moves on (one that restarts keeps them). */
#define FAILOVER_AFTER 3


uint64_t up_durable(const cm_upload_t* up) {
  uint64_t n = 0;
  for (unsigned i = 0; i < up->stream_count; i++) {
    n += up->streams[i].offset;
  }
  return n;
}


cm_upload_phase_t up_streams_phase(const cm_upload_t* up) {
  bool has_unknown = false;
  uint64_t durable = 0;
  for (unsigned i = 0; i < up->stream_count; i++) {
    const up_stream_t* s = &up->streams[i];
    if (!s->is_known) {
      has_unknown = true;
      continue;
    }
    assert(s->offset + s->in_flight <= s->length);
    if (s->offset + s->in_flight < s->length) {
      return CM_UPLOAD_UPLOADING; /* bytes left to write */
    }
    durable += s->offset;
  }
  if (has_unknown || up->stream_count == 0) {
    return CM_UPLOAD_STARTING;
  }
  /* Every byte is written. One upload: its last PATCH waits for the
   * server's validation. A concatenation's parts are done once durable;
   * then its final is the completion. */
  return !up->is_concat || durable == up->size ? CM_UPLOAD_COMPLETING
                                               : CM_UPLOAD_UPLOADING;
}


/* Progress in the phase the streams are in, unless a HEAD must first say
 * which (the phase shown, e.g. RETRYING, stays until then). */
static void emit_streams_phase(cm_upload_t* up, bool force) {
  cm_upload_phase_t p = up_streams_phase(up);
  if (p != CM_UPLOAD_STARTING) {
    up_emit_progress(up, p, force);
  }
}


bool up_all_sent(const cm_upload_t* up) {
  for (unsigned i = 0; i < up->stream_count; i++) {
    const up_stream_t* s = &up->streams[i];
    if (!s->is_known || s->offset < s->length || s->is_busy) {
      return false;
    }
  }
  return up->stream_count > 0;
}


void up_record_layout(cm_upload_t* up) {
  up->is_record_dirty = true;
}


/* ---- outcomes ---- */

void up_set_over(cm_upload_t* up,
                 int status,
                 const cm_reply_t* reply,
                 bool keep_record) {
  if (up->is_over) {
    return;
  }
  up->is_over = true;
  up->end_status = status;
  up->is_record_kept = keep_record;
  if (reply != NULL) {
    up->end_reply = *reply;
    up->end_reply.body = NULL; /* the envelope's fields are enough */
    up->end_reply.body_len = 0;
    up->end_reply.jobs = NULL;
    up->end_reply.volumes = NULL;
  }
  up_stop_waiting(up);
  up_http_abort_all(up);
}


void up_fail(cm_upload_t* up,
             int status,
             const cm_reply_t* reply,
             bool keep_record) {
  assert(status != 0);
  client_log(up->client, CM_LOG_INFO, "upload %s: %s", up->path,
             reply != NULL && reply->error_message[0] != '\0'
                 ? reply->error_message
                 : cm_strerror(status));
  up_set_over(up, status, reply, keep_record);
}


static uint32_t backoff_ms(const cm_upload_t* up) {
  uint64_t d = up->opts.retry_initial_ms;
  for (unsigned i = 1; i < up->attempts_in_row && d < up->opts.retry_max_ms;
       i++) {
    d *= 2;
  }
  if (d > up->opts.retry_max_ms) {
    d = up->opts.retry_max_ms;
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


static void on_timer(uv_timer_t* timer) {
  cm_upload_t* up = timer->data;
  up->is_waiting = false;
  up_advance(up);
}


void up_kick(cm_upload_t* up) {
  up->is_waiting = true;
  uv_timer_start(&up->timer, on_timer, 0, 0);
}


void up_stop_waiting(cm_upload_t* up) {
  if (up->is_waiting) {
    uv_timer_stop(&up->timer);
    up->is_waiting = false;
  }
}


void up_wait(cm_upload_t* up, uint32_t delay_ms) {
  if (up->is_over || up->is_waiting) {
    return;
  }
  up->is_waiting = true;
  uv_timer_start(&up->timer, on_timer, delay_ms, 0);
}


void up_retry_later(cm_upload_t* up, int status, const cm_reply_t* reply) {
  if (up->is_over) {
    return;
  }
  up->last_error = status;
  if (up->is_waiting) {
    return; /* one attempt failing on several streams counts once */
  }
  up->retries++;
  up->attempts_in_row++;
  if (up->opts.max_retries > 0 && up->attempts_in_row > up->opts.max_retries) {
    up_fail(up, status, reply, true);
    return;
  }
  up->delay_ms = backoff_ms(up);
  client_log(
      up->client, CM_LOG_INFO, "upload %s: %s; retry %u in %u ms", up->path,
      reply != NULL && reply->error_message[0] != '\0' ? reply->error_message
                                                       : cm_strerror(status),
      up->retries, up->delay_ms);
  up_wait(up, up->delay_ms);
  up_info_sync(up);
  up_emit_progress(up, CM_UPLOAD_RETRYING, true);
}


void up_start_over(cm_upload_t* up, int status, const cm_reply_t* reply) {
  if (++up->start_overs > MAX_START_OVERS) {
    up_fail(up, status, reply, false);
    return;
  }
  client_log(up->client, CM_LOG_INFO,
             "upload %s: the server no longer has the upload; starting over",
             up->path);
  up->is_restarting = true;
  up_http_abort_all(up);
  /* An attempt that failed: the bytes go again, so the phase may go back
   * to UPLOADING, through RETRYING (client.h). */
  up->retries++;
  up->last_error = status;
  up->delay_ms = 0;
  up_info_sync(up);
  up_emit_progress(up, CM_UPLOAD_RETRYING, true);
}


bool up_fail_over(cm_upload_t* up, size_t srv, int status) {
  const client_servers_t* list = &up->client->servers;
  /* is_waiting: another stream's failure already counted this attempt. */
  if (list->count < 2 || srv != up->srv || up->is_over || up->is_waiting ||
      !client_servers_should_fail_over(status, 0, false, true)) {
    return false; /* one server, an older one's answer, or not a dead one */
  }
  /* Every upload request is safe to move, sent or not: the next server
   * starts the upload afresh, and what the dead one may have done (an
   * upload created, bytes written) only expires there. But bytes durable
   * there are lost by moving (another server of the cluster does not know
   * this upload): a few tries first. */
  bool holds_bytes = up->stream_count > 0 && up_durable(up) > 0;
  if (++up->srv_fails < FAILOVER_AFTER && holds_bytes) {
    return false;
  }
  size_t next = client_servers_next(list, up->srv);
  bool has_layout = up->stream_count > 0 || up->final_url[0] != '\0';
  client_log(up->client, CM_LOG_WARN, "upload %s: server %s failed (%s); %s %s",
             up->path, list->v[up->srv].url, cm_strerror(status),
             has_layout ? "starting the upload over on" : "going on on",
             list->v[next].url);
  up->srv = next;
  up->srv_fails = 0;
  up->failovers++;
  /* What the new server offers is asked again (concatenation, size). */
  up->is_caps_known = false;
  up->max_size = 0;
  if (has_layout) {
    up->is_restarting = true; /* reset_layout once nothing is in flight */
    up_http_abort_all(up);
  }
  up->is_record_dirty = true; /* it names the server */
  return true;
}


/* Drops the layout once nothing of it is in flight. */
static void reset_layout(cm_upload_t* up) {
  for (unsigned i = 0; i < UPLOAD_RECORD_MAX_PARTS; i++) {
    free(up->streams[i].buf);
    memset(&up->streams[i], 0, sizeof(up->streams[i]));
  }
  up->stream_count = 0;
  up->is_concat = false;
  up->final_url[0] = '\0';
  up->volume_id[0] = '\0';
  up->is_dedup_probe_done = false;
  up->is_restarting = false;
  up->is_record_dirty = true;
}


/* ---- the end ---- */

static void on_timer_closed(uv_handle_t* handle) {
  cm_upload_t* up = handle->data;
  cm_reply_t reply = up->end_reply;
  memset(&up->end_reply, 0, sizeof(up->end_reply));
  int status = up->end_status;
  up_emit_done(up, status, status == 0 ? &up->volume : NULL, &reply);
}


static void after_close(cm_upload_t* up) {
  core_list_remove(&up->node);
  uv_timer_stop(&up->timer);
  uv_close((uv_handle_t*) &up->timer, on_timer_closed);
}


/* Everything in flight has landed: terminate (cancel), remove the record
 * (unless kept), close the file, then on_done. */
static void end(cm_upload_t* up) {
  /* A cancel terminates the final first: its parts are "in use" (409)
   * while it is assembled. */
  if (up->is_cancelling && up->cancel_stage == 0) {
    up->cancel_stage = 1;
    up_set_over(up, UV_ECANCELED, NULL, false);
    if (up->final_url[0] != '\0' &&
        up_http_delete(up, up->final_url, false) == 0) {
      return;
    }
  }
  if (up->is_cancelling && up->cancel_stage == 1) {
    up->cancel_stage = 2;
    for (unsigned i = 0; i < up->stream_count; i++) {
      if (up->streams[i].url[0] != '\0') {
        up_http_delete(up, up->streams[i].url, false);
      }
    }
    if (up->ops > 0) {
      return;
    }
  }
  if (!up->is_record_kept && up->record_file[0] != '\0' &&
      !up->is_record_removed && up->opts.resume &&
      up_work_remove_record(up) == 0) {
    up->is_record_removed = true; /* after_work calls back here */
    return;
  }
  up->is_ending = true;
  if (up->end_status == 0) {
    up_emit_progress(up, CM_UPLOAD_DONE, true);
  }
  if (up->fd >= 0 && up_work_close(up, after_close) == 0) {
    return;
  }
  after_close(up);
}


/* ---- the driver ---- */

static bool wants_concat(const cm_upload_t* up) {
  return up->opts.parallel > 1 && up->has_concat &&
         up->size >= 2 * up->opts.chunk_bytes;
}


/* Splits the file into parts for a concatenation (not yet created). */
static void plan_parts(cm_upload_t* up) {
  uint64_t chunks =
      (up->size + up->opts.chunk_bytes - 1) / up->opts.chunk_bytes;
  unsigned n = up->opts.parallel;
  if (chunks < n) {
    n = (unsigned) chunks;
  }
  /* Parts of whole chunks, the last one taking the rest. */
  uint64_t per = (chunks + n - 1) / n * up->opts.chunk_bytes;
  uint64_t at = 0;
  unsigned count = 0;
  while (at < up->size && count < n) {
    up_stream_t* s = &up->streams[count++];
    s->start = at;
    s->length = up->size - at < per || count == n ? up->size - at : per;
    s->is_known = false;
    at += s->length;
  }
  up->stream_count = count;
  up->is_concat = count > 1;
}


/* Starts what each stream needs next. */
static int drive_streams(cm_upload_t* up) {
  int err = 0;
  bool all_known = true;
  for (unsigned i = 0; err == 0 && i < up->stream_count; i++) {
    up_stream_t* s = &up->streams[i];
    if (s->is_busy) {
      all_known = all_known && s->is_known;
      continue;
    }
    if (s->url[0] == '\0') {
      all_known = false;
      err = up_http_create(up, (int) i, false);
    } else if (!s->is_known) {
      all_known = false;
      err = up_http_head(up, (int) i);
    } else if (s->offset < s->length && up->volume_id[0] == '\0') {
      if (s->has_chunk && s->chunk_off == s->offset) {
        err = up_http_patch(up, (int) i, false);
      } else {
        s->has_chunk = false;
        err = up_work_read(up, (int) i);
      }
    } else if (s->offset == s->length && s->buf != NULL) {
      free(s->buf); /* this stream is done: its memory goes */
      s->buf = NULL;
      s->has_chunk = false;
    }
  }
  if (err == 0 && up->is_resumed && !up->is_resume_told && all_known) {
    up->is_resume_told = true;
    up->resumed_at = up_durable(up);
    up_info_sync(up);
    emit_streams_phase(up, true); /* "resuming at" */
  }
  return err;
}


/* One step of the upload; every event ends here. */
void up_advance(cm_upload_t* up) {
  if (up->is_ending) {
    return;
  }
  if (up->is_over || up->is_cancelling) {
    if (up->ops == 0) {
      end(up);
    }
    return;
  }
  if (up->is_paused || up->is_restarting) {
    if (up->ops > 0) {
      return;
    }
    if (up->is_restarting) {
      reset_layout(up);
    }
    if (up->is_paused) {
      if (!up->is_pause_told) {
        up->is_pause_told = true;
        up_emit_progress(up, CM_UPLOAD_PAUSED, true);
      }
      return;
    }
  }
  if (up->is_waiting) {
    return;
  }
  int err = 0;
  if (!up->is_prepared) {
    if (!up->is_step_busy) {
      up_emit_progress(up, CM_UPLOAD_STARTING, false);
      err = up_work_prepare(up);
    }
  } else if (up->is_record_dirty && !up->is_record_busy && up->opts.resume &&
             up->record_file[0] != '\0' &&
             (err = up_work_save_record(up)) != 0) {
    /* no memory to save it: the upload goes on, unresumable */
    err = 0;
    up->is_record_dirty = false;
  }
  if (err == 0 && up->is_prepared && up->is_step_busy && up->stream_count > 0) {
    err = drive_streams(up); /* streams go on beside a step */
  }
  if (err != 0 || !up->is_prepared || up->is_step_busy) {
    if (err != 0) {
      up_fail(up, err, NULL, true);
      if (up->ops == 0) {
        end(up);
      }
    }
    return;
  }
  if (up->opts.hash_first && up->sha256[0] == '\0' && !up->is_caps_known &&
      !up->is_caps_probed && up->stream_count == 0) {
    err = up_http_options(up, true); /* too large? then no hashing */
  } else if (up->opts.hash_first && up->sha256[0] == '\0') {
    up_emit_progress(up, CM_UPLOAD_HASHING, false);
    err = up_work_hash(up);
  } else if (up->volume_id[0] != '\0') {
    if (up->has_volume) {
      up_set_over(up, 0, NULL, false);
      if (up->ops == 0) {
        end(up);
      }
      return;
    }
    err = up_http_get_volume(up);
  } else if (up->opts.parallel > 1 && !up->is_caps_known &&
             up->stream_count == 0) {
    err = up_http_options(up, false);
  } else if (up->stream_count == 0) {
    if (wants_concat(up) && up->sha256[0] != '\0' && !up->is_dedup_probe_done) {
      err = up_http_create(up, -1, true); /* does the server have it? */
    } else if (wants_concat(up)) {
      plan_parts(up);
      up_emit_progress(up, CM_UPLOAD_UPLOADING, true);
      err = drive_streams(up);
    } else {
      if (up->opts.parallel > 1 && !up->has_concat) {
        client_log(up->client, CM_LOG_INFO,
                   "upload %s: the server offers no concatenation; one "
                   "stream",
                   up->path);
      }
      up->stream_count = 1;
      up->streams[0].length = up->size;
      err = drive_streams(up);
    }
  } else if (up->is_concat && up->final_url[0] != '\0') {
    err = up_http_head(up, -1); /* assembling, or done */
    up_emit_progress(up, CM_UPLOAD_COMPLETING, false);
  } else if (!up_all_sent(up)) {
    /* Not "uploading" blindly: the last PATCH, all of it written, may be
     * waiting for the server's validation (COMPLETING). */
    emit_streams_phase(up, false);
    err = drive_streams(up);
  } else if (up->is_concat) {
    up_emit_progress(up, CM_UPLOAD_COMPLETING, false);
    err = up_http_final(up);
  } else {
    /* Every byte is durable but the answer naming the volume was lost:
     * an empty PATCH at the end waits for the completion. */
    up_emit_progress(up, CM_UPLOAD_COMPLETING, false);
    err = up_http_patch(up, 0, true);
  }
  if (err != 0) {
    up_fail(up, err, NULL, true);
    if (up->ops == 0) {
      end(up);
    }
  }
}
