/* fake_ws.h: a scripted WebSocket server for the client library's unit
 * tests: blocking sockets on 127.0.0.1 (port 0), one thread per accepted
 * connection, each connection playing the script of its accept order,
 * speaking just enough RFC 6455 (the handshake, unmasked frames, a close
 * echo). Also messages in the protocol's shapes. Its own threads only
 * touch the script, which the test writes before fake_start(), and its
 * counters, which the test reads after fake_stop(). */
#ifndef TESTS_SUPPORT_FAKE_WS_H
#define TESTS_SUPPORT_FAKE_WS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/preview_bin.h"

#define FAKE_JOB "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define FAKE_TS "2026-11-28T20:00:00.123456Z"
#define FAKE_MAX_CONNS 64

typedef enum {
  ACT_TEXT,       /* one text frame */
  ACT_FRAGMENTS,  /* the text in three fragments */
  ACT_BINARY,     /* one binary frame */
  ACT_CLOSE,      /* a close frame with `code` */
  ACT_DROP,       /* end the TCP connection at once */
  ACT_HANGUP,     /* first act only: close before answering the handshake */
  ACT_AWAIT_TEXT, /* wait until the client sent one more text message */
  ACT_BIG         /* a text message of `big_len` bytes: `text` as its prefix,
                     then filler, then `"}}`, streamed from a small buffer in
                     frames of `frag_len` bytes (0: one frame) */
} act_kind_t;

typedef struct {
  act_kind_t kind;
  char* text; /* owned */
  size_t len;
  uint16_t code;
  uint64_t big_len;
  uint64_t frag_len;
} act_t;

typedef struct {
  act_t* acts; /* grown by fake_add() */
  int count, cap;
} conn_script_t;

typedef struct {
  int listen_fd;
  uint16_t port;
  conn_script_t conns[FAKE_MAX_CONNS];
  int conn_count;  /* scripts written */
  int serve_count; /* connections to serve; 0: conn_count. Connections past
                      the last script replay the last one. */
  pthread_t thread;
  pthread_t handlers[FAKE_MAX_CONNS];
  int accepted; /* read after fake_stop() */
  /* Per accepted connection, read after fake_stop(): the request line's
   * target, and the client's text messages, each followed by '\n'. */
  char targets[FAKE_MAX_CONNS][512];
  char* received[FAKE_MAX_CONNS];
} fake_t;

/* Listens on a free port and starts accepting. */
void fake_start(fake_t* f);

/* Stops accepting, waits for every connection to end, frees the script. */
void fake_stop(fake_t* f);

/* Frees f->received (after fake_stop(), once the test has read it). */
void fake_free_received(fake_t* f);

/* Appends an act to connection `conn`'s script; takes ownership of text. */
void fake_add(fake_t* f, int conn, act_kind_t kind, char* text, uint16_t code);

/* Appends a binary message of `len` bytes (taken over). */
void fake_add_bytes(fake_t* f, int conn, uint8_t* bytes, size_t len);

/* Appends an ACT_BIG: a preview message of `total` bytes with seq `seq`. */
void fake_add_big_preview(fake_t* f,
                          int conn,
                          unsigned seq,
                          uint64_t total,
                          uint64_t frag_len);

/* Message builders; each returns a malloc'd string. */
char* fake_msg(const char* type, unsigned seq, const char* data);
char* fake_connected(unsigned last_seq,
                     const char* shape,
                     int scale,
                     const char* pshape);
char* fake_progress(unsigned seq, double p);
char* fake_completed(unsigned seq);
/* A preview of `shape` (JSON text) whose payload is `n` bytes of value v,
 * or the literal `payload` when not NULL. */
char* fake_preview(unsigned seq,
                   const char* shape,
                   size_t n,
                   uint8_t v,
                   const char* payload);
/* A binary preview (raw or zstd) of 4x4x4 voxels of value v; *len set. */
uint8_t* fake_binary_preview(unsigned seq,
                             core_encoding_t enc,
                             uint8_t v,
                             bool corrupt,
                             size_t* len);

#endif
