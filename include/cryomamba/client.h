/* cryomamba/client.h: libcryomamba, the C client of a CryoMamba server
 * (protocol v1, docs/protocol.md): REST calls (health, info, jobs, volumes,
 * preview, artifact download), resumable uploads (tus 1.0.0, checksummed,
 * deduplicated, parallel) and live subscriptions to a job's WebSocket
 * stream with reconnect, strict validation and de-duplication.
 *
 * Threads. A client runs on one libuv loop, the "client thread":
 *  - Caller's thread: cm_client_run() runs the loop until no work is left
 *    (or cm_client_stop()); every call and callback happens on that thread.
 *  - Own thread: cm_client_start_thread() runs the loop on a new thread.
 *    cm_sub_start(), cm_sub_close(), cm_upload_start() and its controls,
 *    the async REST calls and cm_client_stop() may then be called from any
 *    thread (they are handed to the loop). Callbacks run on the client thread,
 * or, when options.dispatch is set, wherever dispatch runs them: with GLib,
 *    dispatch = g_main_context_invoke-style marshalling, so every callback
 *    runs on the GTK main thread, in order.
 *  - The *_sync REST helpers run their own private loop on the calling
 *    thread and may be used from any thread, any time (not from inside a
 *    callback of a caller's-thread client, which would block its loop).
 * No callback ever runs before the call that registered it has returned.
 * SIGPIPE: a client's own thread blocks it, so a server closing while an
 * upload writes is an error, not the end of the process; a caller's-thread
 * client (and the *_sync helpers) need the application to ignore it
 * (signal(SIGPIPE, SIG_IGN)), as the CLI does.
 *
 * Lifetimes follow libuv's rule: what the application gets from the
 * library is the application's until it frees it. A cm_sub_t stays valid
 * until cm_sub_free(), which is allowed once its on_closed has run (from
 * on_closed itself, too) or once cm_client_free() returned; until then
 * cm_sub_close(), cm_sub_job_id() and cm_sub_get_stats() work from any
 * thread at any time, even while the library ends the subscription on its
 * own. Only the application's own calls on one sub must not overlap its
 * cm_sub_free(). A cm_upload_t follows the same rule (on_done instead of
 * on_closed, cm_upload_free instead of cm_sub_free).
 *
 * Errors: functions return 0 or a negative code: -errno / libuv codes
 * (UV_ECONNREFUSED, UV_ETIMEDOUT, ...) or CM_E* below. cm_strerror() names
 * them all. The library never prints; give options.log to see its notes.
 *
 * TLS: https:// and wss:// server URLs (default port 443) speak TLS >= 1.2
 * (OpenSSL). The server's certificate is verified by default against the
 * system trust store, or only against options.tls_ca_file when given, and
 * must name the URL's host (subjectAltName DNS, or IP for an address
 * literal; SNI is sent for names). A refused certificate fails the call
 * with a CM_ETLS_VERIFY range code (cm_strerror: OpenSSL's reason,
 * e.g. "self-signed certificate", "hostname mismatch"); subscriptions and
 * uploads do not retry it. options.tls_insecure_skip_verify turns every
 * check off (testing only). The server itself speaks plain HTTP behind a
 * TLS-terminating proxy (docs/cli.md). */
#ifndef CRYOMAMBA_CLIENT_H
#define CRYOMAMBA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CM_BUILDING_LIBRARY) && defined(__GNUC__)
#define CM_EXPORT __attribute__((visibility("default")))
#else
#define CM_EXPORT
#endif

#define CM_PROTOCOL_VERSION 1

/* Library error codes (all below -9000). */
enum {
  CM_EHTTP = -9201,         /* the server answered an HTTP error (see reply) */
  CM_EUNAUTHORIZED = -9202, /* 401: missing or wrong token */
  CM_ENOTFOUND = -9203,     /* 404: no such job (or route, preview, artifact) */
  CM_ECONFLICT = -9204,     /* 409: job already finished / not completed yet */
  CM_EPROTO = -9205,        /* the server's answer breaks the protocol */
  CM_EBADURL = -9206,       /* server_url is not http://host[:port][/prefix] */
  CM_ETLS = -9207,          /* the TLS handshake failed (not a TLS server,
                               no common version or cipher, an alert) */
  CM_EBADID = -9208,        /* a job id that is not a UUID */
  CM_ECLOSED = -9209,       /* the server ended the subscription for good */
  CM_EGAVEUP = -9210,       /* reconnect attempts exhausted */
  CM_EBADARG = -9211,       /* an argument out of range */
  CM_ECHANGED = -9212,      /* the file changed while it was uploaded */
  CM_ENOTREG = -9213,       /* not a regular file (a pipe, a device, a
                               socket): an upload reads its file more than
                               once; a directory is -EISDIR */
  CM_ETLS_TIMEOUT = -9214,  /* the peer stalled in the TLS handshake (the
                               connect timeout covers it) */
  CM_ECAFILE = -9215,       /* tls_ca_file could not be loaded as PEM */
  CM_ETLS_CLOSED = -9216,   /* the peer closed during the TLS handshake */
  /* The server's certificate was refused: CM_ETLS_VERIFY_BASE - n, n being
   * OpenSSL's X509_V_ERR_* code (1..399), e.g. 18 self-signed, 62 hostname
   * mismatch, 64 IP address mismatch, 10 expired, 20 unknown issuer. */
  CM_ETLS_VERIFY_BASE = -9600
};

/* True for the CM_ETLS_VERIFY range (a certificate refused). */
CM_EXPORT bool cm_is_tls_verify_error(int err);

/* True for every TLS failure: CM_ETLS, CM_ETLS_TIMEOUT, CM_ETLS_CLOSED,
 * CM_ECAFILE and the CM_ETLS_VERIFY range. */
CM_EXPORT bool cm_is_tls_error(int err);

/* A sentence naming `err` (any code returned by this library). */
CM_EXPORT const char* cm_strerror(int err);

/* The library version, e.g. "0.1.0". */
CM_EXPORT const char* cm_version(void);

/* Frees memory the library handed over (preview voxels taken from a
 * callback). NULL-safe. */
CM_EXPORT void cm_free(void* ptr);

/* ------------------------------------------------------------------ */
/* Client */

typedef struct cm_client_s cm_client_t;

typedef enum {
  CM_LOG_DEBUG,
  CM_LOG_INFO,
  CM_LOG_WARN,
  CM_LOG_ERROR
} cm_log_level_t;

/* Runs `fn(arg)` later, on the thread the application wants callbacks on;
 * must run every fn exactly once, in the order given. */
typedef void (*cm_dispatch_fn)(void (*fn)(void*), void* arg, void* user_data);

/* A note from the library (reconnects, dropped messages...), on the
 * client thread, not dispatched. `msg` is borrowed for the call. */
typedef void (*cm_log_cb)(cm_log_level_t level,
                          const char* msg,
                          void* user_data);

/* How previews travel (docs/protocol.md, "Binary previews"). BASE64 is the
 * reference's JSON + base64 text; RAW and ZSTD are the opt-in binary
 * messages (no base64; zstd typically 10-100x smaller for masks). The
 * decoded cm_preview_t is the same whichever is chosen. CHUNKS is the
 * chunked delta extension (docs/protocol.md 11): no on_preview at all; the
 * library keeps the mask itself and reports what changed (on_chunks). */
typedef enum {
  CM_ENCODING_BASE64 = 0,
  CM_ENCODING_RAW,
  CM_ENCODING_ZSTD,
  CM_ENCODING_CHUNKS
} cm_encoding_t;

typedef struct {
  const char* server_url;          /* http[s]://host[:port][/prefix] (ws://
                                      and wss:// too); copied; default
                                      "http://127.0.0.1:8000". Several
                                      servers: a comma-separated list (see
                                      server_urls) */
  const char* token;               /* bearer token or NULL; copied */
  uint32_t connect_timeout_ms;     /* TCP connect + WS handshake; 10000 */
  uint32_t request_timeout_ms;     /* REST: silence before giving up; 30000 */
  uint32_t keepalive_ms;           /* WS: ping after this much silence, give
                                      up after twice it; 20000; 0: off */
  uint32_t reconnect_initial_ms;   /* first reconnect delay; 500 */
  uint32_t reconnect_max_ms;       /* cap of the doubling delay; 30000 */
  uint32_t max_reconnect_attempts; /* reconnect attempts in a row that may
                                      fail (each failed connection counts,
                                      refused at once or lost later) before
                                      on_closed(CM_EGAVEUP): N allows N + 1
                                      connections; 0: never give up */
  uint64_t max_message_bytes;      /* largest WS message kept; a larger one
                                      is discarded as it arrives (never
                                      held whole), counted and reported
                                      (CM_SUB_ERR_SKIPPED), and the
                                      subscription goes on; 1 GiB */
  cm_encoding_t preview_encoding;  /* CM_ENCODING_BASE64 */
  size_t max_body_bytes;           /* largest buffered REST body; 64 MiB */
  cm_dispatch_fn dispatch;         /* NULL: callbacks on the client thread */
  void* dispatch_data;
  cm_log_cb log;
  void* log_data;
  const char* tls_ca_file;       /* https: PEM CA certificates to trust
                                    instead of the system store; NULL:
                                    the system's; read by cm_client_new */
  bool tls_insecure_skip_verify; /* https: accept any certificate for any
                                    name (testing only; warn the user) */
  /* Several servers of one cluster (protocol.md "Clients and several
   * servers"): server_url_count URLs, each one URL (copied; at most 16;
   * an empty or bad one is CM_EBADURL). Count 0: server_url, split at
   * commas. REST calls and subscriptions fail over between them (see the
   * REST calls and cm_sub_start); so do uploads, starting over on the
   * next server (cm_upload_start). TLS
   * verification applies to each (its own host name). */
  const char* const* server_urls;
  size_t server_url_count;
} cm_client_options_t;

/* Fills `opts` with the defaults above. */
CM_EXPORT void cm_client_options_init(cm_client_options_t* opts);

/* Creates a client with its own loop. `opts` may be NULL (defaults) and is
 * copied. Returns 0, CM_EBADURL, CM_ECAFILE (https: tls_ca_file unreadable),
 * CM_EBADARG (a bad token, more than 16 server URLs, a count
 * without server_urls) or -ENOMEM; *out is
 * set on 0. */
CM_EXPORT int cm_client_new(const cm_client_options_t* opts, cm_client_t** out);

/* Runs the loop on the calling thread until no subscription or request is
 * left or cm_client_stop() is called. Returns 0 or a libuv error. Not with
 * cm_client_start_thread(). */
CM_EXPORT int cm_client_run(cm_client_t* client);

/* Runs the loop on a new thread until cm_client_free(). Returns 0 or a
 * libuv error. */
CM_EXPORT int cm_client_start_thread(cm_client_t* client);

/* Closes every subscription (their on_closed callbacks run) and aborts
 * pending requests (their callbacks get UV_ECANCELED); cm_client_run()
 * then returns. Any thread. */
CM_EXPORT void cm_client_stop(cm_client_t* client);

/* Stops the client (as cm_client_stop), joins its thread if any, and frees
 * it. Callbacks still waiting in a dispatch queue are then skipped, not
 * run, on_closed included: free the subscriptions whose on_closed you have
 * not seen with cm_sub_free() after this returns. Not from a callback.
 * NULL-safe. */
CM_EXPORT void cm_client_free(cm_client_t* client);

/* ------------------------------------------------------------------ */
/* Jobs and REST */

typedef enum {
  CM_JOB_UNKNOWN = 0, /* a state this library does not know */
  CM_JOB_QUEUED,
  CM_JOB_RUNNING,
  CM_JOB_COMPLETED,
  CM_JOB_FAILED,
  CM_JOB_CANCELLED
} cm_job_state_t;

/* "queued", "running", ... ("unknown"). */
CM_EXPORT const char* cm_job_state_name(cm_job_state_t state);

/* True for completed, failed and cancelled. */
CM_EXPORT bool cm_job_state_is_terminal(cm_job_state_t state);

/* What to create. Zero fields take the server's defaults; initialise with
 * cm_job_spec_init(). Give at most one of shape, server_path, volume_id. */
typedef struct {
  uint32_t shape[3];       /* Z, Y, X; all 0: server default (or path) */
  double voxel_size[3];    /* Angstrom; 0: server default (or the volume's) */
  const char* server_path; /* volume_path under the server's data root */
  const char* volume_id;   /* an uploaded volume (cm_upload_start); shape
                              and voxel size come from it */
  double preview_hz;       /* 0: default */
  uint32_t preview_scale;  /* 0: default (1) */
  double duration_s;       /* < 0: default (30) */
  int64_t seed;            /* < 0: default (0) */
  const char* pattern;     /* "random", "blobs" or NULL */
  const char* engine;      /* params.engine, or NULL: the server's default */
  const char* preview_downsample; /* "nearest", "max" or NULL: default */
  const char* engine_params;      /* a JSON object's text (params.engine_params)
                                     or NULL; not an object: -EINVAL */
} cm_job_spec_t;

/* Fills `spec` with "server default" everywhere. */
CM_EXPORT void cm_job_spec_init(cm_job_spec_t* spec);

/* A job as the server describes it (the job object, docs/protocol.md 3). */
typedef struct {
  char job_id[40];
  cm_job_state_t state;
  double progress;
  uint32_t shape[3];
  double voxel_size[3];
  uint32_t preview_shape[3];
  double preview_hz;
  uint32_t preview_scale;
  double duration_s;
  int64_t seed;
  char pattern[16];
  uint64_t previews_sent;
  uint64_t artifact_bytes; /* mask.mrc size once completed, else 0 */
  char created_at[32], updated_at[32];
  char error_code[32]; /* errors[0] when failed, else "" */
  /* errors[0]'s message, whole: the server's are up to 1023 bytes (an
   * exec engine's ends with its stderr's last ~600 bytes, newlines
   * kept). ABI: grown from 256 bytes in 0.1.x, so sizeof(cm_job_t) and
   * the layout of cm_reply_t changed; the library is 0.x (soname 0) and
   * keeps no binary compatibility yet: rebuild against this header. */
  char error_message[1024];
  char volume_id[40]; /* the uploaded volume, when the job object names
                         one, else "" */
} cm_job_t;

/* A volume: an uploaded, validated MRC file (docs/protocol.md 2.8). */
typedef struct {
  char volume_id[40];
  char sha256[65];      /* lowercase hex of the whole file */
  uint32_t shape[3];    /* Z, Y, X */
  double voxel_size[3]; /* Angstrom, Z, Y, X */
  int32_t mode;         /* MRC mode: 0 int8, 1 int16, 2 float32, ... */
  double origin[3];
  uint64_t size_bytes; /* the file's size */
  char filename[256];
  char created_at[32];
} cm_volume_t;

/* A REST answer. `body` is the raw response (JSON, NUL-terminated) except
 * for downloads; `error_*` hold the error envelope for HTTP errors. */
typedef struct {
  int http_status; /* 0 when no answer arrived */
  char* body;
  size_t body_len;
  char error_code[48];
  char error_message[256];
  char error_hint[256];
  bool is_retryable;
  cm_job_t job;   /* create, get, cancel (cancel: id and state only) */
  cm_job_t* jobs; /* list: `job_count` jobs, newest first */
  size_t job_count;
  uint64_t bytes;       /* download: bytes written to the file */
  cm_volume_t volume;   /* volume get; an upload's on_done */
  cm_volume_t* volumes; /* volume list: `volume_count`, newest first */
  size_t volume_count;
  char next_cursor[40]; /* lists: the cursor of the next page, "" at the
                           end */
  size_t total;         /* lists: how many the server holds in all */
} cm_reply_t;

/* Releases what a reply holds (body, jobs, volumes); zeroes it. NULL-safe. */
CM_EXPORT void cm_reply_clear(cm_reply_t* reply);

/* An async REST result. `status` is 0 or an error (CM_EHTTP & co. with
 * the envelope in `reply`, a libuv error when the server could not be
 * reached). `reply` is borrowed for the call (copy what you keep). */
typedef void (*cm_reply_cb)(cm_client_t* client,
                            int status,
                            const cm_reply_t* reply,
                            void* user_data);

/* Async REST calls: start and return 0 (cb runs exactly once, later) or a
 * negative error (cb never runs). Any thread once the client runs its own
 * thread, else the client thread. `job_id` must be a UUID (CM_EBADID).
 * Several server_urls: a call starts at the server that last answered and
 * tries each other one at most once when a server cannot be reached
 * (refused, unreachable, timed out or reset before it answered). A call
 * whose bytes were sent is resent only if it is a GET: a create, cancel or
 * delete cut off after sending fails with its error (it may have been
 * done). HTTP answers (4xx, 5xx) stand, except 502/503/504 to a GET. The
 * status is the last server's. */
CM_EXPORT int cm_health(cm_client_t* client, cm_reply_cb cb, void* user_data);
CM_EXPORT int cm_server_info(cm_client_t* client,
                             cm_reply_cb cb,
                             void* user_data);
CM_EXPORT int cm_job_create(cm_client_t* client,
                            const cm_job_spec_t* spec,
                            cm_reply_cb cb,
                            void* user_data);
CM_EXPORT int cm_job_get(cm_client_t* client,
                         const char* job_id,
                         cm_reply_cb cb,
                         void* user_data);
CM_EXPORT int cm_job_list(cm_client_t* client, cm_reply_cb cb, void* user_data);
CM_EXPORT int cm_job_cancel(cm_client_t* client,
                            const char* job_id,
                            cm_reply_cb cb,
                            void* user_data);
/* The latest preview message as JSON (reply->body); decode it with
 * cm_preview_decode(). 404 preview_not_ready is CM_ENOTFOUND, retryable. */
CM_EXPORT int cm_preview_get(cm_client_t* client,
                             const char* job_id,
                             cm_reply_cb cb,
                             void* user_data);
/* Streams artifact `name` (NULL: "mask.mrc") into a new file `path`
 * (written to path.part, renamed when complete, removed on failure). */
CM_EXPORT int cm_artifact_download(cm_client_t* client,
                                   const char* job_id,
                                   const char* name,
                                   const char* path,
                                   cm_reply_cb cb,
                                   void* user_data);

/* Volumes (`volume_id` must be a UUID: CM_EBADID). A list is one page,
 * newest first: `cursor` NULL (first page) or a previous reply's
 * next_cursor; `limit` 0 (server default, 100) or 1..1000. Delete removes
 * the volume and its file (jobs already created keep their results). */
CM_EXPORT int cm_volume_list(cm_client_t* client,
                             const char* cursor,
                             unsigned limit,
                             cm_reply_cb cb,
                             void* user_data);
CM_EXPORT int cm_volume_get(cm_client_t* client,
                            const char* volume_id,
                            cm_reply_cb cb,
                            void* user_data);
CM_EXPORT int cm_volume_delete(cm_client_t* client,
                               const char* volume_id,
                               cm_reply_cb cb,
                               void* user_data);

/* Blocking versions: same requests on a private loop of the calling
 * thread. Return the status the callback would get; `out` is filled
 * (clear it with cm_reply_clear) in every case. */
CM_EXPORT int cm_health_sync(cm_client_t* client, cm_reply_t* out);
CM_EXPORT int cm_server_info_sync(cm_client_t* client, cm_reply_t* out);
CM_EXPORT int cm_job_create_sync(cm_client_t* client,
                                 const cm_job_spec_t* spec,
                                 cm_reply_t* out);
CM_EXPORT int cm_job_get_sync(cm_client_t* client,
                              const char* job_id,
                              cm_reply_t* out);
CM_EXPORT int cm_job_list_sync(cm_client_t* client, cm_reply_t* out);
CM_EXPORT int cm_job_cancel_sync(cm_client_t* client,
                                 const char* job_id,
                                 cm_reply_t* out);
CM_EXPORT int cm_preview_get_sync(cm_client_t* client,
                                  const char* job_id,
                                  cm_reply_t* out);
CM_EXPORT int cm_artifact_download_sync(cm_client_t* client,
                                        const char* job_id,
                                        const char* name,
                                        const char* path,
                                        cm_reply_t* out);
CM_EXPORT int cm_volume_list_sync(cm_client_t* client,
                                  const char* cursor,
                                  unsigned limit,
                                  cm_reply_t* out);
CM_EXPORT int cm_volume_get_sync(cm_client_t* client,
                                 const char* volume_id,
                                 cm_reply_t* out);
CM_EXPORT int cm_volume_delete_sync(cm_client_t* client,
                                    const char* volume_id,
                                    cm_reply_t* out);

/* ------------------------------------------------------------------ */
/* Uploads: a local file becomes a volume (tus 1.0.0, docs/protocol.md 2.7)
 *
 * One cm_upload_t per file, run on the client's loop like a subscription
 * (same threads, dispatch and lifetime rules; see the top of this file).
 * The steps: hash the whole file (sha256, on the libuv thread pool; the
 * server then deduplicates: a file it has already needs no bytes at all)
 * after asking what the server takes (OPTIONS: a file over its
 * Tus-Max-Size ends at once, unhashed, with a 413 payload_too_large
 * envelope; a failed OPTIONS is no error), create the upload, send it in
 * chunks of chunk_bytes (each read and
 * checksummed on the pool, at most `parallel` chunks in memory, each
 * PATCH carrying Upload-Checksum), let the server validate it, and fetch
 * the volume. Failures of the network, 5xx answers, 408, 409 upload_busy,
 * 423 and 429 are retried with exponential backoff and jitter (HEAD tells
 * what is durable; the upload goes on from there); 460 resends the chunk;
 * any other refusal ends the upload with the server's error envelope.
 *
 * Resume: a small JSON record per (absolute path, size, mtime, server)
 * under resume_dir keeps the upload's URLs and the file's sha256. The
 * server is its normalised address, not server_url as typed: host case,
 * an explicit default port (80, 443) and trailing slashes do not matter,
 * http and https are two servers (http://LocalHost:8000/ and
 * http://localhost:8000 are one server); hosts are not resolved (localhost and
 * 127.0.0.1 are two). Starting the same file again (after a crash, a Ctrl-C,
 * cm_client_stop) finds it, asks the server what is durable and goes on; a
 * record whose file changed, or whose upload the server no longer knows, starts
 * over. The record is removed when the upload succeeds, is cancelled, or the
 * server refuses the file (422) or its size (413); it is kept for everything
 * that a later attempt may get past (the network, a token, the quota or a full
 * disk: 507). */

typedef struct cm_upload_s cm_upload_t;

typedef enum {
  CM_CHECKSUM_SHA256 = 0,
  CM_CHECKSUM_SHA1,
  CM_CHECKSUM_NONE
} cm_checksum_t;

typedef enum {
  CM_UPLOAD_STARTING,   /* opening the file, reading the record, asking the
                           server what it has */
  CM_UPLOAD_HASHING,    /* sha256 of the whole file (bytes_done: hashed) */
  CM_UPLOAD_UPLOADING,  /* sending (bytes_done: durable on the server) */
  CM_UPLOAD_COMPLETING, /* every byte is durable; the server validates the
                           MRC and hashes it */
  CM_UPLOAD_PAUSED,     /* cm_upload_pause(): nothing is sent */
  CM_UPLOAD_RETRYING,   /* a failure; the next attempt in delay_ms */
  CM_UPLOAD_DONE        /* the volume exists; on_done follows */
} cm_upload_phase_t;

/* The order of on_progress phases. The main phases only move forward:
 * STARTING -> HASHING -> UPLOADING -> COMPLETING -> DONE (any may be
 * skipped: a resume does not hash, a deduplicated upload sends nothing).
 * PAUSED and RETRYING interrupt them, never after DONE. After an
 * interruption the upload goes on in the main phase it left or a later
 * one, with one exception: from COMPLETING back to UPLOADING when bytes
 * must be sent again (the server lost or refused what the last request
 * carried). That is the only step back, and it only ever follows PAUSED
 * or RETRYING. The library asserts this rule on every event it emits. */

/* "starting", "hashing", "uploading", "completing", "paused", "retrying",
 * "done". */
CM_EXPORT const char* cm_upload_phase_name(cm_upload_phase_t phase);

typedef struct {
  const char* path;              /* the file (copied); required */
  const char* filename;          /* for the server (Upload-Metadata); NULL: the
                                    path's last component; copied */
  unsigned parallel;             /* streams: 1..16; above 1 uses tus
                                    concatenation when the server offers it,
                                    else 1; 1 */
  uint64_t chunk_bytes;          /* bytes per PATCH, the memory per stream;
                                    64 KiB..1 GiB; 16 MiB */
  cm_checksum_t checksum;        /* Upload-Checksum of each PATCH; SHA256 */
  bool hash_first;               /* sha256 the file before sending: the server
                                    deduplicates and checks it; true */
  unsigned max_retries;          /* failed attempts in a row (no byte made
                                    durable in between) before on_done with the
                                    last error; 10; 0: never give up */
  uint32_t retry_initial_ms;     /* first retry delay; 500 */
  uint32_t retry_max_ms;         /* cap of the doubling delay; 30000 */
  bool resume;                   /* read and write resume records; true */
  const char* resume_dir;        /* NULL: $XDG_STATE_HOME/cryomamba/uploads,
                                    else ~/.local/state/cryomamba/uploads
                                    (made 0700); copied */
  uint32_t progress_interval_ms; /* on_progress at most this often (phase
                                    changes always); 200; 0: every event */
} cm_upload_options_t;

/* Fills `opts` with the defaults above (path NULL). */
CM_EXPORT void cm_upload_options_init(cm_upload_options_t* opts);

typedef struct {
  cm_upload_phase_t phase;
  uint64_t bytes_done;  /* HASHING: hashed; otherwise durable */
  uint64_t bytes_sent;  /* durable + written to the server in flight */
  uint64_t bytes_total; /* the file's size */
  double rate_bps;      /* bytes/s over the last few seconds; 0: unknown */
  double eta_s;         /* seconds left in this phase; < 0: unknown */
  unsigned retries;     /* failed attempts retried so far */
  unsigned streams;     /* parallel streams in use */
  int last_error;       /* RETRYING: what failed */
  uint32_t delay_ms;    /* RETRYING: wait before the next attempt */
} cm_upload_progress_t;

/* Callbacks; pointers are borrowed for the call. */
typedef struct {
  void (*on_progress)(cm_upload_t* up,
                      const cm_upload_progress_t* p,
                      void* user);
  /* Last callback, exactly once (unless cm_client_free skips it): status
   * 0 with `volume`; UV_ECANCELED after cm_upload_cancel (the upload is
   * terminated on the server, the record removed) or cm_client_stop (the
   * record is kept: starting again resumes); CM_EHTTP & co with the
   * server's envelope in `reply` (e.g. 422 invalid_volume: not an MRC
   * file); CM_ECHANGED; a libuv or -errno error (file unreadable, server
   * unreachable after max_retries: the record is kept). `volume` is NULL
   * unless status is 0; `reply` is never NULL. */
  void (*on_done)(cm_upload_t* up,
                  int status,
                  const cm_volume_t* volume,
                  const cm_reply_t* reply,
                  void* user);
} cm_upload_cbs_t;

/* Starts uploading opts->path; no callback runs before this returns.
 * Returns 0, CM_EBADARG (no path, an option out of range) or -ENOMEM; on
 * 0, *out is the application's until cm_upload_free(). Any thread with an
 * own-thread client; with a caller's-thread client, cm_client_run() runs
 * it to its end. With several server URLs it fails over, starting over on
 * the next server (protocol.md §5.8; cm_upload_info_t says where). */
CM_EXPORT int cm_upload_start(cm_client_t* client,
                              const cm_upload_options_t* opts,
                              const cm_upload_cbs_t* cbs,
                              void* user_data,
                              cm_upload_t** out);

/* Stops sending: the request in flight is aborted (the server keeps what
 * is durable), then on_progress(PAUSED) once. Idempotent; no-op once
 * done. This and the two below: any thread with an own-thread client, any
 * time before cm_upload_free() (after on_done or cm_client_free() they do
 * nothing). */
CM_EXPORT void cm_upload_pause(cm_upload_t* up);

/* Goes on after cm_upload_pause(): HEAD, then the rest. */
CM_EXPORT void cm_upload_resume(cm_upload_t* up);

/* Ends the upload: aborts what is in flight, terminates it on the server
 * (tus DELETE), removes the resume record, then on_done(UV_ECANCELED).
 * Idempotent; no-op once on_done has run. */
CM_EXPORT void cm_upload_cancel(cm_upload_t* up);

/* Frees an upload whose on_done has run (also from on_done), or any upload
 * of a client after cm_client_free() returned. NULL-safe. Freeing one
 * that is still running aborts (an assertion). */
CM_EXPORT void cm_upload_free(cm_upload_t* up);

/* What an upload has found out, a consistent snapshot; any thread. */
typedef struct {
  uint64_t size;        /* the file's size (0 until known) */
  bool is_resumed;      /* went on from a resume record */
  uint64_t resumed_at;  /* durable bytes found then */
  bool is_deduplicated; /* the server had these bytes: none were sent */
  unsigned streams;     /* 1, or the parts of a concatenation */
  uint64_t bytes_sent;  /* body bytes this cm_upload_t wrote */
  unsigned retries;
  char sha256[65];      /* once hashed, else "" */
  char upload_url[256]; /* the upload's path on the server (the final
                           one for a concatenation), once created */
  char server[600];     /* the server it is on (http[s]://host:port[/p]) */
  unsigned failovers;   /* moves to the next server of the list (each one
                           started the upload over there) */
} cm_upload_info_t;

CM_EXPORT void cm_upload_get_info(const cm_upload_t* up, cm_upload_info_t* out);

/* ------------------------------------------------------------------ */
/* Previews */

/* A decoded, validated preview. */
typedef struct {
  uint64_t seq;
  int64_t timestamp_us; /* server time, Unix microseconds */
  uint32_t shape[3];    /* Z, Y, X of the preview */
  uint32_t scale[3];    /* downsampling factor per axis */
  const char* dtype;    /* "uint8" */
  uint8_t* voxels;      /* C order, shape[0]*shape[1]*shape[2] bytes */
  size_t len;
} cm_preview_t;

/* Decodes a preview message (`json`, `len` bytes) with the checks of a
 * subscription: envelope, dtype, base64 decoding to exactly prod(shape)
 * bytes, and, when volume_shape is not NULL, shape == ceil(volume/scale).
 * On 0, out->voxels is malloc'd (release with cm_free). Returns 0,
 * CM_EPROTO (with a sentence in `err`) or -ENOMEM. */
CM_EXPORT int cm_preview_decode(const char* json,
                                size_t len,
                                const uint32_t volume_shape[3],
                                cm_preview_t* out,
                                char* err,
                                size_t err_len);

/* ------------------------------------------------------------------ */
/* Subscriptions: /ws/jobs/{id} */

typedef struct cm_sub_s cm_sub_t;

typedef enum {
  CM_CONN_CONNECTING,   /* a connection attempt started */
  CM_CONN_OPEN,         /* handshake done, `connected` received */
  CM_CONN_RECONNECTING, /* lost; next attempt in delay_ms */
  CM_CONN_CLOSED        /* for good; on_closed follows */
} cm_conn_state_t;

/* "connecting", "open", "reconnecting", "closed". */
CM_EXPORT const char* cm_conn_state_name(cm_conn_state_t state);

typedef struct {
  cm_conn_state_t state;
  unsigned attempt;    /* 0 for the first connection, then 1, 2, ... for
                          consecutive reconnect attempts; back to 0 after a
                          connection that reached OPEN */
  uint32_t delay_ms;   /* RECONNECTING: wait before the attempt */
  int reason;          /* what ended the last connection (0: none) */
  uint16_t close_code; /* its WebSocket close code, 0 if none */
} cm_conn_event_t;

/* The `connected` message: the job's state when the (re)connection began. */
typedef struct {
  cm_job_state_t state;
  double progress;
  uint64_t last_seq;
  uint32_t shape[3];
  double voxel_size[3];
  uint32_t preview_shape[3];
  uint32_t preview_scale;
  double preview_hz;
  bool is_reconnect; /* false for the first connection */
} cm_connected_t;

typedef struct {
  uint64_t seq;
  int64_t timestamp_us;
  double progress; /* 0..1 */
  cm_job_state_t state;
  const char* message; /* "" if none */
  double eta_s;        /* < 0 when unknown */
  double elapsed_s;
  uint64_t previews_sent;
} cm_progress_t;

typedef struct {
  uint64_t seq;
  int64_t timestamp_us;
  cm_job_state_t state;
  cm_job_state_t previous;
} cm_state_change_t;

typedef struct {
  uint64_t seq;
  int64_t timestamp_us;
  cm_job_state_t state; /* completed, cancelled or failed */
  double progress;
  uint64_t artifact_bytes; /* completed: size of mask.mrc */
  const char* data_json;   /* the message's data object, as JSON */
} cm_finished_t;

typedef enum {
  CM_SUB_ERR_JOB,     /* the job failed (terminal; seq >= 1) */
  CM_SUB_ERR_SERVER,  /* the server replied with an error (seq 0) */
  CM_SUB_ERR_INVALID, /* a message failed validation; it was dropped */
  CM_SUB_ERR_UNKNOWN, /* a message of an unknown type; it was skipped */
  CM_SUB_ERR_SKIPPED  /* a message over max_message_bytes (in protocol v1
                         only previews grow so large), or one there was no
                         memory for, was discarded unread; seq is its seq
                         when its first bytes show it, else 0 */
} cm_sub_err_kind_t;

typedef struct {
  cm_sub_err_kind_t kind;
  uint64_t seq;
  int64_t timestamp_us;
  const char* code;    /* protocol code ("interrupted", ...) or the
                          message type for UNKNOWN; "" if none */
  const char* message; /* a sentence */
  const char* hint;    /* "" if none */
  bool is_retryable;
} cm_sub_error_t;

/* One chunk a delta changed: its level, grid coordinates and the box it
 * covers in that level's voxels (half-open, Z Y X). */
typedef struct {
  uint32_t scale; /* the chunk's level: 1, 2, 4, 8 or 16 */
  uint32_t c[3];  /* cz, cy, cx */
  uint32_t lo[3], hi[3];
} cm_chunk_ref_t;

/* CM_ENCODING_CHUNKS: the chunks of one delta message were applied to the
 * library's masks (docs/protocol.md 11.3). When is_complete, the mask at
 * `scale` (and, at plane_scale, the chunks the view cuts) is the server's
 * at `seq`. Read the masks with cm_sub_chunk_mask() inside on_chunks. */
typedef struct {
  uint64_t seq;
  int64_t timestamp_us;
  const char* epoch; /* the server's chunk table */
  bool is_keyframe;  /* every mask was zeroed before these chunks */
  bool is_complete;
  uint32_t scale;       /* the connection's level */
  uint32_t shape[3];    /* its shape: ceil(volume / scale) */
  uint32_t plane_scale; /* the view's level, 0 without a view */
  size_t chunk_count;
  const cm_chunk_ref_t* chunks; /* chunk_count changed chunks, in order */
} cm_chunks_t;

/* Every pointer in an event is borrowed for the call, except that
 * on_preview may take preview->voxels (set it to NULL; cm_free it later). */
typedef struct {
  void (*on_state)(cm_sub_t* sub, const cm_conn_event_t* ev, void* user);
  void (*on_connected)(cm_sub_t* sub, const cm_connected_t* ev, void* user);
  void (*on_progress)(cm_sub_t* sub, const cm_progress_t* ev, void* user);
  void (*on_job_state)(cm_sub_t* sub, const cm_state_change_t* ev, void* user);
  void (*on_preview)(cm_sub_t* sub, cm_preview_t* ev, void* user);
  /* completed and cancelled (state says which) */
  void (*on_finished)(cm_sub_t* sub, const cm_finished_t* ev, void* user);
  void (*on_error)(cm_sub_t* sub, const cm_sub_error_t* ev, void* user);
  /* CM_ENCODING_CHUNKS only: after each delta's chunks were applied. */
  void (*on_chunks)(cm_sub_t* sub, const cm_chunks_t* ev, void* user);
  /* Last callback of the subscription, exactly once (unless
   * cm_client_free skips it): status 0 (cm_sub_close or the job ended),
   * CM_EGAVEUP, CM_ECLOSED (4404, 4000, 4401...), CM_ENOTFOUND,
   * CM_EUNAUTHORIZED or CM_EPROTO. The sub stays valid until you
   * cm_sub_free() it, here or later. */
  void (*on_closed)(cm_sub_t* sub, int status, void* user);
} cm_sub_cbs_t;

/* Subscribes to job `job_id` (copied) with callbacks `cbs` (copied; NULL
 * members are skipped). Reconnects on its own (backoff with jitter) and
 * delivers each job event once, in seq order. Several server URLs: the
 * first connection goes to the server that last answered, each reconnect
 * attempt to the next URL in turn (an HTTP 4xx or close 4404/4401 from any
 * one still ends the sub); the new server's `connected` and replay carry
 * the job on (chunks: since/epoch, or a keyframe when its epoch differs). It
 * closes itself after the job's terminal message (completed, cancelled or a job
 * error). Returns 0, CM_EBADID or -ENOMEM. On 0, *out is the application's:
 * valid until cm_sub_free(), to be called after on_closed (see the top of this
 * file). With an own-thread client, may be called from any thread. */
CM_EXPORT int cm_sub_start(cm_client_t* client,
                           const char* job_id,
                           const cm_sub_cbs_t* cbs,
                           void* user_data,
                           cm_sub_t** out);

/* Per subscription choices; cm_sub_options_init() fills the defaults. */
typedef struct {
  cm_encoding_t encoding;  /* BASE64 (the default of cm_sub_options_init;
                              cm_sub_start takes options.preview_encoding) */
  uint32_t scale;          /* CHUNKS: the level to receive, 1, 2, 4, 8 or 16;
                              0: the server's default (the largest <= the
                              job's preview_scale) */
  uint64_t max_mask_bytes; /* CHUNKS: the dense masks the library may hold
                              (the level's and the plane level's); a delta
                              needing more ends the sub with an error
                              "mask_too_large" (ask a larger scale). 0: no
                              bound. Default 2 GiB. */
} cm_sub_options_t;

CM_EXPORT void cm_sub_options_init(cm_sub_options_t* opts);

/* cm_sub_start with `opts` (copied; NULL: the client's preview_encoding,
 * scale 0). Returns what cm_sub_start does, or CM_EBADARG (an encoding or
 * scale out of range). */
CM_EXPORT int cm_sub_start_opts(cm_client_t* client,
                                const char* job_id,
                                const cm_sub_options_t* opts,
                                const cm_sub_cbs_t* cbs,
                                void* user_data,
                                cm_sub_t** out);

/* CM_ENCODING_CHUNKS: the planes shown, as full-resolution indices (-1: that
 * plane is not shown; all -1: no view) and the zoom (screen pixels per
 * voxel, > 0; 0: 1). The server then also sends, at the plane level, every
 * chunk those planes cut (docs/protocol.md 11.2). Kept and sent again after
 * each reconnect. Returns 0, CM_EBADARG (not a chunks sub, an index below
 * -1, a zoom < 0 or not finite) or -ENOMEM. Any thread, like
 * cm_sub_close(); after the sub ended it does nothing. */
CM_EXPORT int cm_sub_set_view(cm_sub_t* sub,
                              int64_t z,
                              int64_t y,
                              int64_t x,
                              double zoom);

/* CM_ENCODING_CHUNKS, only inside on_chunks: the library's dense mask of
 * level `scale` (C order Z Y X, shape written to shape[3]) or NULL when no
 * delta brought that level. Borrowed for the callback: the library writes
 * the mask between callbacks, so copy what you keep. Without a dispatch
 * hook it is exactly the state after the event's delta; with one, the
 * client thread may have applied later chunks already (a later on_chunks
 * names them). */
CM_EXPORT const uint8_t* cm_sub_chunk_mask(const cm_sub_t* sub,
                                           uint32_t scale,
                                           uint32_t shape[3]);

/* Ends the subscription: no callback but on_closed runs after this (on the
 * callback thread), unless on_closed has run already. Idempotent; any time
 * before cm_sub_free(), even after on_closed or cm_client_free(); any
 * thread with an own-thread client. */
CM_EXPORT void cm_sub_close(cm_sub_t* sub);

/* Frees a subscription whose on_closed has run (it may be called inside
 * on_closed), or any subscription of a client after cm_client_free()
 * returned. Any thread, not overlapping another call on `sub`. NULL-safe.
 * Freeing a subscription that is still running aborts (an assertion). */
CM_EXPORT void cm_sub_free(cm_sub_t* sub);

/* The subscription's job id. */
CM_EXPORT const char* cm_sub_job_id(const cm_sub_t* sub);

/* Counters. cm_sub_get_stats() copies a consistent snapshot; any thread. */
typedef struct {
  uint64_t messages;         /* delivered to callbacks */
  uint64_t duplicates;       /* dropped as already seen (seq) */
  uint64_t rejected;         /* failed validation */
  uint64_t bytes;            /* WebSocket message bytes received */
  uint64_t wire_bytes;       /* bytes read from the connections: handshakes,
                                frame headers and messages (for wss://, the
                                bytes inside TLS) */
  unsigned reconnects;       /* successful reconnections */
  uint64_t last_seq;         /* highest job event seq delivered */
  uint64_t previews_skipped; /* messages skipped unread (CM_SUB_ERR_SKIPPED);
                                their bytes count in `bytes` */
} cm_sub_stats_t;

CM_EXPORT void cm_sub_get_stats(const cm_sub_t* sub, cm_sub_stats_t* out);

#ifdef __cplusplus
}
#endif

#endif
