/* metrics.c: Prometheus exposition of the context's counters and gauges. */
#include "server/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "core/job.h"
#include "server/cluster.h"
#include "server/conn.h"
#include "server/jobs.h"

typedef struct {
  char* buf;
  size_t len, cap;
  int err;
} out_t;


static void emit(out_t* o, const char* fmt, ...) {
  if (o->err != 0) {
    return;
  }
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->err = -EINVAL;
      return;
    }
    if ((size_t) n < o->cap - o->len) {
      o->len += (size_t) n;
      return;
    }
    size_t cap = o->cap * 2 + (size_t) n;
    char* grown = realloc(o->buf, cap);
    if (grown == NULL) {
      o->err = -ENOMEM;
      return;
    }
    o->buf = grown;
    o->cap = cap;
  }
}


static void metric(out_t* o,
                   const char* name,
                   const char* type,
                   const char* help,
                   unsigned long long value) {
  emit(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
       value);
}


/* The cluster's lines (cluster.c), counters named *_total. */
static void cluster_metric(void* out,
                           const char* name,
                           const char* help,
                           unsigned long long value) {
  size_t n = strlen(name);
  bool counter = n > 6 && strcmp(name + n - 6, "_total") == 0;
  metric(out, name, counter ? "counter" : "gauge", help, value);
}


int srv_metrics_render(srv_ctx_t* ctx, char** out, size_t* len) {
  out_t o = {malloc(4096), 0, 4096, 0};
  if (o.buf == NULL) {
    return -ENOMEM;
  }
  const srv_metrics_t* m = &ctx->metrics;
  unsigned ws = 0;
  unsigned long long queued_frames = 0, dropped = 0;
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &ctx->conns) {
    srv_conn_t* conn = CORE_CONTAINER_OF(it, srv_conn_t, link);
    ws += conn->proto != NULL && strcmp(conn->proto->name, "ws") == 0;
    queued_frames += conn->wq.item_count;
    dropped += conn->wq.frames_dropped;
  }
  const unsigned* by_state = ctx->jobs_by_state;
  metric(&o, "cryomamba_connections", "gauge", "Open TCP connections.",
         ctx->conn_count);
  metric(&o, "cryomamba_websocket_connections", "gauge",
         "Open WebSocket connections.", ws);
  metric(&o, "cryomamba_connections_total", "counter", "Connections accepted.",
         m->connections_total);
  metric(&o, "cryomamba_http_requests_total", "counter",
         "HTTP requests parsed.", m->http_requests_total);
  emit(&o,
       "# HELP cryomamba_http_responses_total HTTP responses by class.\n"
       "# TYPE cryomamba_http_responses_total counter\n");
  for (int c = 1; c <= 5; c++) {
    emit(&o, "cryomamba_http_responses_total{class=\"%dxx\"} %llu\n", c,
         (unsigned long long) m->http_responses_by_class[c]);
  }
  metric(&o, "cryomamba_ws_upgrades_total", "counter",
         "WebSocket upgrades completed.", m->ws_upgrades_total);
  metric(&o, "cryomamba_ws_closes_total", "counter",
         "WebSocket connections closed.", m->ws_closes_total);
  metric(&o, "cryomamba_previews_published_total", "counter",
         "Previews encoded (once each, shared by all subscribers).",
         m->previews_published);
  metric(&o, "cryomamba_preview_bytes_published_total", "counter",
         "Bytes of preview frames encoded.", m->preview_bytes_published);
  metric(&o, "cryomamba_events_published_total", "counter",
         "Job events other than previews.", m->events_published);
  metric(&o, "cryomamba_renders_total", "counter",
         "Mask renders finished on the worker pool.", m->renders_total);
  emit(&o,
       "# HELP cryomamba_render_seconds_total Worker time producing masks.\n"
       "# TYPE cryomamba_render_seconds_total counter\n"
       "cryomamba_render_seconds_total %.6f\n",
       (double) m->render_ns_total / 1e9);
  metric(&o, "cryomamba_previews_evicted_total", "counter",
         "Final previews dropped from memory (re-rendered on demand).",
         m->previews_evicted);
  metric(&o, "cryomamba_chunk_deltas_sent_total", "counter",
         "delta messages sent to chunks subscribers (docs/protocol.md §11)",
         m->chunk_deltas_sent);
  metric(&o, "cryomamba_chunk_deltas_shared_total", "counter",
         "of those, deltas composed once and sent to every subscriber at the "
         "same base",
         m->chunk_deltas_shared);
  metric(&o, "cryomamba_ws_queued_frames", "gauge",
         "Frames queued across connections (not yet written).", queued_frames);
  metric(&o, "cryomamba_ws_stale_frames_skipped_total", "counter",
         "Stale previews/progress skipped for slow readers (open conns).",
         dropped);
  metric(&o, "cryomamba_jobs_created_total", "counter", "Jobs created.",
         m->jobs_created_total);
  metric(&o, "cryomamba_jobs_deleted_total", "counter",
         "Finished jobs deleted (DELETE or retention).", m->jobs_deleted_total);
  metric(&o, "cryomamba_jobs_retired_total", "counter",
         "Finished jobs deleted by the retention limits.",
         m->jobs_retired_total);
  metric(&o, "cryomamba_held_bytes", "gauge",
         "Preview bytes held only for slow readers.",
         atomic_load(&ctx->held_bytes));
  metric(&o, "cryomamba_slow_readers_dropped_total", "counter",
         "Connections dropped because slow readers held too many bytes.",
         m->slow_readers_dropped);
  metric(&o, "cryomamba_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr could not keep up.",
         srv_log_dropped_total());
  emit(&o,
       "# HELP cryomamba_jobs Jobs by state.\n"
       "# TYPE cryomamba_jobs gauge\n");
  for (int s = 0; s < 5; s++) {
    emit(&o, "cryomamba_jobs{state=\"%s\"} %u\n",
         core_job_state_name((core_job_state_t) s), by_state[s]);
  }
  srv_cluster_metrics(ctx, cluster_metric, &o);
  if (o.err != 0) {
    free(o.buf);
    return o.err;
  }
  *out = o.buf;
  *len = o.len;
  return 0;
}
