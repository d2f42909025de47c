/* test_client_upload.c: libcryomamba's uploads (cm_upload_*) against the
 * real cryomambad (started per test on port 0 with a fresh state dir; its
 * path in $CRYOMAMBA_SERVER_BIN): an upload ends in on_done exactly once
 * with the volume whose sha256 is the file's, every callback on the
 * dispatch thread and none before cm_upload_start returned; the same file
 * again sends nothing (dedup); pause mid-upload gives one PAUSED and no
 * more bytes until resume; cancel ends in UV_ECANCELED and removes the
 * record; the server's refusal of a non-MRC file comes back as its
 * envelope; cm_client_free mid-upload keeps the record and a new upload
 * resumes from it; a file changed mid-upload ends it (CM_ECHANGED); a
 * body refused while it is written (a scripted server answering 413 and
 * closing) is an error, with SIGPIPE blocked on the client's thread; a
 * caller's-thread client runs an upload to its end. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/mrc.h"
#include "cryomamba/client.h"

/* ---- a real server ---- */

typedef struct {
  pid_t pid;
  unsigned port;
  char dir[64]; /* state, data and resume records below it */
  char url[64];
  char resume_dir[128];
} server_t;


static void server_start(server_t* s) {
  const char* bin = getenv("CRYOMAMBA_SERVER_BIN");
  if (bin == NULL || access(bin, X_OK) != 0) {
    cr_skip_test("CRYOMAMBA_SERVER_BIN is not set to the server binary");
  }
  snprintf(s->dir, sizeof(s->dir), "/tmp/cm-upload-XXXXXX");
  cr_assert_not_null(mkdtemp(s->dir));
  char state[128], data[128];
  snprintf(state, sizeof(state), "%s/state", s->dir);
  snprintf(data, sizeof(data), "%s/data", s->dir);
  snprintf(s->resume_dir, sizeof(s->resume_dir), "%s/records", s->dir);
  mkdir(data, 0700);
  int out[2];
  cr_assert_eq(pipe(out), 0);
  s->pid = fork();
  cr_assert_geq(s->pid, 0);
  if (s->pid == 0) {
    dup2(out[1], 1);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    close(out[0]);
    execl(bin, bin, "--port", "0", "--state-dir", state, "--data-root", data,
          (char*) NULL);
    _exit(127);
  }
  close(out[1]);
  /* "listening on http://127.0.0.1:PORT" within 20 s. */
  char line[256];
  size_t len = 0;
  struct pollfd p = {.fd = out[0], .events = POLLIN};
  while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
    cr_assert_gt(poll(&p, 1, 20000), 0, "the server did not start");
    ssize_t n = read(out[0], line + len, sizeof(line) - 1 - len);
    cr_assert_gt(n, 0, "the server exited");
    len += (size_t) n;
    line[len] = '\0';
  }
  close(out[0]);
  const char* colon = strrchr(line, ':');
  cr_assert_not_null(colon, "%s", line);
  s->port = (unsigned) strtoul(colon + 1, NULL, 10);
  cr_assert_gt(s->port, 0);
  snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%u", s->port);
}


static void server_stop(server_t* s) {
  kill(s->pid, SIGTERM);
  int st;
  waitpid(s->pid, &st, 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
  cr_assert_eq(system(cmd), 0);
}


/* ---- files ---- */

/* A float32 MRC of shape z,y,x with pseudo-random voxels of `seed`; its
 * sha256 (hex) into sha. */
static void write_mrc(const char* path,
                      unsigned z,
                      unsigned y,
                      unsigned x,
                      unsigned seed,
                      char sha[65]) {
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape.d[0] = z;
  h.shape.d[1] = y;
  h.shape.d[2] = x;
  h.mode = CORE_MRC_MODE_FLOAT32;
  h.voxel_size[0] = h.voxel_size[1] = h.voxel_size[2] = 2.5;
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, header);
  FILE* f = fopen(path, "wb");
  cr_assert_not_null(f);
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  cr_assert_eq(fwrite(header, 1, sizeof(header), f), sizeof(header));
  EVP_DigestUpdate(md, header, sizeof(header));
  size_t row = (size_t) x;
  float* buf = malloc(row * sizeof(float));
  uint32_t r = seed * 2654435761u + 1;
  for (size_t i = 0; i < (size_t) z * y; i++) {
    for (size_t k = 0; k < row; k++) {
      r = r * 1664525u + 1013904223u;
      buf[k] = (float) (r >> 8) / 16777216.0f;
    }
    cr_assert_eq(fwrite(buf, sizeof(float), row, f), row);
    EVP_DigestUpdate(md, buf, row * sizeof(float));
  }
  free(buf);
  fclose(f);
  uint8_t d[32];
  unsigned dlen = 0;
  EVP_DigestFinal_ex(md, d, &dlen);
  EVP_MD_CTX_free(md);
  for (unsigned i = 0; i < 32; i++) {
    snprintf(sha + 2 * i, 3, "%02x", d[i]);
  }
}


static int count_records(const char* dir) {
  DIR* d = opendir(dir);
  if (d == NULL) {
    return 0;
  }
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    n += strstr(e->d_name, ".json") != NULL;
  }
  closedir(d);
  return n;
}


/* ---- a dispatch thread: the GTK main thread's stand-in ---- */

typedef struct dq_item_s {
  void (*fn)(void*);
  void* arg;
  struct dq_item_s* next;
} dq_item_t;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dq_item_t *head, *tail;
  bool is_stopping;
  pthread_t thread;
} dq_t;


static void dq_dispatch(void (*fn)(void*), void* arg, void* user) {
  dq_t* q = user;
  dq_item_t* it = calloc(1, sizeof(*it));
  it->fn = fn;
  it->arg = arg;
  pthread_mutex_lock(&q->mu);
  if (q->tail != NULL) {
    q->tail->next = it;
  } else {
    q->head = it;
  }
  q->tail = it;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}


static void* dq_main(void* arg) {
  dq_t* q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->head == NULL && !q->is_stopping) {
      pthread_cond_wait(&q->cv, &q->mu);
    }
    if (q->head == NULL) {
      break;
    }
    dq_item_t* it = q->head;
    q->head = it->next;
    if (q->head == NULL) {
      q->tail = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    it->fn(it->arg);
    free(it);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}


static void dq_start(dq_t* q) {
  memset(q, 0, sizeof(*q));
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  cr_assert_eq(pthread_create(&q->thread, NULL, dq_main, q), 0);
}


static void dq_stop(dq_t* q) {
  pthread_mutex_lock(&q->mu);
  q->is_stopping = true;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
}


/* ---- what the callbacks saw ---- */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_bool is_started; /* cm_upload_start returned */
  bool early;             /* a callback before that */
  pthread_t want_thread;
  bool check_thread;
  bool wrong_thread;
  bool sigpipe_unblocked; /* seen on the client thread */
  int done;
  int status;
  cm_volume_t volume;
  char error_code[48];
  int http_status;
  int progress;
  int paused;
  int after_cancel; /* progress after cm_upload_cancel */
  bool is_cancelled;
  unsigned phases;              /* bit per phase seen */
  cm_upload_phase_t order[512]; /* each change of phase, in order */
  int order_len;
  uint64_t durable_at_pause;
  uint64_t max_durable;
  uint64_t durable_after_pause; /* most seen while paused */
  /* Actions taken from on_progress (on the callback thread). */
  cm_upload_t* up;
  bool pause_when_durable;
  bool cancel_when_durable;
  bool acted;
} seen_t;


static void seen_init(seen_t* s) {
  memset(s, 0, sizeof(*s));
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  atomic_init(&s->is_started, false);
}


static void note(seen_t* s) {
  if (!atomic_load(&s->is_started)) {
    s->early = true;
  }
  if (s->check_thread && !pthread_equal(pthread_self(), s->want_thread)) {
    s->wrong_thread = true;
  }
}


static void on_progress(cm_upload_t* up,
                        const cm_upload_progress_t* p,
                        void* user) {
  seen_t* s = user;
  pthread_mutex_lock(&s->mu);
  note(s);
  s->progress++;
  /* Without a dispatch hook this runs on the client's own thread, which
   * keeps SIGPIPE blocked (a server closing mid-body must not kill us). */
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  if (!s->check_thread && !sigismember(&mask, SIGPIPE)) {
    s->sigpipe_unblocked = true;
  }
  s->phases |= 1u << p->phase;
  if ((s->order_len == 0 || s->order[s->order_len - 1] != p->phase) &&
      s->order_len < 512) {
    s->order[s->order_len++] = p->phase;
  }
  if (s->is_cancelled) {
    s->after_cancel++;
  }
  if (p->bytes_done > s->max_durable) {
    s->max_durable = p->bytes_done;
  }
  if (p->phase == CM_UPLOAD_PAUSED) {
    s->paused++;
    s->durable_at_pause = p->bytes_done;
    pthread_cond_broadcast(&s->cv);
  } else if (s->paused > 0 && p->bytes_done > s->durable_after_pause) {
    s->durable_after_pause = p->bytes_done;
  }
  bool act = !s->acted && p->phase == CM_UPLOAD_UPLOADING &&
             p->bytes_done > 0 && p->bytes_done < p->bytes_total;
  if (act && s->pause_when_durable) {
    s->acted = true;
    cm_upload_pause(up);
  } else if (act && s->cancel_when_durable) {
    s->acted = true;
    s->is_cancelled = true;
    cm_upload_cancel(up);
  }
  pthread_mutex_unlock(&s->mu);
}


static void on_done(cm_upload_t* up,
                    int status,
                    const cm_volume_t* volume,
                    const cm_reply_t* reply,
                    void* user) {
  (void) up;
  seen_t* s = user;
  pthread_mutex_lock(&s->mu);
  note(s);
  s->done++;
  s->status = status;
  cr_assert_not_null(reply);
  cr_assert((status == 0) == (volume != NULL));
  if (volume != NULL) {
    s->volume = *volume;
  }
  snprintf(s->error_code, sizeof(s->error_code), "%s", reply->error_code);
  s->http_status = reply->http_status;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}


static const cm_upload_cbs_t cbs = {.on_progress = on_progress,
                                    .on_done = on_done};


/* client.h's order of phases: STARTING, HASHING, UPLOADING, COMPLETING,
 * DONE only forward; PAUSED and RETRYING between them; the one step back,
 * COMPLETING to UPLOADING, only right after one of those two. */
static int phase_rank(cm_upload_phase_t p) {
  switch (p) {
  case CM_UPLOAD_STARTING:
    return 0;
  case CM_UPLOAD_HASHING:
    return 1;
  case CM_UPLOAD_UPLOADING:
    return 2;
  case CM_UPLOAD_COMPLETING:
    return 3;
  case CM_UPLOAD_DONE:
    return 4;
  case CM_UPLOAD_PAUSED:
  case CM_UPLOAD_RETRYING:
    return -1;
  }
  return -2;
}


static void assert_phase_order(const seen_t* s) {
  char seq[4096] = "";
  size_t at = 0;
  for (int i = 0; i < s->order_len && at < sizeof(seq) - 16; i++) {
    at += (size_t) snprintf(seq + at, sizeof(seq) - at, "%s ",
                            cm_upload_phase_name(s->order[i]));
  }
  int main_rank = 0;
  bool interrupted = false;
  for (int i = 0; i < s->order_len; i++) {
    int r = phase_rank(s->order[i]);
    cr_assert_neq(r, -2, "not a phase: %d", (int) s->order[i]);
    cr_assert_lt(main_rank, 4, "a phase after done: %s", seq);
    if (r < 0) {
      interrupted = true;
      continue;
    }
    bool resend = interrupted && main_rank == 3 && r == 2;
    cr_assert(r >= main_rank || resend, "the phase went back: %s", seq);
    main_rank = r;
    interrupted = false;
  }
}


/* Waits until `field` (read under the lock) is non-zero, 60 s at most. */
#define WAIT_FOR(s, field)                                                     \
  do {                                                                         \
    struct timespec until_;                                                    \
    clock_gettime(CLOCK_REALTIME, &until_);                                    \
    until_.tv_sec += 60;                                                       \
    pthread_mutex_lock(&(s)->mu);                                              \
    while (!((s)->field)) {                                                    \
      if (pthread_cond_timedwait(&(s)->cv, &(s)->mu, &until_) != 0) {          \
        break;                                                                 \
      }                                                                        \
    }                                                                          \
    bool ok_ = (s)->field;                                                     \
    pthread_mutex_unlock(&(s)->mu);                                            \
    cr_assert(ok_, "timed out waiting for " #field);                           \
  } while (0)


/* A client on its own thread for `url`; its callbacks through `q`'s
 * thread, or (q NULL) on the client's. */
static cm_client_t* thread_client(const char* url, dq_t* q) {
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = url;
  if (q != NULL) {
    o.dispatch = dq_dispatch;
    o.dispatch_data = q;
  }
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0, "%s", url);
  cr_assert_eq(cm_client_start_thread(c), 0);
  return c;
}


static cm_upload_options_t upload_opts(const server_t* srv, const char* path) {
  cm_upload_options_t o;
  cm_upload_options_init(&o);
  o.path = path;
  o.resume_dir = srv->resume_dir;
  o.chunk_bytes = 1 << 20;
  o.progress_interval_ms = 0; /* every event */
  return o;
}


static cm_upload_t* start(cm_client_t* c,
                          const cm_upload_options_t* o,
                          seen_t* s) {
  cm_upload_t* up = NULL;
  pthread_mutex_lock(&s->mu);
  cr_assert_eq(cm_upload_start(c, o, &cbs, s, &up), 0);
  s->up = up;
  atomic_store(&s->is_started, true);
  pthread_mutex_unlock(&s->mu);
  return up;
}


/* ---- one test's setting: a server, a file of it, an upload's options
 * and what its callbacks saw ---- */

typedef struct {
  server_t srv;
  char path[128]; /* in the server's data dir */
  char sha[65];   /* the file's sha256, hex */
  cm_upload_options_t o;
  seen_t s;
} fixture_t;


/* Starts a server and writes `name` in its data dir: an MRC z,y,x of
 * `seed` (write_mrc); f->o uploads it. */
static void fixture_start(fixture_t* f,
                          const char* name,
                          unsigned z,
                          unsigned y,
                          unsigned x,
                          unsigned seed) {
  server_start(&f->srv);
  snprintf(f->path, sizeof(f->path), "%s/data/%s", f->srv.dir, name);
  write_mrc(f->path, z, y, x, seed, f->sha);
  f->o = upload_opts(&f->srv, f->path);
  seen_init(&f->s);
}


/* The same with "big.mrc", 8 MiB: 8 chunks, so a pause or a cancel lands
 * mid-file. */
static void fixture_big(fixture_t* f, unsigned seed) {
  fixture_start(f, "big.mrc", 32, 256, 256, seed);
}


/* Starts f's upload on `c`, which it pauses once some bytes are durable,
 * then frees `c` and the upload (on_done is skipped: the client is gone).
 * Returns the durable bytes at the pause. */
static uint64_t pause_and_drop(fixture_t* f, cm_client_t* c) {
  f->s.pause_when_durable = true;
  cm_upload_t* up = start(c, &f->o, &f->s);
  WAIT_FOR(&f->s, paused);
  cm_client_free(c);
  cm_upload_free(up);
  return f->s.durable_at_pause;
}


/* Runs f's upload again on a new client of `url` to its end, seen by `s`;
 * `info` as it ends. */
static void run_again(fixture_t* f,
                      const char* url,
                      seen_t* s,
                      cm_upload_info_t* info) {
  cm_client_t* c = thread_client(url, NULL);
  seen_init(s);
  cm_upload_t* up = start(c, &f->o, s);
  WAIT_FOR(s, done);
  cm_upload_get_info(up, info);
  cm_client_free(c);
  cm_upload_free(up);
}


Test(client_upload, uploads_once_on_the_dispatch_thread, .timeout = 120) {
  fixture_t f;
  fixture_start(&f, "a.mrc", 16, 64, 64, 1);
  seen_t* s = &f.s;
  dq_t q;
  dq_start(&q);
  cm_client_t* c = thread_client(f.srv.url, &q);
  s->check_thread = true;
  s->want_thread = q.thread;
  cm_upload_t* up = start(c, &f.o, s);
  WAIT_FOR(s, done);
  cm_upload_info_t info;
  cm_upload_get_info(up, &info);
  /* Cancel and pause after the end change nothing. */
  cm_upload_cancel(up);
  cm_upload_pause(up);
  cm_client_free(c);
  dq_stop(&q);
  cm_upload_free(up);
  cr_assert_eq(s->done, 1);
  cr_assert_eq(s->status, 0, "%s", cm_strerror(s->status));
  cr_assert_str_eq(s->volume.sha256, f.sha);
  cr_assert_eq(s->volume.shape[0], 16);
  cr_assert_eq(s->volume.shape[2], 64);
  cr_assert_eq(s->volume.mode, 2);
  cr_assert_str_eq(s->volume.filename, "a.mrc");
  cr_assert_eq(s->volume.size_bytes, 1024 + 16 * 64 * 64 * 4);
  cr_assert_not(s->early, "a callback ran before cm_upload_start returned");
  cr_assert_not(s->wrong_thread, "a callback ran off the dispatch thread");
  cr_assert(s->phases & (1u << CM_UPLOAD_HASHING));
  cr_assert(s->phases & (1u << CM_UPLOAD_UPLOADING));
  cr_assert(s->phases & (1u << CM_UPLOAD_DONE));
  cr_assert_not(s->phases & (1u << CM_UPLOAD_RETRYING));
  assert_phase_order(s);
  cr_assert_str_eq(info.sha256, f.sha);
  cr_assert_eq(info.bytes_sent, s->volume.size_bytes);
  cr_assert_not(info.is_deduplicated);
  cr_assert_eq(count_records(f.srv.resume_dir), 0, "removed on success");
  server_stop(&f.srv);
}


Test(client_upload, same_file_again_sends_nothing, .timeout = 120) {
  fixture_t f;
  fixture_start(&f, "a.mrc", 8, 32, 32, 2);
  char copy[128], sha[65];
  snprintf(copy, sizeof(copy), "%s/data/copy.mrc", f.srv.dir);
  write_mrc(copy, 8, 32, 32, 2, sha); /* other path, same bytes */
  cm_client_t* c = thread_client(f.srv.url, NULL);
  char first_id[40] = "";
  for (int round = 0; round < 2; round++) {
    seen_t s;
    seen_init(&s);
    cm_upload_options_t o = upload_opts(&f.srv, round == 0 ? f.path : copy);
    cm_upload_t* up = start(c, &o, &s);
    WAIT_FOR(&s, done);
    cm_upload_info_t info;
    cm_upload_get_info(up, &info);
    cm_upload_free(up);
    cr_assert_eq(s.status, 0, "%s", cm_strerror(s.status));
    cr_assert_str_eq(s.volume.sha256, sha);
    if (round == 0) {
      memcpy(first_id, s.volume.volume_id, sizeof(first_id));
      cr_assert_gt(info.bytes_sent, 0);
    } else {
      cr_assert_str_eq(s.volume.volume_id, first_id, "the same volume");
      cr_assert(info.is_deduplicated);
      cr_assert_eq(info.bytes_sent, 0, "dedup sends no bytes");
    }
  }
  cm_client_free(c);
  server_stop(&f.srv);
}


Test(client_upload, pause_stops_sending_until_resume, .timeout = 120) {
  fixture_t f;
  fixture_big(&f, 3);
  seen_t* s = &f.s;
  cm_client_t* c = thread_client(f.srv.url, NULL);
  s->pause_when_durable = true;
  cm_upload_t* up = start(c, &f.o, s);
  WAIT_FOR(s, paused);
  pthread_mutex_lock(&s->mu);
  uint64_t at = s->durable_at_pause;
  int done_while_paused = s->done;
  pthread_mutex_unlock(&s->mu);
  cr_assert_eq(done_while_paused, 0);
  cr_assert_gt(at, 0);
  cr_assert_lt(at, 8u << 20);
  cr_assert_eq(count_records(f.srv.resume_dir), 1, "paused: the record stays");
  cm_upload_resume(up);
  WAIT_FOR(s, done);
  cm_client_free(c);
  cm_upload_free(up);
  cr_assert_eq(s->paused, 1, "one PAUSED");
  assert_phase_order(s);
  cr_assert_eq(s->done, 1);
  cr_assert_eq(s->status, 0, "%s", cm_strerror(s->status));
  cr_assert_str_eq(s->volume.sha256, f.sha);
  cr_assert_geq(s->durable_after_pause, at);
  server_stop(&f.srv);
}


Test(client_upload, cancel_ends_with_ecanceled_and_no_record, .timeout = 120) {
  fixture_t f;
  fixture_big(&f, 4);
  seen_t* s = &f.s;
  cm_client_t* c = thread_client(f.srv.url, NULL);
  s->cancel_when_durable = true;
  cm_upload_t* up = start(c, &f.o, s);
  WAIT_FOR(s, done);
  cm_upload_cancel(up); /* again: a no-op */
  cm_client_free(c);
  cm_upload_free(up);
  cr_assert_eq(s->done, 1);
  cr_assert_eq(s->status, UV_ECANCELED, "%s", cm_strerror(s->status));
  cr_assert_eq(s->after_cancel, 0, "no progress after cancel");
  cr_assert_eq(count_records(f.srv.resume_dir), 0, "cancel removes the record");
  server_stop(&f.srv);
}


Test(client_upload, server_refusal_comes_with_its_envelope, .timeout = 120) {
  server_t srv;
  server_start(&srv);
  char path[128];
  snprintf(path, sizeof(path), "%s/data/notes.txt", srv.dir);
  FILE* f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 1000; i++) {
    fprintf(f, "not an MRC file, line %d\n", i);
  }
  fclose(f);
  cm_client_t* c = thread_client(srv.url, NULL);
  seen_t s;
  seen_init(&s);
  cm_upload_options_t o = upload_opts(&srv, path);
  cm_upload_t* up = start(c, &o, &s);
  WAIT_FOR(&s, done);
  cm_client_free(c);
  cm_upload_free(up);
  cr_assert_eq(s.done, 1);
  cr_assert_eq(s.status, CM_EHTTP, "%s", cm_strerror(s.status));
  cr_assert_eq(s.http_status, 422);
  cr_assert_str_eq(s.error_code, "invalid_volume");
  cr_assert_eq(count_records(srv.resume_dir), 0, "a refused file: no record");
  server_stop(&srv);
}


Test(client_upload, client_free_keeps_the_record_for_a_resume, .timeout = 120) {
  fixture_t f;
  fixture_big(&f, 5);
  uint64_t at = pause_and_drop(&f, thread_client(f.srv.url, NULL));
  cr_assert_eq(f.s.done, 0);
  cr_assert_eq(count_records(f.srv.resume_dir), 1);
  /* A new client, the same file: resumes from the record, no hashing. */
  seen_t s2;
  cm_upload_info_t info;
  run_again(&f, f.srv.url, &s2, &info);
  cr_assert_eq(s2.status, 0, "%s", cm_strerror(s2.status));
  cr_assert_str_eq(s2.volume.sha256, f.sha);
  cr_assert(info.is_resumed);
  cr_assert_geq(info.resumed_at, at);
  cr_assert_eq(info.bytes_sent,
               (uint64_t) (1024 + (8u << 20)) - info.resumed_at);
  cr_assert_not(s2.phases & (1u << CM_UPLOAD_HASHING), "sha256 from record");
  assert_phase_order(&s2);
  cr_assert_eq(count_records(f.srv.resume_dir), 0);
  server_stop(&f.srv);
}


Test(client_upload,
     resume_record_is_the_servers_not_the_urls_spelling,
     .timeout = 120) {
  fixture_t f;
  fixture_big(&f, 9);
  char url[96];
  /* Paused through one spelling of the server's URL ... */
  snprintf(url, sizeof(url), "http://LocalHost:%u/", f.srv.port);
  pause_and_drop(&f, thread_client(url, NULL));
  cr_assert_eq(count_records(f.srv.resume_dir), 1);
  /* ... resumed through another: the scheme's and host's case and the
   * trailing slash make no other server. */
  snprintf(url, sizeof(url), "HTTP://localhost:%u", f.srv.port);
  seen_t s2;
  cm_upload_info_t info;
  run_again(&f, url, &s2, &info);
  cr_assert_eq(s2.status, 0, "%s", cm_strerror(s2.status));
  cr_assert_str_eq(s2.volume.sha256, f.sha);
  cr_assert(info.is_resumed, "a new upload: the record was not found");
  cr_assert_gt(info.resumed_at, 0);
  cr_assert_eq(count_records(f.srv.resume_dir), 0);
  server_stop(&f.srv);
}


Test(client_upload, file_changed_mid_upload_fails_cleanly, .timeout = 120) {
  fixture_t f;
  fixture_big(&f, 7);
  seen_t* s = &f.s;
  cm_client_t* c = thread_client(f.srv.url, NULL);
  s->pause_when_durable = true;
  cm_upload_t* up = start(c, &f.o, s);
  WAIT_FOR(s, paused);
  /* Someone rewrites the file while the upload waits. */
  FILE* fp = fopen(f.path, "ab");
  cr_assert_not_null(fp);
  fputs("more", fp);
  fclose(fp);
  cm_upload_resume(up);
  WAIT_FOR(s, done);
  cm_client_free(c);
  cm_upload_free(up);
  cr_assert_eq(s->done, 1);
  cr_assert_eq(s->status, CM_ECHANGED, "%s", cm_strerror(s->status));
  cr_assert_eq(count_records(f.srv.resume_dir), 0, "a changed file: no record");
  server_stop(&f.srv);
}


Test(client_upload, phases_only_move_forward, .timeout = 120) {
  /* Files of one chunk: the record's save lands while the one PATCH,
   * all of it written, waits for the server's validation. The library
   * said "uploading" again then (after "completing"). */
  server_t srv;
  server_start(&srv);
  cm_client_t* c = thread_client(srv.url, NULL);
  for (unsigned i = 0; i < 4; i++) {
    char path[128], sha[65];
    snprintf(path, sizeof(path), "%s/data/small%u.mrc", srv.dir, i);
    write_mrc(path, 4 + i, 16, 16, 10 + i, sha);
    seen_t s;
    seen_init(&s);
    cm_upload_options_t o = upload_opts(&srv, path);
    cm_upload_t* up = start(c, &o, &s);
    WAIT_FOR(&s, done);
    cm_upload_free(up);
    cr_assert_eq(s.status, 0, "%s", cm_strerror(s.status));
    cr_assert_str_eq(s.volume.sha256, sha);
    cr_assert(s.phases & (1u << CM_UPLOAD_COMPLETING));
    assert_phase_order(&s);
  }
  cm_client_free(c);
  server_stop(&srv);
}


Test(client_upload, not_a_regular_file_ends_at_once, .timeout = 60) {
  /* A FIFO without a writer: opening it plainly would hang a pool thread
   * for ever (and cm_client_free with it). */
  server_t srv;
  server_start(&srv);
  char fifo[128], dir[128];
  snprintf(fifo, sizeof(fifo), "%s/data/pipe.mrc", srv.dir);
  snprintf(dir, sizeof(dir), "%s/data/dir.mrc", srv.dir);
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  cr_assert_eq(mkdir(dir, 0700), 0);
  cm_client_t* c = thread_client(srv.url, NULL);
  const char* paths[] = {fifo, dir};
  const int want[] = {CM_ENOTREG, UV_EISDIR};
  for (int i = 0; i < 2; i++) {
    seen_t s;
    seen_init(&s);
    cm_upload_options_t o = upload_opts(&srv, paths[i]);
    cm_upload_t* up = start(c, &o, &s);
    WAIT_FOR(&s, done);
    cm_upload_free(up);
    cr_assert_eq(s.status, want[i], "%s: %s", paths[i], cm_strerror(s.status));
    cr_assert_eq(s.http_status, 0, "nothing was asked of the server");
  }
  cm_client_free(c);
  cr_assert_eq(count_records(srv.resume_dir), 0);
  cr_assert_str_neq(cm_strerror(CM_ENOTREG), "unknown error");
  server_stop(&srv);
}


/* ---- a server that refuses a PATCH's body at once ---- */

typedef struct {
  int fd;
  unsigned port;
  pthread_t thread;
  atomic_bool is_stopping;
  atomic_int patches;
} refuser_t;


static void* refuser_main(void* arg) {
  refuser_t* r = arg;
  while (!atomic_load(&r->is_stopping)) {
    int c = accept(r->fd, NULL, NULL);
    if (c < 0) {
      continue;
    }
    char buf[4096];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
      ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
      if (n <= 0) {
        break;
      }
      len += (size_t) n;
      buf[len] = '\0';
      if (strstr(buf, "\r\n\r\n") != NULL) {
        break;
      }
    }
    static const char created[] =
        "HTTP/1.1 201 Created\r\nTus-Resumable: 1.0.0\r\nLocation: "
        "/v1/uploads/0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10\r\nUpload-Offset: "
        "0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    static const char body[] =
        "{\"error\":{\"code\":\"payload_too_large\",\"message\":\"no\","
        "\"hint\":null,\"retryable\":false}}";
    char refused[512];
    snprintf(refused, sizeof(refused),
             "HTTP/1.1 413 Payload Too Large\r\nTus-Resumable: 1.0.0\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             sizeof(body) - 1, body);
    if (strncmp(buf, "PATCH", 5) == 0) {
      atomic_fetch_add(&r->patches, 1);
      /* Answer and close with the body unread: the kernel resets the
       * connection while the client still writes. */
      ssize_t w = write(c, refused, strlen(refused));
      (void) w;
    } else {
      ssize_t w = write(c, created, sizeof(created) - 1);
      (void) w;
    }
    close(c);
  }
  return NULL;
}


static void refuser_start(refuser_t* r) {
  memset(r, 0, sizeof(*r));
  r->fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(r->fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(r->fd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(listen(r->fd, 16), 0);
  socklen_t alen = sizeof(a);
  getsockname(r->fd, (struct sockaddr*) &a, &alen);
  r->port = ntohs(a.sin_port);
  cr_assert_eq(pthread_create(&r->thread, NULL, refuser_main, r), 0);
}


static void refuser_stop(refuser_t* r) {
  atomic_store(&r->is_stopping, true);
  shutdown(r->fd, SHUT_RDWR);
  /* Wake a blocked accept: one last connection. */
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t) r->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  connect(c, (struct sockaddr*) &a, sizeof(a));
  close(c);
  pthread_join(r->thread, NULL);
  close(r->fd);
}


Test(client_upload, a_body_refused_midway_is_an_error, .timeout = 120) {
  /* The default SIGPIPE action (termination) is what an application that
   * never thought of it has. */
  signal(SIGPIPE, SIG_DFL);
  refuser_t r;
  refuser_start(&r);
  char dir[] = "/tmp/cm-refuse-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[128], sha[65];
  snprintf(path, sizeof(path), "%s/big.mrc", dir);
  write_mrc(path, 64, 256, 256, 8, sha); /* 16 MiB: one big PATCH */
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", r.port);
  cm_client_t* c = thread_client(url, NULL);
  seen_t s;
  seen_init(&s);
  cm_upload_options_t o;
  cm_upload_options_init(&o);
  o.path = path;
  o.resume = false;
  o.hash_first = false;
  o.chunk_bytes = 64 << 20;
  o.max_retries = 2;
  o.retry_initial_ms = 10;
  cm_upload_t* up = start(c, &o, &s);
  WAIT_FOR(&s, done);
  cm_client_free(c);
  cm_upload_free(up);
  refuser_stop(&r);
  unlink(path);
  rmdir(dir);
  cr_assert_eq(s.done, 1);
  cr_assert_neq(s.status, 0);
  cr_assert_geq(atomic_load(&r.patches), 1);
  cr_assert_not(s.sigpipe_unblocked, "SIGPIPE is open on the client thread");
  /* The answer came first (413), or the reset did (a retried network
   * error, then given up): either way an error, and this process lives. */
  if (s.http_status == 413) {
    cr_assert_str_eq(s.error_code, "payload_too_large");
  }
}


static void run_done(cm_upload_t* up,
                     int status,
                     const cm_volume_t* volume,
                     const cm_reply_t* reply,
                     void* user) {
  on_done(up, status, volume, reply, user);
  cm_upload_free(up); /* allowed inside on_done */
}


Test(client_upload, callers_thread_client_runs_to_the_end, .timeout = 120) {
  fixture_t f;
  fixture_start(&f, "a.mrc", 8, 16, 16, 6);
  seen_t* s = &f.s;
  cm_client_options_t co;
  cm_client_options_init(&co);
  co.server_url = f.srv.url;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&co, &c), 0);
  cm_upload_cbs_t run_cbs = {.on_progress = on_progress, .on_done = run_done};
  cm_upload_t* up = NULL;
  cr_assert_eq(cm_upload_start(c, &f.o, &run_cbs, s, &up), 0);
  atomic_store(&s->is_started, true);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(s->done, 1);
  cr_assert_eq(s->status, 0, "%s", cm_strerror(s->status));
  cr_assert_str_eq(s->volume.sha256, f.sha);
  cr_assert_not(s->early);
  /* Bad arguments never start anything. */
  cm_upload_options_t bad = f.o;
  bad.path = NULL;
  cr_assert_eq(cm_upload_start(c, &bad, &cbs, s, &up), CM_EBADARG);
  bad = f.o;
  bad.parallel = 17;
  cr_assert_eq(cm_upload_start(c, &bad, &cbs, s, &up), CM_EBADARG);
  bad = f.o;
  bad.chunk_bytes = 1000;
  cr_assert_eq(cm_upload_start(c, &bad, &cbs, s, &up), CM_EBADARG);
  cm_client_free(c);
  server_stop(&f.srv);
}
