/* upload_int.h: what the parts of an upload share: upload_api.c (the
 * public calls), upload.c (the driver that picks the next step, retries,
 * the end), upload_http.c (the tus requests) and upload_http_reply.c (what
 * their answers mean), upload_work.c (file work on the libuv thread pool:
 * open, hash, read a chunk, resume records) and upload_deliver.c (progress
 * and the end, handed to the application). Every field is the client
 * thread's unless its comment names another rule. */
#ifndef CLIENT_UPLOAD_INT_H
#define CLIENT_UPLOAD_INT_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "client/client_int.h"
#include "client/upload_record.h"
#include "net/http_client.h"

typedef struct up_ev_s up_ev_t;     /* upload_deliver.c */
typedef struct up_req_s up_req_t;   /* upload_http_int.h */
typedef struct up_work_s up_work_t; /* upload_work.c */

/* One stream of bytes to the server: the whole file, or one part of a
 * concatenation. */
typedef struct {
  char url[UPLOAD_URL_MAX]; /* its upload's path; "" until created */
  uint64_t start;           /* where it begins in the file */
  uint64_t length;
  uint64_t offset; /* durable bytes of it (valid if is_known) */
  bool is_known;   /* offset is what the server says (else HEAD) */
  bool is_busy;    /* a read or a request of it is in flight */
  uint8_t* buf;    /* one chunk; owned, freed when the stream ends */
  size_t buf_cap;
  bool has_chunk;     /* buf holds [chunk_off, chunk_off + chunk_len) */
  uint64_t chunk_off; /* within the part */
  size_t chunk_len;
  char checksum[160]; /* "Upload-Checksum: ...\r\n" of the chunk, or "" */
  uint64_t in_flight; /* body bytes of the PATCH in flight written */
} up_stream_t;

/* What the application can read at any time (cm_upload_get_info). */
typedef struct {
  pthread_mutex_t mu;
  cm_upload_info_t info;
} up_shared_t;

struct cm_upload_s {
  core_list_t node; /* in client->uploads while on the loop */
  cm_client_t* client;
  /* Immutable once cm_upload_start() returned; any thread. */
  cm_upload_options_t opts; /* strings point into the fields below */
  char path[4096];          /* as given */
  char filename[256];
  char resume_dir[4096]; /* "" when records are off */
  char server[600];      /* the first URL's client_servers_key: the
                            record's key */
  cm_upload_cbs_t cbs;
  void* user_data;
  /* References: the application's (until cm_upload_free), the loop
   * side's (until the done event ran or was skipped), each posted
   * command's (until it ran). */
  atomic_int refs;
  atomic_bool is_user_cancelled; /* cm_upload_cancel: only on_done now */
  atomic_bool is_finished;       /* the done event is out */
  up_shared_t shared;
  up_ev_t* done_ev; /* made at start, so on_done cannot be lost */
  /* Loop side. */
  uv_timer_t timer;     /* retry delays */
  bool is_waiting;      /* the retry timer runs: start nothing new */
  bool is_paused;       /* by cm_upload_pause */
  bool is_pause_told;   /* on_progress(PAUSED) went out */
  bool is_cancelling;   /* by cm_upload_cancel: DELETE, then the end */
  bool is_stopping;     /* by cm_client_stop: the end, record kept */
  bool is_cancel_sent;  /* the DELETEs of a cancel went out */
  bool is_restarting;   /* the layout is dropped once nothing is in flight */
  bool is_over;         /* the outcome is decided: end_status */
  bool is_ending;       /* the end is under way (fd, timer) */
  unsigned ops;         /* pool works and requests in flight */
  bool is_step_busy;    /* a step that is no stream's is in flight */
  core_list_t reqs;     /* up_req_t in flight */
  int end_status;       /* the outcome once is_over */
  cm_reply_t end_reply; /* its envelope, owned */
  bool is_record_kept;  /* the end keeps the record (resumable) */
  /* The file. */
  char abs_path[4096];
  uv_file fd; /* -1 until open */
  uint64_t size;
  int64_t mtime_ns;
  bool is_prepared;
  /* Hashing (sha256 of the whole file, in slices on the pool). */
  EVP_MD_CTX* md;
  uint64_t hashed;
  char sha256[65]; /* "" until known */
  /* Resume record. */
  char record_file[4200];
  upload_record_t* record; /* the last one read or written; owned */
  bool is_record_dirty;    /* what it should say changed */
  bool is_record_busy;     /* a save or a removal is in flight */
  bool is_record_removed;
  /* The server: the one of client->servers the upload's URLs are on
   * (all its requests go there); it moves to the next one when this one
   * cannot be reached (up_fail_over). */
  size_t srv;
  unsigned srv_fails; /* attempts on it in a row that got no answer */
  unsigned failovers;
  bool has_concat;      /* Tus-Extension names concatenation */
  bool is_caps_known;   /* OPTIONS answered (asked only if parallel > 1) */
  bool is_caps_probed;  /* the OPTIONS before hashing ran (its failure is
                           no error: asked again if parallel > 1) */
  uint64_t max_size;    /* Tus-Max-Size; 0: not known */
  bool is_resumed;      /* the layout came from a record */
  uint64_t resumed_at;  /* durable bytes the HEADs of a resume found */
  bool is_resume_told;  /* resumed_at is set */
  bool is_dedup;        /* the server had these bytes at creation */
  unsigned start_overs; /* layouts dropped since the server lost them */
  /* The layout: streams[0..stream_count); a concatenation also has a
   * final upload. */
  up_stream_t streams[UPLOAD_RECORD_MAX_PARTS];
  unsigned stream_count; /* 0: not created yet */
  bool is_concat;
  char final_url[UPLOAD_URL_MAX]; /* concatenation: "" until posted */
  char volume_id[40];             /* once the server names it */
  bool is_dedup_probe_done;       /* concatenation: the probe POST ran */
  unsigned polls;                 /* HEADs of an assembling final */
  bool is_final_retried;          /* a failed final was posted again */
  bool is_next_delete_step;       /* up_http_delete's flag for start() */
  bool is_next_probe;             /* up_http_options's flag for start() */
  unsigned cancel_stage;          /* 0, 1: the final's DELETE, 2: parts' */
  cm_volume_t volume;
  bool has_volume;
  /* Retries. */
  unsigned attempts_in_row; /* failed attempts since the last progress */
  unsigned retries;
  int last_error;
  uint32_t delay_ms;
  /* Progress (upload_deliver.c). */
  cm_upload_phase_t phase;
  cm_upload_phase_t main_phase; /* the last main phase emitted (client.h's
                                   rule: it only moves forward) */
  bool is_interrupted; /* the last phase emitted was PAUSED or RETRYING */
  uint64_t last_emit_ms;
  uint64_t sample_ms[16];
  uint64_t sample_bytes[16];
  unsigned sample_count, sample_next;
  uint64_t bytes_sent; /* body bytes written in all */
};

/* ---- upload.c ---- */

/* Decides the outcome (first call wins): `status`, `reply` (its envelope
 * copied, may be NULL), whether the record is kept; aborts what is in
 * flight. The end follows once nothing is. */
void up_set_over(cm_upload_t* up,
                 int status,
                 const cm_reply_t* reply,
                 bool keep_record);

/* Runs up_advance() from a zero timer (never inside the caller). */
void up_kick(cm_upload_t* up);

/* Stops a retry delay or poll that is running. */
void up_stop_waiting(cm_upload_t* up);

/* Picks and starts what comes next; the one place that does. */
void up_advance(cm_upload_t* up);

/* A step failed with `status` (a libuv/-errno code or CM_E*; `reply` may
 * be NULL): a retry after the backoff, or the end once max_retries failed
 * attempts came in a row. */
void up_retry_later(cm_upload_t* up, int status, const cm_reply_t* reply);

/* Ends the upload with `status` (0 or an error; `reply` copied, may be
 * NULL); `keep_record` keeps the resume record. Takes effect once nothing
 * is in flight. */
void up_fail(cm_upload_t* up,
             int status,
             const cm_reply_t* reply,
             bool keep_record);

/* Polls: nothing new starts for delay_ms (no failure counted). */
void up_wait(cm_upload_t* up, uint32_t delay_ms);

/* Drops the layout (the server no longer knows it, `status`/`reply` say
 * how): create anew; fails after a few such starts. */
void up_start_over(cm_upload_t* up, int status, const cm_reply_t* reply);

/* A request to server `srv` (an index in client->servers) failed with
 * transport error `status`. Moves the upload to the next server of the
 * list when this one cannot be reached (servers.h's rule for a request
 * that is safe to resend, sent or not): at once if none of its bytes are
 * durable there, else after FAILOVER_AFTER attempts in a row without an
 * answer; an upload already created starts over there. True if it moved.
 * The caller still counts the attempt (up_retry_later). */
bool up_fail_over(cm_upload_t* up, size_t srv, int status);

/* Durable bytes of all streams. */
uint64_t up_durable(const cm_upload_t* up);

/* True when every stream's bytes are durable. */
bool up_all_sent(const cm_upload_t* up);

/* The layout into the record (marks it dirty). */
void up_record_layout(cm_upload_t* up);

/* ---- upload_http.c (answers: upload_http_reply.c) ---- */

/* Requests; each counts in up->ops and ends in up_advance(). A probe's
 * OPTIONS may fail without harm: it only tells early what the server
 * takes (Tus-Max-Size: a file over it ends at once, unhashed). */
int up_http_options(cm_upload_t* up, bool is_probe);
int up_http_create(cm_upload_t* up, int stream, bool is_probe);
int up_http_head(cm_upload_t* up, int stream); /* -1: the final upload */
int up_http_patch(cm_upload_t* up, int stream, bool is_empty);
int up_http_final(cm_upload_t* up);
/* Terminates `url`; `is_step`: the next step waits for it (else only the
 * end does), and its answer matters to nothing. */
int up_http_delete(cm_upload_t* up, const char* url, bool is_step);
int up_http_get_volume(cm_upload_t* up);

/* Aborts every request in flight (their ends come later). */
void up_http_abort_all(cm_upload_t* up);

/* ---- upload_work.c ---- */

/* Pool works; each counts in up->ops and ends in up_advance(). */
int up_work_prepare(cm_upload_t* up);
int up_work_hash(cm_upload_t* up);
int up_work_read(cm_upload_t* up, int stream);
int up_work_save_record(cm_upload_t* up);
int up_work_remove_record(cm_upload_t* up);
/* Closes the file (pool), then `cb`. */
int up_work_close(cm_upload_t* up, void (*cb)(cm_upload_t* up));

/* ---- upload_deliver.c ---- */

/* Reports progress in `phase`: at once when the phase changed or `force`,
 * else at most once per progress_interval_ms. Asserts the order of phases
 * (client.h): a step back is the driver's bug. */
void up_emit_progress(cm_upload_t* up, cm_upload_phase_t phase, bool force);

/* The phase the streams' bytes put the upload in: UPLOADING while bytes
 * are left to write, COMPLETING once every byte is written (one stream:
 * the server validates as the last PATCH ends) or durable (a
 * concatenation: its final follows); STARTING (no claim) while a HEAD has
 * to tell first. */
cm_upload_phase_t up_streams_phase(const cm_upload_t* up);

/* Makes up->done_ev. Returns 0 or -ENOMEM. */
int up_done_ev_alloc(cm_upload_t* up);

/* The last event: on_done(status, volume, reply); hands the loop side's
 * reference over to it. */
void up_emit_done(cm_upload_t* up,
                  int status,
                  const cm_volume_t* volume,
                  const cm_reply_t* reply);

/* Copies what cm_upload_get_info shows into up->shared, under its lock. */
void up_info_sync(cm_upload_t* up);

/* Drops one reference; the last frees the upload. Any thread. */
void up_unref(cm_upload_t* up);

#endif
