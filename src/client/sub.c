/* sub.c: a subscription's life: one net_wsc_t connection to /ws/jobs/{id}
 * at a time, reconnects with exponential backoff and jitter, the end of a
 * connection classified (fatal or worth another attempt), closing, and the
 * public cm_sub_* calls. Client thread, except the public calls: start and
 * close post to it, the getters read what is immutable or locked, free
 * drops the application's reference. The memory is reference-counted
 * (sub_int.h) so that none of them can outlive it; the application's
 * reference makes the libuv rule of client.h hold. Not here: what
 * messages mean (sub_parse.c), callbacks (sub_deliver.c). */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "client/sub_int.h"

static void sub_connect(cm_sub_t* sub);


void sub_unref(cm_sub_t* sub) {
  if (atomic_fetch_sub(&sub->refs, 1) == 1) {
    pthread_mutex_destroy(&sub->stats_mu);
    sub_chunks_free(&sub->ck);
    free(sub->closed_ev); /* NULL unless the sub never reached the loop */
    free(sub);
  }
}


static void on_ws_open(net_wsc_t* wsc) {
  (void) wsc; /* ready once `connected` arrives */
}


/* Counts what the connection read from its socket since the last call. */
static void count_wire(cm_sub_t* sub, const net_wsc_t* wsc) {
  sub_stats_lock(sub);
  sub->stats.wire_bytes += wsc->rx_bytes - sub->wire_seen;
  sub_stats_unlock(sub);
  sub->wire_seen = wsc->rx_bytes;
}


static void on_ws_msg(net_wsc_t* wsc,
                      uint8_t opcode,
                      const uint8_t* data,
                      size_t len) {
  cm_sub_t* sub = wsc->data;
  sub_stats_lock(sub);
  sub->stats.bytes += len;
  sub_stats_unlock(sub);
  count_wire(sub, wsc);
  if (sub->is_closing || sub->ck.is_broken) {
    return; /* a broken chunks connection is being dropped */
  }
  if (opcode != WSLAY_TEXT_FRAME) {
    sub_on_binary(sub, data, len);
    return;
  }
  sub_on_text(sub, (const char*) data, len);
}


static void on_ws_skip(net_wsc_t* wsc,
                       int status,
                       uint8_t opcode,
                       const uint8_t* head,
                       size_t head_len,
                       uint64_t len) {
  cm_sub_t* sub = wsc->data;
  sub_stats_lock(sub);
  sub->stats.bytes += len;
  sub_stats_unlock(sub);
  count_wire(sub, wsc);
  if (!sub->is_closing) {
    sub_on_skipped(sub, status, opcode, head, head_len, len);
  }
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
  if (status == CM_ETLS || cm_is_tls_verify_error(status)) {
    /* A refused certificate or a peer without TLS: no retry changes it. */
    *out = status;
    return true;
  }
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
    sub_emit_error(sub, CM_SUB_ERR_SERVER, 0, 0,
                   code != NULL ? code : "http_error", text,
                   json_string_value(json_object_get(e, "hint")), false);
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
      sub_emit_error(sub, CM_SUB_ERR_SERVER, 0, 0, "closed", what, "", false);
      return true;
    }
  }
  return false;
}


/* A connection attempt failed, or a connection ended, with `status` that
 * is worth another try: it counts as a failed attempt, then the next one
 * waits its backoff, or the sub gives up past max_reconnect_attempts. The
 * one path for failures reported at once and later. */
static void retry_or_give_up(cm_sub_t* sub, int status) {
  sub->attempt++;
  const cm_client_options_t* o = &sub->client->opts;
  if (o->max_reconnect_attempts > 0 &&
      sub->attempt > o->max_reconnect_attempts) {
    sub_finish(sub, CM_EGAVEUP);
    return;
  }
  uint32_t delay = backoff_ms(sub);
  /* Several servers: each attempt goes to the next one, so a dead server
   * costs one attempt and the job's stream goes on from another. */
  client_servers_t* servers = &sub->client->servers;
  sub->server = client_servers_next(servers, sub->server);
  client_log(sub->client, CM_LOG_INFO,
             "job %s: connection lost (%s); reconnect attempt %u to %s in %u "
             "ms",
             sub->job_id, cm_strerror(status), sub->attempt,
             servers->v[sub->server].url, delay);
  sub_emit_conn(sub, CM_CONN_RECONNECTING, delay);
  uv_timer_start(&sub->timer, on_retry, delay, 0);
}


static void on_ws_close(net_wsc_t* wsc, int status) {
  cm_sub_t* sub = wsc->data;
  count_wire(sub, wsc);
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
  retry_or_give_up(sub, status);
}


static void sub_connect(cm_sub_t* sub) {
  cm_client_t* client = sub->client;
  sub_emit_conn(sub, CM_CONN_CONNECTING, 0);
  net_wsc_t* wsc = calloc(1, sizeof(*wsc));
  char target[768];
  char query[256];
  static const char* encoding_query[] = {"", "?encoding=raw", "?encoding=zstd"};
  cm_encoding_t enc = sub->encoding;
  if (enc == CM_ENCODING_CHUNKS) {
    sub_chunks_begin(sub, query, sizeof(query));
  } else {
    snprintf(query, sizeof(query), "%s",
             (unsigned) enc <= CM_ENCODING_ZSTD ? encoding_query[enc] : "");
  }
  const client_server_t* srv = &client->servers.v[sub->server];
  snprintf(target, sizeof(target), "%s/ws/jobs/%s%s", srv->prefix, sub->job_id,
           query);
  sub->wire_seen = 0;
  net_wsc_opts_t o = {
      .host = srv->host,
      .port = srv->port,
      .target = target,
      .headers = client->auth_header,
      .connect_timeout_ms = client->opts.connect_timeout_ms,
      .keepalive_ms = client->opts.keepalive_ms,
      .max_msg_len = client->opts.max_message_bytes,
      .tls_ctx = srv->is_tls ? client->tls_ctx : NULL,
  };
  int err = wsc != NULL ? net_wsc_start(wsc, &client->loop, &o, on_ws_open,
                                        on_ws_msg, on_ws_skip, on_ws_close, sub)
                        : -ENOMEM;
  if (err != 0) {
    free(wsc);
    sub->last_reason = err;
    sub->last_close_code = 0;
    retry_or_give_up(sub, err);
    return;
  }
  sub->wsc = wsc;
}


static void on_timer_closed(uv_handle_t* handle) {
  cm_sub_t* sub = handle->data;
  atomic_store(&sub->is_finished, true);
  sub_emit_closed(sub);
}


void sub_finish(cm_sub_t* sub, int status) {
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
  sub->server = client_servers_first(&client->servers);
  if (client->is_stopped || atomic_load(&sub->is_user_closed)) {
    sub_finish(sub, 0);
    return;
  }
  uv_timer_start(&sub->timer, on_retry, 0, 0);
}


void cm_sub_options_init(cm_sub_options_t* opts) {
  memset(opts, 0, sizeof(*opts));
  opts->encoding = CM_ENCODING_BASE64;
  opts->max_mask_bytes = 2ull << 30;
}


int cm_sub_start(cm_client_t* client,
                 const char* job_id,
                 const cm_sub_cbs_t* cbs,
                 void* user_data,
                 cm_sub_t** out) {
  return cm_sub_start_opts(client, job_id, NULL, cbs, user_data, out);
}


int cm_sub_start_opts(cm_client_t* client,
                      const char* job_id,
                      const cm_sub_options_t* opts,
                      const cm_sub_cbs_t* cbs,
                      void* user_data,
                      cm_sub_t** out) {
  if (job_id == NULL || !core_uuid_is_valid(job_id, strlen(job_id))) {
    return CM_EBADID;
  }
  cm_sub_options_t so;
  cm_sub_options_init(&so);
  so.encoding = client->opts.preview_encoding;
  if (opts != NULL) {
    so = *opts;
  }
  if ((unsigned) so.encoding > CM_ENCODING_CHUNKS ||
      (so.scale != 0 && (so.encoding != CM_ENCODING_CHUNKS ||
                         core_chunk_level_of_scale(so.scale) < 0))) {
    return CM_EBADARG;
  }
  cm_sub_t* sub = calloc(1, sizeof(*sub));
  if (sub == NULL) {
    return -ENOMEM;
  }
  sub->encoding = so.encoding;
  sub->chunk_scale = so.scale;
  sub->max_mask_bytes = so.max_mask_bytes;
  if (so.encoding == CM_ENCODING_CHUNKS && sub_chunks_init(&sub->ck) != 0) {
    free(sub);
    return -ENOMEM;
  }
  core_list_init(&sub->node);
  sub->client = client;
  atomic_init(&sub->refs, 2); /* the application's and the loop side's */
  atomic_init(&sub->is_user_closed, false);
  atomic_init(&sub->is_finished, false);
  pthread_mutex_init(&sub->stats_mu, NULL);
  if (sub_closed_ev_alloc(sub) != 0) {
    pthread_mutex_destroy(&sub->stats_mu);
    sub_chunks_free(&sub->ck);
    free(sub);
    return -ENOMEM;
  }
  memcpy(sub->job_id, job_id, CORE_UUID_STR_LEN + 1);
  if (cbs != NULL) {
    sub->cbs = *cbs;
  }
  sub->user_data = user_data;
  *out = sub;
  int err = client_post(client, do_start, sub);
  if (err != 0) {
    *out = NULL;
    sub_unref(sub);
    sub_unref(sub);
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
  if (atomic_load(&sub->is_finished)) {
    return; /* nothing left to close, and the client may be gone */
  }
  /* The command keeps the memory until it ran, even if the application
   * frees the sub (after on_closed) in the meantime. */
  atomic_fetch_add(&sub->refs, 1);
  if (client_post(sub->client, do_close, sub) != 0) {
    sub_unref(sub);
  }
}


void cm_sub_free(cm_sub_t* sub) {
  if (sub == NULL) {
    return;
  }
  assert(atomic_load(&sub->is_finished) && "cm_sub_free before on_closed");
  sub_unref(sub);
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
  /* Locking changes no observable state of the sub: hence the cast. */
  cm_sub_t* s = (cm_sub_t*) sub;
  sub_stats_lock(s);
  *out = s->stats;
  sub_stats_unlock(s);
}
