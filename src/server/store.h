/* store.h: job records in SQLite (state_dir/jobs.db), so a restart loses
 * nothing. Writes go to a writer thread in order (the loop never waits on
 * the disk); reads happen once, at start-up. */
#ifndef SRV_STORE_H
#define SRV_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "server/log.h"

typedef struct srv_store_s srv_store_t;

/* Opens (creating) the database and starts the writer thread. Returns 0 or
 * -1 with a sentence in `err`. */
int srv_store_open(const char* state_dir,
                   const srv_logger_t* log,
                   srv_store_t** out,
                   char* err,
                   size_t err_len);

/* Calls fn(record) for every stored job record, oldest first. Call before
 * any save. Returns the number of records or -1. */
int srv_store_load(srv_store_t* store,
                   void (*fn)(const json_t* rec, void* arg),
                   void* arg);

/* Queues the record of job `id` for writing (serialised now; a newer save
 * of the same job replaces an unwritten older one). */
void srv_store_save(srv_store_t* store, const char* id, const json_t* rec);

/* Writes everything queued, stops the thread, closes the database. */
void srv_store_close(srv_store_t* store);

#endif
