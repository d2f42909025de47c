/* upload_work.c: an upload's file work, all on the libuv thread pool (the
 * loop never touches the disk): opening and stat'ing the file and reading
 * its resume record, hashing it in slices, reading and checksumming one
 * chunk, saving and removing the record, closing the file. A work owns
 * what it computes; its after-callback (on the loop) applies it to the
 * upload and calls up_advance(). While a work runs, the loop leaves alone
 * what it uses (the hash context, the stream's buffer). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/upload_int.h"
#include "core/base64.h"

/* Hashing goes a slice per work, so that progress, pause and cancel are
 * seen between slices. */
#define HASH_SLICE ((uint64_t) 64 << 20)
#define HASH_READ ((size_t) 1 << 20)

typedef enum {
  W_PREPARE,
  W_HASH,
  W_READ,
  W_SAVE,
  W_REMOVE
} work_kind_t;

struct up_work_s {
  uv_work_t w;
  cm_upload_t* up;
  work_kind_t kind;
  int status;
  /* W_PREPARE */
  char abs_path[4096];
  char record_file[4200];
  int fd;
  uint64_t size;
  int64_t mtime_ns;
  upload_record_t* rec; /* W_PREPARE: the record found; W_SAVE: to write */
  /* W_HASH, W_READ */
  int stream;
  uint64_t off; /* in the file */
  size_t len;
  uint8_t* buf; /* W_READ: the stream's buffer, borrowed */
  cm_checksum_t checksum;
  char checksum_line[160];
  bool is_hash_done;
};


static int64_t mtime_of(const struct stat* st) {
  return (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}


static void do_prepare(up_work_t* w) {
  cm_upload_t* up = w->up;
  w->fd = -1;
  if (realpath(up->path, w->abs_path) == NULL) {
    w->status = -errno;
    return;
  }
  /* Only a regular file is opened: opening a FIFO would wait for a
   * writer (this pool thread for ever), a device may act on its open. */
  struct stat st;
  if (stat(w->abs_path, &st) != 0) {
    w->status = -errno;
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    w->status = S_ISDIR(st.st_mode) ? -EISDIR : CM_ENOTREG;
    return;
  }
  /* O_NONBLOCK too: it may have been replaced since the stat. */
  int fd = open(w->abs_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &st) != 0) {
    w->status = -errno;
    if (fd >= 0) {
      close(fd);
    }
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    w->status = S_ISDIR(st.st_mode) ? -EISDIR : CM_ENOTREG;
    return;
  }
  w->fd = fd;
  w->size = (uint64_t) st.st_size;
  w->mtime_ns = mtime_of(&st);
  if (up->resume_dir[0] == '\0' ||
      upload_record_file(up->resume_dir, w->abs_path, up->server,
                         w->record_file, sizeof(w->record_file)) != 0) {
    w->record_file[0] = '\0';
    return;
  }
  upload_record_t* rec = calloc(1, sizeof(*rec));
  if (rec == NULL) {
    return; /* no resume, no harm */
  }
  upload_record_t key = {.size = w->size, .mtime_ns = w->mtime_ns};
  snprintf(key.path, sizeof(key.path), "%s", w->abs_path);
  snprintf(key.server, sizeof(key.server), "%s", up->server);
  if (upload_record_load(w->record_file, rec) == 0 &&
      upload_record_same_key(rec, &key)) {
    w->rec = rec;
    return;
  }
  /* None, unreadable, or of the file as it was before a change: start
   * from the key alone (saving it replaces the old one). */
  *rec = key;
  w->rec = rec;
  w->rec->upload_url[0] = '\0';
}


/* Whether the file still has the size and mtime it had at the start. */
static int check_unchanged(const up_work_t* w) {
  struct stat st;
  if (fstat(w->up->fd, &st) != 0) {
    return -errno;
  }
  if ((uint64_t) st.st_size != w->up->size ||
      mtime_of(&st) != w->up->mtime_ns) {
    return CM_ECHANGED;
  }
  return 0;
}


static int read_at(int fd, uint8_t* buf, size_t len, uint64_t off) {
  while (len > 0) {
    ssize_t n = pread(fd, buf, len, (off_t) off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -errno;
    }
    if (n == 0) {
      return CM_ECHANGED; /* shorter than it was */
    }
    buf += n;
    len -= (size_t) n;
    off += (uint64_t) n;
  }
  return 0;
}


static void do_hash(up_work_t* w) {
  uint8_t* buf = malloc(HASH_READ);
  if (buf == NULL) {
    w->status = -ENOMEM;
    return;
  }
  uint64_t end = w->off + w->len;
  for (uint64_t off = w->off; off < end && w->status == 0;) {
    size_t n = end - off < HASH_READ ? (size_t) (end - off) : HASH_READ;
    w->status = read_at(w->up->fd, buf, n, off);
    if (w->status == 0 && EVP_DigestUpdate(w->up->md, buf, n) != 1) {
      w->status = -ENOMEM;
    }
    off += n;
  }
  free(buf);
  if (w->status == 0) {
    w->status = check_unchanged(w);
  }
}


static void do_read(up_work_t* w) {
  w->status = check_unchanged(w);
  if (w->status == 0) {
    w->status = read_at(w->up->fd, w->buf, w->len, w->off);
  }
  if (w->status != 0 || w->checksum == CM_CHECKSUM_NONE) {
    return;
  }
  bool sha1 = w->checksum == CM_CHECKSUM_SHA1;
  uint8_t d[EVP_MAX_MD_SIZE];
  unsigned dlen = 0;
  if (EVP_Digest(w->buf, w->len, d, &dlen, sha1 ? EVP_sha1() : EVP_sha256(),
                 NULL) != 1) {
    w->status = -ENOMEM;
    return;
  }
  char b64[100];
  core_base64_encode(d, dlen, b64);
  snprintf(w->checksum_line, sizeof(w->checksum_line),
           "Upload-Checksum: %s %s\r\n", sha1 ? "sha1" : "sha256", b64);
}


static void run_work(uv_work_t* req) {
  up_work_t* w = req->data;
  switch (w->kind) {
  case W_PREPARE:
    do_prepare(w);
    break;
  case W_HASH:
    do_hash(w);
    break;
  case W_READ:
    do_read(w);
    break;
  case W_SAVE:
    w->status =
        upload_record_save(w->up->resume_dir, w->up->record_file, w->rec);
    break;
  case W_REMOVE:
    w->status = upload_record_remove(w->up->record_file);
    break;
  }
}


/* Which of the client's servers a record's `holder` names ("": the first
 * URL, the record's key); false when none of them. */
static bool holder_index(const cm_upload_t* up,
                         const char* holder,
                         size_t* out) {
  const client_servers_t* list = &up->client->servers;
  if (holder[0] == '\0') {
    *out = 0;
    return true;
  }
  for (size_t i = 0; i < list->count; i++) {
    char key[sizeof(up->server)];
    client_servers_key(&list->v[i], key, sizeof(key));
    if (strcmp(key, holder) == 0) {
      *out = i;
      return true;
    }
  }
  return false;
}


static void after_prepare(cm_upload_t* up, up_work_t* w) {
  if (w->status != 0) {
    up_fail(up, w->status, NULL, false);
    return;
  }
  up->fd = w->fd;
  up->size = w->size;
  up->mtime_ns = w->mtime_ns;
  memcpy(up->abs_path, w->abs_path, sizeof(up->abs_path));
  memcpy(up->record_file, w->record_file, sizeof(up->record_file));
  up->is_prepared = true;
  upload_record_t* rec = w->rec;
  w->rec = NULL;
  if (rec == NULL) {
    return;
  }
  up->record = rec;
  if (rec->sha256[0] != '\0') {
    memcpy(up->sha256, rec->sha256, sizeof(up->sha256));
    up->hashed = up->size;
  }
  /* The layout it names is checked with HEAD before anything is sent,
   * on the server it is on: a list without that server starts afresh. */
  size_t at = 0;
  if ((rec->upload_url[0] != '\0' || rec->part_count > 0) &&
      holder_index(up, rec->holder, &at)) {
    up->srv = at;
    up->is_resumed = true;
    if (rec->part_count > 0) {
      up->is_concat = true;
      up->stream_count = rec->part_count;
      for (unsigned i = 0; i < rec->part_count; i++) {
        up_stream_t* s = &up->streams[i];
        memcpy(s->url, rec->parts[i].url, sizeof(s->url));
        s->start = rec->parts[i].start;
        s->length = rec->parts[i].length;
      }
      memcpy(up->final_url, rec->upload_url, sizeof(up->final_url));
    } else {
      up->stream_count = 1;
      memcpy(up->streams[0].url, rec->upload_url, sizeof(up->streams[0].url));
      up->streams[0].length = up->size;
    }
  }
  up_info_sync(up);
}


static void after_work(uv_work_t* req, int status) {
  up_work_t* w = req->data;
  cm_upload_t* up = w->up;
  assert(up->ops > 0);
  up->ops--;
  if (status != 0 && w->status == 0) {
    w->status = status; /* UV_ECANCELED: never ran */
  }
  switch (w->kind) {
  case W_PREPARE:
    up->is_step_busy = false;
    after_prepare(up, w);
    break;
  case W_HASH:
    up->is_step_busy = false;
    if (w->status != 0) {
      up_fail(up, w->status, NULL, false);
      break;
    }
    up->hashed += w->len;
    if (up->hashed == up->size) {
      uint8_t d[EVP_MAX_MD_SIZE];
      unsigned dlen = 0;
      EVP_DigestFinal_ex(up->md, d, &dlen);
      for (unsigned i = 0; i < dlen && i < 32; i++) {
        snprintf(up->sha256 + 2 * i, 3, "%02x", d[i]);
      }
      up->is_record_dirty = true;
      up_info_sync(up);
    }
    up_emit_progress(up, CM_UPLOAD_HASHING, up->hashed == up->size);
    break;
  case W_READ: {
    up_stream_t* s = &up->streams[w->stream];
    s->is_busy = false;
    if (w->status != 0) {
      up_fail(up, w->status, NULL, w->status != CM_ECHANGED);
      break;
    }
    s->has_chunk = true;
    s->chunk_off = w->off - s->start;
    s->chunk_len = w->len;
    memcpy(s->checksum, w->checksum_line, sizeof(s->checksum));
    break;
  }
  case W_SAVE:
    up->is_record_busy = false;
    if (w->status != 0) {
      client_log(up->client, CM_LOG_WARN,
                 "upload %s: the resume record could not be written (%s)",
                 up->path, cm_strerror(w->status));
    }
    free(up->record);
    up->record = w->rec; /* what the file now says */
    w->rec = NULL;
    break;
  case W_REMOVE:
    up->is_record_busy = false;
    up->is_record_removed = true;
    break;
  }
  free(w->rec);
  free(w);
  up_advance(up);
}


static up_work_t* work_new(cm_upload_t* up, work_kind_t kind) {
  up_work_t* w = calloc(1, sizeof(*w));
  if (w != NULL) {
    w->up = up;
    w->kind = kind;
    w->w.data = w;
  }
  return w;
}


static int work_queue(cm_upload_t* up, up_work_t* w) {
  int err = uv_queue_work(&up->client->loop, &w->w, run_work, after_work);
  if (err != 0) {
    free(w->rec);
    free(w);
    return err;
  }
  up->ops++;
  return 0;
}


int up_work_prepare(cm_upload_t* up) {
  up_work_t* w = work_new(up, W_PREPARE);
  int err = w != NULL ? work_queue(up, w) : -ENOMEM;
  up->is_step_busy = err == 0;
  return err;
}


int up_work_hash(cm_upload_t* up) {
  if (up->md == NULL) {
    up->md = EVP_MD_CTX_new();
    if (up->md == NULL || EVP_DigestInit_ex(up->md, EVP_sha256(), NULL) != 1) {
      return -ENOMEM;
    }
  }
  up_work_t* w = work_new(up, W_HASH);
  if (w == NULL) {
    return -ENOMEM;
  }
  w->off = up->hashed;
  uint64_t left = up->size - up->hashed;
  w->len = (size_t) (left < HASH_SLICE ? left : HASH_SLICE);
  int err = work_queue(up, w);
  up->is_step_busy = err == 0;
  return err;
}


int up_work_read(cm_upload_t* up, int stream) {
  up_stream_t* s = &up->streams[stream];
  assert(s->is_known && s->offset < s->length && !s->is_busy);
  uint64_t left = s->length - s->offset;
  size_t len =
      (size_t) (left < up->opts.chunk_bytes ? left : up->opts.chunk_bytes);
  if (s->buf == NULL) {
    s->buf_cap = len;
    s->buf = malloc(s->buf_cap);
    if (s->buf == NULL) {
      return -ENOMEM;
    }
  }
  assert(len <= s->buf_cap);
  up_work_t* w = work_new(up, W_READ);
  if (w == NULL) {
    return -ENOMEM;
  }
  w->stream = stream;
  w->buf = s->buf;
  w->off = s->start + s->offset;
  w->len = len;
  w->checksum = up->opts.checksum;
  int err = work_queue(up, w);
  if (err == 0) {
    s->is_busy = true;
  }
  return err;
}


int up_work_save_record(cm_upload_t* up) {
  up_work_t* w = work_new(up, W_SAVE);
  if (w == NULL) {
    return -ENOMEM;
  }
  w->rec = calloc(1, sizeof(*w->rec));
  if (w->rec == NULL) {
    free(w);
    return -ENOMEM;
  }
  upload_record_t* r = w->rec;
  snprintf(r->path, sizeof(r->path), "%s", up->abs_path);
  snprintf(r->server, sizeof(r->server), "%s", up->server);
  client_servers_key(&up->client->servers.v[up->srv], r->holder,
                     sizeof(r->holder));
  if (strcmp(r->holder, r->server) == 0) {
    r->holder[0] = '\0'; /* as records before failover said */
  }
  r->size = up->size;
  r->mtime_ns = up->mtime_ns;
  memcpy(r->sha256, up->sha256, sizeof(r->sha256));
  if (up->is_concat) {
    memcpy(r->upload_url, up->final_url, sizeof(r->upload_url));
    r->part_count = up->stream_count;
    for (unsigned i = 0; i < up->stream_count; i++) {
      memcpy(r->parts[i].url, up->streams[i].url, sizeof(r->parts[i].url));
      r->parts[i].start = up->streams[i].start;
      r->parts[i].length = up->streams[i].length;
    }
  } else if (up->stream_count == 1) {
    memcpy(r->upload_url, up->streams[0].url, sizeof(r->upload_url));
  }
  int err = work_queue(up, w);
  if (err == 0) {
    up->is_record_busy = true;
    up->is_record_dirty = false;
  }
  return err;
}


int up_work_remove_record(cm_upload_t* up) {
  up_work_t* w = work_new(up, W_REMOVE);
  if (w == NULL) {
    return -ENOMEM;
  }
  int err = work_queue(up, w);
  if (err == 0) {
    up->is_record_busy = true;
  }
  return err;
}


typedef struct {
  uv_fs_t fs;
  cm_upload_t* up;
  void (*cb)(cm_upload_t* up);
} close_req_t;


static void on_file_closed(uv_fs_t* fs) {
  close_req_t* c = fs->data;
  uv_fs_req_cleanup(fs);
  c->up->fd = -1;
  c->cb(c->up);
  free(c);
}


int up_work_close(cm_upload_t* up, void (*cb)(cm_upload_t* up)) {
  close_req_t* c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return -ENOMEM;
  }
  c->up = up;
  c->cb = cb;
  c->fs.data = c;
  int err = uv_fs_close(&up->client->loop, &c->fs, up->fd, on_file_closed);
  if (err != 0) {
    free(c);
  }
  return err;
}
