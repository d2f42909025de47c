/* log.h: structured logs, one JSON object per line on stderr:
 * {"ts":"...","level":"info","event":"ws.open","job_id":"...",...}.
 * Fields are given as "s:name", const char* / "i:name", int64_t /
 * "f:name", double pairs ending with NULL. Tokens are never logged.
 *
 * srv_log() never waits for stderr: it formats the line and copies it into
 * a ring of SRV_LOG_RING_BYTES that a logger thread (started by the first
 * line) writes out, whole lines in the order they were queued. A line that
 * does not fit is dropped and counted, and a
 * {"level":"warn","event":"log.dropped","lines":N} line stands in the
 * stream where lines went missing. The ring is written out at exit (for at
 * most 2 s) and, best effort, on SIGABRT and fatal faults. */
#ifndef SRV_LOG_H
#define SRV_LOG_H

#include <stdint.h>

/* Log text held while stderr is slow, about 5000 typical lines. */
#define SRV_LOG_RING_BYTES (1024 * 1024)

typedef enum {
  SRV_LOG_DEBUG = 0,
  SRV_LOG_INFO = 1,
  SRV_LOG_WARN = 2,
  SRV_LOG_ERROR = 3
} srv_log_level_t;

/* Lives in the server context; read-only once threads run. */
typedef struct {
  int min_level;
} srv_logger_t;

/* True when `level` would be written, to skip building expensive fields. */
int srv_log_enabled(const srv_logger_t* lg, srv_log_level_t level);

/* Queues one line: the event name, then typed name/value pairs, NULL-ended.
 * Safe from any thread; never blocks on stderr. */
void srv_log(const srv_logger_t* lg,
             srv_log_level_t level,
             const char* event,
             ...);

/* Waits until every line queued so far is on stderr, at most 2 s (before
 * writing to stderr directly, so the order holds). Any thread. */
void srv_log_flush(void);

/* Lines dropped so far because the ring was full (for /metrics). */
uint64_t srv_log_dropped_total(void);

#endif
