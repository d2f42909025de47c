/* log.h: structured logs, one JSON object per line on stderr:
 * {"ts":"...","level":"info","event":"ws.open","job_id":"...",...}.
 * Fields are given as "s:name", const char* / "i:name", int64_t /
 * "f:name", double pairs ending with NULL. Tokens are never logged. */
#ifndef SRV_LOG_H
#define SRV_LOG_H

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

/* Writes one line: the event name, then typed name/value pairs, NULL-ended.
 * Safe from any thread. */
void srv_log(const srv_logger_t* lg,
             srv_log_level_t level,
             const char* event,
             ...);

#endif
