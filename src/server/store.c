/* store.c: SQLite job records, the writer thread and its completions. See
 * store.h. Shared between the loop and the writer: the pending queue and the
 * done queue (one mutex, one condition); everything else belongs to one
 * thread at a time (the database: load before the writer starts work, then
 * only the writer). A pending write owns its JSON text and the list of
 * callbacks waiting for it; after the commit it moves to the done queue and
 * the loop runs its callbacks and frees it. */
#include "server/store.h"

#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/list.h"

#define SRV_STORE_BUSY_TIMEOUT_MS 5000

typedef struct waiter_s {
  struct waiter_s* next;
  srv_store_done_cb cb;
  void* arg;
} waiter_t;

typedef struct {
  core_list_t link; /* st->pending, the writer's batch, or st->done */
  char id[40];
  srv_store_table_t table;
  char* text; /* malloc'd JSON, or NULL for a delete */
  waiter_t* waiters;
  int status; /* set by the writer */
} pending_t;

struct srv_store_s {
  sqlite3* db;
  sqlite3_stmt* upsert[SRV_STORE_TABLES];
  sqlite3_stmt* remove[SRV_STORE_TABLES];
  const srv_logger_t* log;
  uv_async_t wake_loop; /* the writer tells the loop: done has entries */
  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t wake;
  core_list_t pending; /* guarded by lock */
  core_list_t done;    /* guarded by lock */
  bool is_stopping;    /* guarded by lock */
  bool is_closed;      /* loop thread */
};


static void pending_free(pending_t* p) {
  while (p->waiters != NULL) {
    waiter_t* w = p->waiters;
    p->waiters = w->next;
    free(w);
  }
  free(p->text);
  free(p);
}


/* Moves every node of `from` to the end of `to`. */
static void list_splice(core_list_t* to, core_list_t* from) {
  while (!core_list_is_empty(from)) {
    core_list_t* node = core_list_front(from);
    core_list_remove(node);
    core_list_push_back(to, node);
  }
}


/* One transaction for the whole batch: a commit (and its fsync) is shared
 * by every write that arrived while the previous one ran. */
static int write_batch(srv_store_t* st, core_list_t* batch) {
  int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, batch) {
    if (rc != SQLITE_OK) {
      break;
    }
    pending_t* p = CORE_CONTAINER_OF(it, pending_t, link);
    sqlite3_stmt* q =
        p->text != NULL ? st->upsert[p->table] : st->remove[p->table];
    sqlite3_bind_text(q, 1, p->id, -1, SQLITE_STATIC);
    if (p->text != NULL) {
      sqlite3_bind_text(q, 2, p->text, -1, SQLITE_STATIC);
    }
    rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(st->db);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK) {
    srv_log(st->log, SRV_LOG_ERROR, "store.commit_failed", "s:error",
            sqlite3_errmsg(st->db), NULL);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return -EIO;
  }
  return 0;
}


static void writer_main(void* arg) {
  srv_store_t* st = arg;
  uv_mutex_lock(&st->lock);
  for (;;) {
    while (core_list_is_empty(&st->pending) && !st->is_stopping) {
      uv_cond_wait(&st->wake, &st->lock);
    }
    if (core_list_is_empty(&st->pending)) {
      break; /* stopping and drained */
    }
    core_list_t batch;
    core_list_init(&batch);
    list_splice(&batch, &st->pending);
    uv_mutex_unlock(&st->lock);
    int status = write_batch(st, &batch);
    core_list_t* it;
    core_list_t* tmp;
    CORE_LIST_FOREACH_SAFE(it, tmp, &batch) {
      CORE_CONTAINER_OF(it, pending_t, link)->status = status;
    }
    uv_mutex_lock(&st->lock);
    list_splice(&st->done, &batch);
    uv_async_send(&st->wake_loop);
  }
  uv_mutex_unlock(&st->lock);
}


/* Loop thread: runs the callbacks of everything the writer finished. */
static void deliver_done(srv_store_t* st) {
  core_list_t done;
  core_list_init(&done);
  uv_mutex_lock(&st->lock);
  list_splice(&done, &st->done);
  uv_mutex_unlock(&st->lock);
  while (!core_list_is_empty(&done)) {
    core_list_t* node = core_list_front(&done);
    core_list_remove(node);
    pending_t* p = CORE_CONTAINER_OF(node, pending_t, link);
    for (waiter_t* w = p->waiters; w != NULL; w = w->next) {
      w->cb(w->arg, p->status);
    }
    pending_free(p);
  }
}


static void on_wake_loop(uv_async_t* handle) {
  deliver_done(handle->data);
}


static void on_wake_closed(uv_handle_t* handle) {
  free(handle->data);
}


static const char* const table_names[SRV_STORE_TABLES] = {"jobs", "uploads",
                                                          "volumes"};


static int drop_old_columns(sqlite3* db, char** msg) {
  sqlite3_stmt* q = NULL;
  int found = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT count(*) FROM pragma_table_xinfo('jobs') "
                         "WHERE name = 'created_at'",
                         -1, &q, NULL) == SQLITE_OK &&
      sqlite3_step(q) == SQLITE_ROW) {
    found = sqlite3_column_int(q, 0);
  }
  sqlite3_finalize(q);
  if (found == 0) {
    return SQLITE_OK;
  }
  return sqlite3_exec(db, "ALTER TABLE jobs DROP COLUMN created_at", NULL, NULL,
                      msg);
}


static int open_db(srv_store_t* st, const char* path, char* err, size_t len) {
  if (sqlite3_open_v2(
          path, &st->db,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
          NULL) != SQLITE_OK) {
    snprintf(err, len, "cannot open %s: %s", path,
             st->db != NULL ? sqlite3_errmsg(st->db) : "out of memory");
    return -1;
  }
  /* A lock held by another process (the sqlite3 shell, a backup, a test)
   * delays a commit by up to this long instead of failing it at once. */
  sqlite3_busy_timeout(st->db, SRV_STORE_BUSY_TIMEOUT_MS);
  /* FULL: a commit is on disk (WAL fsynced) before we acknowledge it; group
   * commit keeps that affordable. */
  /* No column computed from the JSON: one unreadable record must not make
   * the table unreadable (an earlier schema had one; it is dropped). */
  const char* schema =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=FULL;"
      "CREATE TABLE IF NOT EXISTS jobs ("
      "  id TEXT PRIMARY KEY,"
      "  record TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS uploads ("
      "  id TEXT PRIMARY KEY,"
      "  record TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS volumes ("
      "  id TEXT PRIMARY KEY,"
      "  record TEXT NOT NULL);";
  char* msg = NULL;
  int rc = sqlite3_exec(st->db, schema, NULL, NULL, &msg);
  if (rc == SQLITE_OK) {
    rc = drop_old_columns(st->db, &msg);
  }
  for (int t = 0; t < SRV_STORE_TABLES && rc == SQLITE_OK; t++) {
    char sql[160];
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s(id, record) VALUES(?1, ?2) "
             "ON CONFLICT(id) DO UPDATE SET record = ?2",
             table_names[t]);
    rc = sqlite3_prepare_v2(st->db, sql, -1, &st->upsert[t], NULL);
    if (rc == SQLITE_OK) {
      snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id = ?1",
               table_names[t]);
      rc = sqlite3_prepare_v2(st->db, sql, -1, &st->remove[t], NULL);
    }
  }
  if (rc != SQLITE_OK) {
    snprintf(err, len, "cannot prepare %s: %s", path,
             msg != NULL ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}


static void close_db(srv_store_t* st) {
  for (int t = 0; t < SRV_STORE_TABLES; t++) {
    sqlite3_finalize(st->upsert[t]);
    sqlite3_finalize(st->remove[t]);
  }
  sqlite3_close(st->db);
}


int srv_store_open(uv_loop_t* loop,
                   const char* state_dir,
                   const srv_logger_t* log,
                   srv_store_t** out,
                   char* err,
                   size_t err_len) {
  srv_store_t* st = calloc(1, sizeof(*st));
  if (st == NULL) {
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  st->log = log;
  core_list_init(&st->pending);
  core_list_init(&st->done);
  char path[1200];
  snprintf(path, sizeof(path), "%s/jobs.db", state_dir);
  if (open_db(st, path, err, err_len) != 0) {
    close_db(st);
    free(st);
    return -1;
  }
  if (uv_async_init(loop, &st->wake_loop, on_wake_loop) != 0) {
    snprintf(err, err_len, "cannot create the store's wake-up handle");
    close_db(st);
    free(st);
    return -1;
  }
  st->wake_loop.data = st;
  uv_mutex_init(&st->lock);
  uv_cond_init(&st->wake);
  if (uv_thread_create(&st->thread, writer_main, st) != 0) {
    snprintf(err, err_len, "cannot start the store thread");
    close_db(st);
    uv_mutex_destroy(&st->lock);
    uv_cond_destroy(&st->wake);
    uv_close((uv_handle_t*) &st->wake_loop, on_wake_closed);
    return -1;
  }
  *out = st;
  return 0;
}


json_t* srv_store_load_table(srv_store_t* st,
                             srv_store_table_t table,
                             int* bad_records) {
  *bad_records = 0;
  sqlite3_stmt* q = NULL;
  char sql[96];
  snprintf(sql, sizeof(sql), "SELECT id, record FROM %s ORDER BY rowid",
           table_names[table]);
  if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK) {
    return NULL;
  }
  json_t* all = json_array();
  int rc;
  while (all != NULL && (rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char* text = (const char*) sqlite3_column_text(q, 1);
    json_error_t jerr;
    json_t* rec = text != NULL ? json_loads(text, 0, &jerr) : NULL;
    if (rec == NULL || !json_is_object(rec)) {
      srv_log(st->log, SRV_LOG_WARN, "store.bad_record", "s:table",
              table_names[table], "s:id",
              (const char*) sqlite3_column_text(q, 0), "s:error",
              rec == NULL ? jerr.text : "not an object", NULL);
      json_decref(rec);
      (*bad_records)++;
      continue;
    }
    if (json_array_append_new(all, rec) != 0) {
      json_decref(all);
      all = NULL;
    }
  }
  sqlite3_finalize(q);
  return all;
}


static int enqueue(srv_store_t* st,
                   srv_store_table_t table,
                   const char* id,
                   char* text,
                   srv_store_done_cb cb,
                   void* arg) {
  assert(!st->is_closed);
  waiter_t* w = NULL;
  if (cb != NULL && (w = malloc(sizeof(*w))) == NULL) {
    free(text);
    return -ENOMEM;
  }
  if (w != NULL) {
    *w = (waiter_t){NULL, cb, arg};
  }
  uv_mutex_lock(&st->lock);
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &st->pending) {
    pending_t* p = CORE_CONTAINER_OF(it, pending_t, link);
    if (p->table == table && strcmp(p->id, id) == 0) {
      free(p->text); /* superseded before it was written */
      p->text = text;
      if (w != NULL) {
        w->next = p->waiters; /* the newer record covers the older acks */
        p->waiters = w;
      }
      uv_mutex_unlock(&st->lock);
      return 0;
    }
  }
  uv_mutex_unlock(&st->lock);
  pending_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    free(text);
    free(w);
    return -ENOMEM;
  }
  snprintf(p->id, sizeof(p->id), "%s", id);
  p->table = table;
  p->text = text;
  p->waiters = w;
  core_list_init(&p->link);
  uv_mutex_lock(&st->lock);
  core_list_push_back(&st->pending, &p->link);
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
  return 0;
}


int srv_store_put(srv_store_t* st,
                  srv_store_table_t table,
                  const char* id,
                  const json_t* rec,
                  srv_store_done_cb cb,
                  void* arg) {
  char* text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (text == NULL) {
    return -ENOMEM;
  }
  return enqueue(st, table, id, text, cb, arg);
}


int srv_store_remove(srv_store_t* st,
                     srv_store_table_t table,
                     const char* id,
                     srv_store_done_cb cb,
                     void* arg) {
  return enqueue(st, table, id, NULL, cb, arg);
}


int srv_store_save(srv_store_t* st,
                   const char* id,
                   const json_t* rec,
                   srv_store_done_cb cb,
                   void* arg) {
  return srv_store_put(st, SRV_STORE_JOBS, id, rec, cb, arg);
}


int srv_store_delete(srv_store_t* st,
                     const char* id,
                     srv_store_done_cb cb,
                     void* arg) {
  return srv_store_remove(st, SRV_STORE_JOBS, id, cb, arg);
}


bool srv_store_is_open(const srv_store_t* st) {
  return st != NULL && !st->is_closed;
}


void srv_store_close(srv_store_t* st) {
  if (st == NULL || st->is_closed) {
    return;
  }
  st->is_closed = true;
  uv_mutex_lock(&st->lock);
  st->is_stopping = true;
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
  uv_thread_join(&st->thread);
  deliver_done(st);
  close_db(st);
  uv_mutex_destroy(&st->lock);
  uv_cond_destroy(&st->wake);
  uv_close((uv_handle_t*) &st->wake_loop, on_wake_closed);
}


int srv_store_restore_table(srv_store_t* store,
                            srv_store_table_t table,
                            int (*restore)(void* arg, const json_t* rec),
                            void* arg,
                            int* bad_records) {
  json_t* all = srv_store_load_table(store, table, bad_records);
  if (all == NULL) {
    return -1;
  }
  size_t i;
  json_t* rec;
  int restored = 0;
  json_array_foreach(all, i, rec) {
    restored += restore(arg, rec) == 0;
  }
  json_decref(all);
  return restored;
}
