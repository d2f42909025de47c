/* fake_ws.c: the scripted WebSocket server of fake_ws.h. Blocking sockets;
 * the accept thread starts a handler thread per connection. */
#include "fake_ws.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/base64.h"
#include "net/frame.h"
#include "net/ws_handshake.h"

typedef struct {
  fake_t* f;
  int fd;
  int index;
  uint8_t* in; /* client bytes not yet taken as frames */
  size_t in_len;
  bool echoed; /* the client's close frame was answered */
} handler_t;


static bool send_all(int fd, const void* p, size_t n) {
  const char* c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return false;
    }
    c += w;
    n -= (size_t) w;
  }
  return true;
}


static bool send_header(int fd, uint8_t opcode, bool fin, uint64_t n) {
  uint8_t hdr[NET_WS_MAX_HEADER_LEN];
  size_t h = net_ws_header_encode(hdr, opcode, n, NULL);
  if (!fin) {
    hdr[0] &= 0x7f;
  }
  return send_all(fd, hdr, h);
}


static void send_frame(int fd,
                       uint8_t opcode,
                       bool fin,
                       const void* p,
                       size_t n) {
  if (send_header(fd, opcode, fin, n)) {
    send_all(fd, p, n);
  }
}


/* Sends bytes [off, off + n) of an ACT_BIG message: prefix, filler, "}}. */
static bool send_big_range(int fd, const act_t* a, uint64_t off, uint64_t n) {
  static const char suffix[] = "\"}}";
  static char filler[65536];
  if (filler[0] == '\0') {
    memset(filler, 'A', sizeof(filler));
  }
  uint64_t body_end = a->big_len - 3;
  while (n > 0) {
    const char* p;
    uint64_t m;
    if (off < a->len) {
      p = a->text + off;
      m = a->len - off;
    } else if (off < body_end) {
      p = filler;
      m = body_end - off < sizeof(filler) ? body_end - off : sizeof(filler);
    } else {
      p = suffix + (off - body_end);
      m = a->big_len - off;
    }
    m = m < n ? m : n;
    if (!send_all(fd, p, (size_t) m)) {
      return false;
    }
    off += m;
    n -= m;
  }
  return true;
}


static void send_big(int fd, const act_t* a) {
  uint64_t frag = a->frag_len > 0 ? a->frag_len : a->big_len;
  for (uint64_t off = 0; off < a->big_len; off += frag) {
    uint64_t m = a->big_len - off < frag ? a->big_len - off : frag;
    if (!send_header(fd, off == 0 ? NET_WS_OP_TEXT : NET_WS_OP_CONT,
                     off + m == a->big_len, m) ||
        !send_big_range(fd, a, off, m)) {
      return;
    }
  }
}


static bool answer_handshake(int fd, char target[512]) {
  char req[8192];
  size_t got = 0;
  while (got < sizeof(req) - 1) {
    ssize_t r = recv(fd, req + got, sizeof(req) - 1 - got, 0);
    if (r <= 0) {
      return false;
    }
    got += (size_t) r;
    req[got] = '\0';
    if (strstr(req, "\r\n\r\n") != NULL) {
      break;
    }
  }
  sscanf(req, "GET %511s", target);
  char key[64] = "";
  const char* k = strstr(req, "Sec-WebSocket-Key: ");
  if (k != NULL) {
    sscanf(k + 19, "%63[^\r]", key);
  }
  char accept_val[NET_WS_ACCEPT_LEN + 1];
  net_ws_accept_for_key(key, accept_val);
  char resp[256];
  int n = snprintf(resp, sizeof(resp),
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
                   "\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s"
                   "\r\n\r\n",
                   accept_val);
  return send_all(fd, resp, (size_t) n);
}


/* One whole client frame at the start of `in`: a text frame's payload is
 * unmasked and appended to f->received[index]. Returns its length, 0
 * while it is incomplete. */
static size_t take_frame(fake_t* f, int index, uint8_t* in, size_t len) {
  if (len < 2) {
    return 0;
  }
  uint64_t n = in[1] & 0x7f;
  size_t h = 2;
  if (n == 126) {
    if (len < 4) {
      return 0;
    }
    n = (uint64_t) in[2] << 8 | in[3];
    h = 4;
  } else if (n == 127) {
    if (len < 10) {
      return 0;
    }
    n = 0;
    for (int i = 0; i < 8; i++) {
      n = n << 8 | in[2 + i];
    }
    h = 10;
  }
  bool masked = (in[1] & 0x80) != 0;
  size_t m = masked ? 4 : 0;
  if (len < h + m + n) {
    return 0;
  }
  if ((in[0] & 0x0f) == NET_WS_OP_TEXT) {
    char** out = &f->received[index];
    size_t old = *out != NULL ? strlen(*out) : 0;
    *out = realloc(*out, old + (size_t) n + 2);
    cr_assert_not_null(*out);
    for (uint64_t i = 0; i < n; i++) {
      (*out)[old + i] = (char) (in[h + m + i] ^ (masked ? in[h + (i % 4)] : 0));
    }
    (*out)[old + n] = '\n';
    (*out)[old + n + 1] = '\0';
  }
  return h + m + (size_t) n;
}


/* Reads client frames; with `want_text`, until one text frame more was
 * kept, else until the close frame was echoed. False at EOF. */
static bool read_client(handler_t* h, bool want_text) {
  char** rec = &h->f->received[h->index];
  size_t before = *rec != NULL ? strlen(*rec) : 0;
  for (;;) {
    size_t used;
    while (!h->echoed &&
           (used = take_frame(h->f, h->index, h->in, h->in_len)) > 0) {
      if ((h->in[0] & 0x0f) == NET_WS_OP_CLOSE) {
        uint8_t frame[128];
        send_all(h->fd, frame, net_ws_close_frame(frame, 1000, ""));
        h->echoed = true;
      }
      memmove(h->in, h->in + used, h->in_len - used);
      h->in_len -= used;
      if (want_text && *rec != NULL && strlen(*rec) > before) {
        return true;
      }
    }
    uint8_t buf[4096];
    ssize_t r = recv(h->fd, buf, sizeof(buf), 0);
    if (r <= 0) {
      return false;
    }
    if (h->echoed) {
      continue; /* read until EOF */
    }
    h->in = realloc(h->in, h->in_len + (size_t) r);
    cr_assert_not_null(h->in);
    memcpy(h->in + h->in_len, buf, (size_t) r);
    h->in_len += (size_t) r;
  }
}


/* Plays the script; returns false when it ended the connection itself. */
static bool play(handler_t* h, const conn_script_t* s) {
  int fd = h->fd;
  for (int i = 0; i < s->count; i++) {
    const act_t* a = &s->acts[i];
    switch (a->kind) {
    case ACT_TEXT:
      send_frame(fd, NET_WS_OP_TEXT, true, a->text, a->len);
      break;
    case ACT_BINARY:
      send_frame(fd, NET_WS_OP_BINARY, true, a->text, a->len);
      break;
    case ACT_FRAGMENTS: {
      size_t part = a->len / 3 + 1;
      for (size_t off = 0; off < a->len; off += part) {
        size_t m = a->len - off < part ? a->len - off : part;
        send_frame(fd, off == 0 ? NET_WS_OP_TEXT : NET_WS_OP_CONT,
                   off + m == a->len, a->text + off, m);
      }
      break;
    }
    case ACT_BIG:
      send_big(fd, a);
      break;
    case ACT_CLOSE: {
      uint8_t frame[128];
      size_t len = net_ws_close_frame(frame, a->code, "bye");
      send_all(fd, frame, len);
      break;
    }
    case ACT_AWAIT_TEXT:
      if (!read_client(h, true)) {
        return false;
      }
      break;
    case ACT_DROP:
    case ACT_HANGUP:
      return false;
    }
  }
  return true;
}


static void* handler_main(void* arg) {
  handler_t* h = arg;
  fake_t* f = h->f;
  int last = f->conn_count > 0 ? f->conn_count - 1 : 0;
  const conn_script_t* s = &f->conns[h->index < last ? h->index : last];
  bool hangup = s->count > 0 && s->acts[0].kind == ACT_HANGUP;
  if (!hangup && answer_handshake(h->fd, f->targets[h->index]) && play(h, s)) {
    read_client(h, false); /* until the close, echoed, and EOF */
  }
  free(h->in);
  close(h->fd);
  free(h);
  return NULL;
}


static void* accept_main(void* arg) {
  fake_t* f = arg;
  int serve = f->serve_count > 0 ? f->serve_count : f->conn_count;
  while (f->accepted < serve && f->accepted < FAKE_MAX_CONNS) {
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) {
      break;
    }
    handler_t* h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    *h = (handler_t){f, fd, f->accepted, NULL, 0, false};
    cr_assert_eq(
        pthread_create(&f->handlers[f->accepted], NULL, handler_main, h), 0);
    f->accepted++;
  }
  return NULL;
}


void fake_start(fake_t* f) {
  f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(f->listen_fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(f->listen_fd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(listen(f->listen_fd, FAKE_MAX_CONNS), 0);
  socklen_t len = sizeof(a);
  getsockname(f->listen_fd, (struct sockaddr*) &a, &len);
  f->port = ntohs(a.sin_port);
  cr_assert_eq(pthread_create(&f->thread, NULL, accept_main, f), 0);
}


void fake_stop(fake_t* f) {
  shutdown(f->listen_fd, SHUT_RDWR);
  pthread_join(f->thread, NULL);
  close(f->listen_fd);
  for (int c = 0; c < f->accepted; c++) {
    pthread_join(f->handlers[c], NULL);
  }
  for (int c = 0; c < f->conn_count; c++) {
    for (int i = 0; i < f->conns[c].count; i++) {
      free(f->conns[c].acts[i].text);
    }
    free(f->conns[c].acts);
  }
}


void fake_add(fake_t* f, int conn, act_kind_t kind, char* text, uint16_t code) {
  cr_assert_lt(conn, FAKE_MAX_CONNS);
  conn_script_t* s = &f->conns[conn];
  if (s->count == s->cap) {
    s->cap = s->cap > 0 ? 2 * s->cap : 16;
    s->acts = realloc(s->acts, (size_t) s->cap * sizeof(*s->acts));
    cr_assert_not_null(s->acts);
  }
  if (conn + 1 > f->conn_count) {
    f->conn_count = conn + 1;
  }
  s->acts[s->count++] =
      (act_t){kind, text, text != NULL ? strlen(text) : 0, code, 0, 0};
}


void fake_add_bytes(fake_t* f, int conn, uint8_t* bytes, size_t len) {
  fake_add(f, conn, ACT_BINARY, NULL, 0);
  conn_script_t* s = &f->conns[conn];
  s->acts[s->count - 1].text = (char*) bytes;
  s->acts[s->count - 1].len = len;
}


void fake_add_big_preview(fake_t* f,
                          int conn,
                          unsigned seq,
                          uint64_t total,
                          uint64_t frag_len) {
  char* prefix = NULL;
  cr_assert(asprintf(&prefix,
                     "{\"type\":\"preview\",\"job_id\":\"" FAKE_JOB
                     "\",\"seq\":%u,\"timestamp\":\"" FAKE_TS
                     "\",\"data\":{\"scale\":[1,1,1],\"shape\":[4096,4096,"
                     "4096],\"dtype\":\"uint8\",\"payload\":\"",
                     seq) > 0);
  cr_assert_gt(total, strlen(prefix) + 3);
  fake_add(f, conn, ACT_BIG, prefix, 0);
  act_t* a = &f->conns[conn].acts[f->conns[conn].count - 1];
  a->big_len = total;
  a->frag_len = frag_len;
}


char* fake_msg(const char* type, unsigned seq, const char* data) {
  char* s = NULL;
  cr_assert(asprintf(&s,
                     "{\"type\":\"%s\",\"job_id\":\"" FAKE_JOB "\",\"seq\":%u,"
                     "\"timestamp\":\"" FAKE_TS "\",\"data\":%s}",
                     type, seq, data) > 0);
  return s;
}


char* fake_connected(unsigned last_seq,
                     const char* shape,
                     int scale,
                     const char* pshape) {
  char data[512];
  snprintf(data, sizeof(data),
           "{\"state\":\"running\",\"progress\":0.1,\"last_seq\":%u,"
           "\"volume\":{\"shape\":%s,\"voxel_size\":[1,1,1]},"
           "\"preview_shape\":%s,\"params\":{\"preview_scale\":%d,"
           "\"preview_hz\":1.0}}",
           last_seq, shape, pshape, scale);
  return fake_msg("connected", 0, data);
}


char* fake_progress(unsigned seq, double p) {
  char data[256];
  snprintf(data, sizeof(data),
           "{\"progress\":%.2f,\"state\":\"running\",\"message\":\"m\","
           "\"eta_s\":3.5,\"elapsed_s\":1,\"previews_sent\":1}",
           p);
  return fake_msg("progress", seq, data);
}


char* fake_completed(unsigned seq) {
  return fake_msg("completed", seq,
                  "{\"state\":\"completed\",\"artifacts\":[]}");
}


char* fake_preview(unsigned seq,
                   const char* shape,
                   size_t n,
                   uint8_t v,
                   const char* payload) {
  char* b64 = NULL;
  if (payload == NULL) {
    uint8_t* raw = malloc(n + 1);
    cr_assert_not_null(raw);
    memset(raw, v, n);
    b64 = malloc(core_base64_encoded_len(n) + 1);
    cr_assert_not_null(b64);
    core_base64_encode(raw, n, b64);
    free(raw);
    payload = b64;
  }
  size_t cap = strlen(payload) + 512;
  char* data = malloc(cap);
  cr_assert_not_null(data);
  snprintf(data, cap,
           "{\"scale\":[1,1,1],\"shape\":%s,\"dtype\":\"uint8\","
           "\"payload\":\"%s\"}",
           shape, payload);
  char* m = fake_msg("preview", seq, data);
  free(data);
  free(b64);
  return m;
}


uint8_t* fake_binary_preview(unsigned seq,
                             core_encoding_t enc,
                             uint8_t v,
                             bool corrupt,
                             size_t* len) {
  uint8_t voxels[64];
  memset(voxels, v, sizeof(voxels));
  uint8_t payload[256];
  size_t n = sizeof(voxels);
  if (enc == CORE_ENC_ZSTD) {
    long z = core_zstd_compress(voxels, 64, payload, sizeof(payload), 1);
    cr_assert_gt(z, 0);
    n = (size_t) z;
    if (corrupt) {
      payload[n - 1] ^= 0x5a; /* breaks the frame's checksum or content */
      payload[n / 2] ^= 0xa5;
    }
  } else {
    memcpy(payload, voxels, n);
  }
  core_shape_t shape = {{4, 4, 4}};
  uint8_t* out = malloc(CORE_PREVIEW_BIN_HEAD_MAX + n);
  cr_assert_not_null(out);
  int head = core_preview_bin_head(FAKE_JOB, seq, 1795896000123456LL, &shape, 1,
                                   enc, n, out, CORE_PREVIEW_BIN_HEAD_MAX);
  cr_assert_gt(head, 0);
  memcpy(out + head, payload, n);
  *len = (size_t) head + n;
  return out;
}


void fake_free_received(fake_t* f) {
  for (int c = 0; c < FAKE_MAX_CONNS; c++) {
    free(f->received[c]);
    f->received[c] = NULL;
  }
}
