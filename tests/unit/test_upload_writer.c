/* test_upload_writer.c: a PATCH's two buffers (src/server/upload_writer.c,
 * with upload_io.c's writes and hashes on libuv's pool) on a real loop and
 * a real file. Bodies fed whole, in random pieces (some larger than both
 * buffers) and byte by byte land in the file in order from the writer's
 * offset, and the checksum digest sees them in order; reading goes on while one
 * buffer is written and pauses only when both are in use; an end while
 * paused still writes the spill; dropping, a failed open and an empty body
 * end with the file closed. No sleeps: the loop runs until the writer's
 * callbacks have all come. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "server/upload_writer.h"

#define BUF SRV_UPLOAD_WRITER_BUF

typedef struct {
  uv_loop_t loop;
  srv_upload_writer_t w;
  char dir[64];
  char path[128];
  const uint8_t* data; /* the body */
  size_t len;
  size_t pos;             /* fed so far */
  size_t max_piece;       /* pieces of 1..max_piece bytes (random) */
  unsigned seed;          /* rand_r state for the piece sizes */
  bool keep;              /* how the end goes */
  bool is_paused;         /* the last put answered 1 */
  int rooms;              /* on_room calls */
  int dones;              /* on_done calls */
  int end_rc;             /* what srv_upload_writer_end answered */
  int pauses;             /* puts that answered 1 */
  int puts_while_writing; /* puts answered 0 with a write in flight */
  EVP_MD_CTX* sum;
} rig_t;


static void feed(rig_t* r);


static void on_room(srv_upload_writer_t* w) {
  rig_t* r = w->data;
  cr_assert(r->is_paused, "on_room without a pause");
  r->is_paused = false;
  r->rooms++;
  feed(r);
}


static void on_done(srv_upload_writer_t* w) {
  rig_t* r = w->data;
  r->dones++;
}


/* Puts pieces until the body is in (then ends) or the writer pauses. */
static void feed(rig_t* r) {
  while (r->pos < r->len) {
    size_t n = 1 + (size_t) rand_r(&r->seed) % r->max_piece;
    n = n < r->len - r->pos ? n : r->len - r->pos;
    int rc = srv_upload_writer_put(&r->w, r->data + r->pos, n);
    cr_assert(rc == 0 || rc == 1, "put: %d", rc);
    r->pos += n;
    if (rc == 0 && r->w.io.is_busy) {
      r->puts_while_writing++;
    }
    if (rc == 1) {
      r->pauses++;
      r->is_paused = true;
      return;
    }
  }
  r->end_rc = srv_upload_writer_end(&r->w, r->keep);
}


static void rig_init(rig_t* r, size_t prefix_len) {
  memset(r, 0, sizeof(*r));
  cr_assert_eq(uv_loop_init(&r->loop), 0);
  snprintf(r->dir, sizeof(r->dir), "/tmp/cm-writer-XXXXXX");
  cr_assert_not_null(mkdtemp(r->dir));
  snprintf(r->path, sizeof(r->path), "%s/u.part", r->dir);
  if (prefix_len > 0) {
    /* What earlier PATCHes left: the writer goes on after it. */
    int fd = open(r->path, O_WRONLY | O_CREAT, 0644);
    cr_assert(fd >= 0);
    uint8_t* p = malloc(prefix_len);
    memset(p, 'P', prefix_len);
    cr_assert_eq(write(fd, p, prefix_len), (ssize_t) prefix_len);
    free(p);
    close(fd);
  }
  cr_assert_eq(srv_upload_writer_init(&r->w, &r->loop, r->path,
                                      (uint64_t) prefix_len, r),
               0);
  r->w.on_room = on_room;
  r->w.on_done = on_done;
  r->keep = true;
  r->seed = 1;
  r->sum = EVP_MD_CTX_new();
  cr_assert(EVP_DigestInit_ex(r->sum, EVP_sha256(), NULL) == 1);
  r->w.hash.sum = r->sum;
}


/* Runs the loop until nothing is in flight; the end must have come once
 * (by callback, or answered at once by srv_upload_writer_end). */
static void rig_run(rig_t* r) {
  if (!r->is_paused) {
    feed(r); /* else on_room goes on */
  }
  cr_assert_eq(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
  cr_assert(!srv_upload_writer_is_busy(&r->w));
  cr_assert(r->w.is_ending, "the body was not all fed");
  int done = r->end_rc == SRV_UPLOAD_WRITER_PENDING ? r->dones : 1;
  cr_assert_eq(done, 1, "on_done %d times (end answered %d)", r->dones,
               r->end_rc);
  if (r->end_rc != SRV_UPLOAD_WRITER_PENDING) {
    cr_assert_eq(r->dones, 0, "on_done after an end answered at once");
  }
  cr_assert_lt(r->w.io.fd, 0, "the file was left open");
}


static void rig_close(rig_t* r) {
  srv_upload_writer_free(&r->w);
  EVP_MD_CTX_free(r->sum);
  cr_assert_eq(uv_loop_close(&r->loop), 0);
  unlink(r->path);
  rmdir(r->dir);
}


static uint8_t* random_bytes(size_t len, unsigned seed) {
  uint8_t* b = malloc(len);
  cr_assert_not_null(b);
  for (size_t i = 0; i < len; i++) {
    b[i] = (uint8_t) rand_r(&seed);
  }
  return b;
}


static void digest_of(const uint8_t* b, size_t len, uint8_t out[32]) {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestUpdate(md, b, len);
  EVP_DigestFinal_ex(md, out, NULL);
  EVP_MD_CTX_free(md);
}


/* The file is prefix_len 'P's then the body; the digest saw the body. */
static void assert_kept(rig_t* r, size_t prefix_len) {
  cr_assert_eq(r->w.status, 0, "status %d", r->w.status);
  cr_assert_eq(r->w.written, r->len);
  FILE* f = fopen(r->path, "rb");
  cr_assert_not_null(f);
  uint8_t* got = malloc(prefix_len + r->len + 1);
  size_t n = fread(got, 1, prefix_len + r->len + 1, f);
  fclose(f);
  cr_assert_eq(n, prefix_len + r->len, "file is %zu bytes", n);
  for (size_t i = 0; i < prefix_len; i++) {
    cr_assert_eq(got[i], 'P', "prefix byte %zu", i);
  }
  cr_assert(memcmp(got + prefix_len, r->data, r->len) == 0,
            "the body is not in the file in order");
  free(got);
  uint8_t want[32];
  uint8_t sum[32];
  digest_of(r->data, r->len, want);
  EVP_DigestFinal_ex(r->sum, sum, NULL);
  cr_assert(memcmp(sum, want, 32) == 0, "Upload-Checksum digest differs");
}


Test(upload_writer,
     random_pieces_land_in_order_after_the_offset,
     .timeout = 30) {
  size_t len = 5 * BUF + 12345;
  uint8_t* data = random_bytes(len, 7);
  size_t pieces[] = {300 << 10, 3 * BUF, 64 << 10, 7};
  for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
    rig_t r;
    rig_init(&r, 4096);
    r.data = data;
    r.len = len;
    r.max_piece = pieces[k];
    r.seed = (unsigned) k + 1;
    rig_run(&r);
    assert_kept(&r, 4096);
    rig_close(&r);
  }
  free(data);
}


Test(upload_writer, byte_by_byte, .timeout = 30) {
  size_t len = 2 * BUF + 3;
  uint8_t* data = random_bytes(len, 8);
  rig_t r;
  rig_init(&r, 0);
  r.data = data;
  r.len = len;
  r.max_piece = 1;
  rig_run(&r);
  assert_kept(&r, 0);
  rig_close(&r);
  free(data);
}


Test(upload_writer, reads_on_while_one_buffer_is_written, .timeout = 30) {
  /* Fed without returning to the loop, no write can land: the second
   * buffer fills while the first is in flight, and the piece after it
   * pauses. */
  size_t len = 3 * BUF;
  uint8_t* data = random_bytes(len, 9);
  rig_t r;
  rig_init(&r, 0);
  r.data = data;
  r.len = len;
  size_t piece = 64 << 10;
  int rc = 0;
  size_t fed = 0;
  while (fed < len && rc == 0) {
    rc = srv_upload_writer_put(&r.w, data + fed, piece);
    fed += piece;
    if (fed <= 2 * BUF) {
      cr_assert_eq(rc, 0, "paused at %zu with a buffer free", fed);
    }
    if (fed > BUF && fed <= 2 * BUF) {
      cr_assert(r.w.io.is_busy, "the first buffer is not in flight");
    }
  }
  cr_assert_eq(rc, 1);
  cr_assert_eq(fed, 2 * BUF + piece, "paused at %zu", fed);
  r.pos = fed;
  r.is_paused = true;
  r.max_piece = piece;
  rig_run(&r);
  cr_assert_geq(r.rooms, 1);
  assert_kept(&r, 0);
  rig_close(&r);
  free(data);
}


Test(upload_writer, end_while_paused_writes_the_spill, .timeout = 30) {
  size_t len = 2 * BUF + 100;
  uint8_t* data = random_bytes(len, 10);
  rig_t r;
  rig_init(&r, 0);
  r.data = data;
  r.len = len;
  cr_assert_eq(srv_upload_writer_put(&r.w, data, 2 * BUF - 50), 0);
  cr_assert_eq(srv_upload_writer_put(&r.w, data + 2 * BUF - 50, 150), 1);
  /* The connection closes now: what was taken is kept. */
  r.end_rc = srv_upload_writer_end(&r.w, true);
  cr_assert_eq(r.end_rc, SRV_UPLOAD_WRITER_PENDING);
  r.pos = len;
  cr_assert_eq(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(r.dones, 1);
  cr_assert_eq(r.rooms, 0, "on_room after the end");
  assert_kept(&r, 0);
  rig_close(&r);
  free(data);
}


Test(upload_writer, dropping_writes_nothing_more_and_closes, .timeout = 30) {
  size_t len = 3 * BUF;
  uint8_t* data = random_bytes(len, 11);
  rig_t r;
  rig_init(&r, 0);
  r.data = data;
  cr_assert_eq(srv_upload_writer_put(&r.w, data, BUF), 0);       /* in flight */
  cr_assert_eq(srv_upload_writer_put(&r.w, data + BUF, BUF), 0); /* sealed */
  cr_assert_eq(srv_upload_writer_put(&r.w, data + 2 * BUF, 10), 1);
  r.end_rc = srv_upload_writer_end(&r.w, false);
  cr_assert_eq(r.end_rc, SRV_UPLOAD_WRITER_PENDING); /* the write lands */
  cr_assert_eq(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(r.dones, 1);
  cr_assert_eq(r.w.status, -ECANCELED);
  cr_assert_eq(r.w.written, BUF, "only the write in flight landed");
  struct stat st;
  cr_assert_eq(stat(r.path, &st), 0);
  cr_assert_eq(st.st_size, (off_t) BUF);
  cr_assert_lt(r.w.io.fd, 0);
  rig_close(&r);
  free(data);
}


Test(upload_writer, nothing_taken_ends_at_once_without_a_file, .timeout = 10) {
  rig_t r;
  rig_init(&r, 0);
  cr_assert_eq(srv_upload_writer_end(&r.w, true), 0);
  cr_assert_eq(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(r.dones, 0);
  cr_assert_eq(r.w.has_written, false);
  cr_assert_eq(access(r.path, F_OK), -1, "a file was created");
  rig_close(&r);
}


Test(upload_writer, a_failed_open_drops_the_rest, .timeout = 30) {
  size_t len = 4 * BUF;
  uint8_t* data = random_bytes(len, 12);
  rig_t r;
  rig_init(&r, 0);
  srv_upload_writer_free(&r.w);
  char missing[200];
  snprintf(missing, sizeof(missing), "%s/no/such/dir/u.part", r.dir);
  cr_assert_eq(srv_upload_writer_init(&r.w, &r.loop, missing, 0, &r), 0);
  r.w.on_room = on_room;
  r.w.on_done = on_done;
  r.w.hash.sum = r.sum;
  r.data = data;
  r.len = len;
  r.max_piece = 256 << 10;
  feed(&r);
  cr_assert_eq(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(r.w.status, -ENOENT, "status %d", r.w.status);
  cr_assert_eq(r.w.written, 0);
  cr_assert(r.w.is_ending, "a pause was never lifted");
  int done = r.end_rc == SRV_UPLOAD_WRITER_PENDING ? r.dones : 1;
  cr_assert_eq(done, 1);
  cr_assert_lt(r.w.io.fd, 0);
  rig_close(&r);
  free(data);
}
