/* store.c: SQLite job records and their writer thread. See store.h. The
 * queue (mutex + condition) is the only state shared between the loop and
 * the writer; the sqlite3 handle is used by one thread at a time (load
 * before the writer starts work, then only the writer). */
#include "server/store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/list.h"

typedef struct {
  core_list_t link;
  char id[40];
  char* text; /* malloc'd JSON */
} pending_t;

struct srv_store_s {
  sqlite3* db;
  sqlite3_stmt* upsert;
  const srv_logger_t* log;
  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t wake;
  core_list_t pending; /* guarded by lock */
  bool is_stopping;    /* guarded by lock */
};


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
    /* Take everything queued; write it in one transaction without the lock. */
    batch.next = st->pending.next;
    batch.prev = st->pending.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    core_list_init(&st->pending);
    uv_mutex_unlock(&st->lock);
    sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL);
    while (!core_list_is_empty(&batch)) {
      core_list_t* node = core_list_front(&batch);
      core_list_remove(node);
      pending_t* p = CORE_CONTAINER_OF(node, pending_t, link);
      sqlite3_bind_text(st->upsert, 1, p->id, -1, SQLITE_STATIC);
      sqlite3_bind_text(st->upsert, 2, p->text, -1, SQLITE_STATIC);
      if (sqlite3_step(st->upsert) != SQLITE_DONE) {
        srv_log(st->log, SRV_LOG_ERROR, "store.write_failed", "s:job_id", p->id,
                "s:error", sqlite3_errmsg(st->db), NULL);
      }
      sqlite3_reset(st->upsert);
      sqlite3_clear_bindings(st->upsert);
      free(p->text);
      free(p);
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
      srv_log(st->log, SRV_LOG_ERROR, "store.commit_failed", "s:error",
              sqlite3_errmsg(st->db), NULL);
    }
    uv_mutex_lock(&st->lock);
  }
  uv_mutex_unlock(&st->lock);
}


int srv_store_open(const char* state_dir,
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
  char path[1200];
  snprintf(path, sizeof(path), "%s/jobs.db", state_dir);
  if (sqlite3_open_v2(
          path, &st->db,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
          NULL) != SQLITE_OK) {
    snprintf(err, err_len, "cannot open %s: %s", path,
             st->db != NULL ? sqlite3_errmsg(st->db) : "out of memory");
    sqlite3_close(st->db);
    free(st);
    return -1;
  }
  const char* schema =
      "PRAGMA journal_mode=WAL;"
      "PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS jobs ("
      "  id TEXT PRIMARY KEY,"
      "  record TEXT NOT NULL,"
      "  created_at TEXT GENERATED ALWAYS AS"
      "    (json_extract(record, '$.created_at')) VIRTUAL);";
  char* msg = NULL;
  if (sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_prepare_v2(st->db,
                         "INSERT INTO jobs(id, record) VALUES(?1, ?2) "
                         "ON CONFLICT(id) DO UPDATE SET record = ?2",
                         -1, &st->upsert, NULL) != SQLITE_OK) {
    snprintf(err, err_len, "cannot prepare %s: %s", path,
             msg != NULL ? msg : sqlite3_errmsg(st->db));
    sqlite3_free(msg);
    sqlite3_close(st->db);
    free(st);
    return -1;
  }
  uv_mutex_init(&st->lock);
  uv_cond_init(&st->wake);
  if (uv_thread_create(&st->thread, writer_main, st) != 0) {
    snprintf(err, err_len, "cannot start the store thread");
    sqlite3_finalize(st->upsert);
    sqlite3_close(st->db);
    uv_mutex_destroy(&st->lock);
    uv_cond_destroy(&st->wake);
    free(st);
    return -1;
  }
  *out = st;
  return 0;
}


int srv_store_load(srv_store_t* st,
                   void (*fn)(const json_t* rec, void* arg),
                   void* arg) {
  sqlite3_stmt* q = NULL;
  if (sqlite3_prepare_v2(st->db,
                         "SELECT id, record FROM jobs ORDER BY created_at", -1,
                         &q, NULL) != SQLITE_OK) {
    return -1;
  }
  int count = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    const char* text = (const char*) sqlite3_column_text(q, 1);
    json_error_t jerr;
    json_t* rec = text != NULL ? json_loads(text, 0, &jerr) : NULL;
    if (rec == NULL) {
      srv_log(st->log, SRV_LOG_WARN, "store.bad_record", "s:job_id",
              (const char*) sqlite3_column_text(q, 0), NULL);
      continue;
    }
    fn(rec, arg);
    json_decref(rec);
    count++;
  }
  sqlite3_finalize(q);
  return count;
}


void srv_store_save(srv_store_t* st, const char* id, const json_t* rec) {
  char* text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (text == NULL) {
    srv_log(st->log, SRV_LOG_ERROR, "store.encode_failed", "s:job_id", id,
            NULL);
    return;
  }
  uv_mutex_lock(&st->lock);
  core_list_t* it;
  core_list_t* tmp;
  CORE_LIST_FOREACH_SAFE(it, tmp, &st->pending) {
    pending_t* p = CORE_CONTAINER_OF(it, pending_t, link);
    if (strcmp(p->id, id) == 0) {
      free(p->text); /* superseded before it was written */
      p->text = text;
      uv_mutex_unlock(&st->lock);
      return;
    }
  }
  pending_t* p = calloc(1, sizeof(*p));
  if (p == NULL) {
    uv_mutex_unlock(&st->lock);
    free(text);
    srv_log(st->log, SRV_LOG_ERROR, "store.out_of_memory", "s:job_id", id,
            NULL);
    return;
  }
  snprintf(p->id, sizeof(p->id), "%s", id);
  p->text = text;
  core_list_init(&p->link);
  core_list_push_back(&st->pending, &p->link);
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
}


void srv_store_close(srv_store_t* st) {
  if (st == NULL) {
    return;
  }
  uv_mutex_lock(&st->lock);
  st->is_stopping = true;
  uv_cond_signal(&st->wake);
  uv_mutex_unlock(&st->lock);
  uv_thread_join(&st->thread);
  sqlite3_finalize(st->upsert);
  sqlite3_close(st->db);
  uv_mutex_destroy(&st->lock);
  uv_cond_destroy(&st->wake);
  free(st);
}
