/* store.h: job, upload and volume records in SQLite (state_dir/jobs.db, WAL,
 * synchronous=FULL), so a restart -- even after kill -9 or a power cut -- loses
 * nothing that was acknowledged. Writes go to a writer thread (the loop never
 * waits on the disk) that commits everything queued in one transaction (group
 * commit) and then reports each write's outcome back on the loop thread,
 * so the caller acknowledges only what is durable. Reads happen once, at
 * start-up, before the loop runs. */
#ifndef SRV_STORE_H
#define SRV_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "server/log.h"

typedef struct srv_store_s srv_store_t;

/* The tables: one record (JSON text) per id in each. */
typedef enum {
  SRV_STORE_JOBS = 0,
  SRV_STORE_UPLOADS = 1, /* incomplete and recently completed uploads */
  SRV_STORE_VOLUMES = 2
} srv_store_table_t;

#define SRV_STORE_TABLES 3

/* Outcome of a save or delete, on the loop thread: status 0 once committed,
 * or a negative errno (-EIO: the commit failed, e.g. the disk is full). */
typedef void (*srv_store_done_cb)(void* arg, int status);

/* Opens (creating) the database and starts the writer thread, whose results
 * are delivered on `loop`. Returns 0 or -1 with a sentence in `err`. */
int srv_store_open(uv_loop_t* loop,
                   const char* state_dir,
                   const srv_logger_t* log,
                   srv_store_t** out,
                   char* err,
                   size_t err_len);

/* Queues the record of job `id` (serialised now; a newer save of the same
 * job replaces an unwritten older one and inherits its callbacks). `cb`
 * (may be NULL) runs on the loop thread after the commit. Returns 0 or
 * -ENOMEM (then cb is not called). */
int srv_store_save(srv_store_t* store,
                   const char* id,
                   const json_t* rec,
                   srv_store_done_cb cb,
                   void* arg);

/* Queues the removal of job `id`'s record; `cb` as for save. */
int srv_store_delete(srv_store_t* store,
                     const char* id,
                     srv_store_done_cb cb,
                     void* arg);

/* Any table: every stored record (oldest first, as inserted) in a new JSON
 * array, the query released (so restoring may write); NULL on error. Call
 * before the loop runs. save and delete are put and remove for jobs. */
json_t* srv_store_load_table(srv_store_t* store,
                             srv_store_table_t table,
                             int* bad_records);
/* Start-up: loads `table` and calls restore(arg, record) for each record,
 * in insertion order, once the query is closed (restoring may write).
 * Returns how many restore() accepted (returned 0), or -1; unreadable
 * records are logged and counted in *bad_records. */
int srv_store_restore_table(srv_store_t* store,
                            srv_store_table_t table,
                            int (*restore)(void* arg, const json_t* rec),
                            void* arg,
                            int* bad_records);

int srv_store_put(srv_store_t* store,
                  srv_store_table_t table,
                  const char* id,
                  const json_t* rec,
                  srv_store_done_cb cb,
                  void* arg);
int srv_store_remove(srv_store_t* store,
                     srv_store_table_t table,
                     const char* id,
                     srv_store_done_cb cb,
                     void* arg);

/* Whether `store` takes writes: false for NULL and from srv_store_close()
 * on (its last callbacks run then, and must queue nothing). */
bool srv_store_is_open(const srv_store_t* store);

/* Commits everything queued, runs the remaining callbacks, stops the thread
 * and closes the database; the store is freed once its wake-up handle has
 * closed. Loop thread, at shutdown. NULL-safe. */
void srv_store_close(srv_store_t* store);

#endif
