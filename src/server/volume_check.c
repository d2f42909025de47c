/* volume_check.c: an upload's validation in steps off the loop. See
 * volume_check.h. The work function touches only its srv_volume_check_t
 * and the file it names; the loop reads the struct only after a step's
 * callback. */
#include "server/volume_check.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (1u << 20)


srv_volume_check_t* srv_volume_check_new(const char* path, void* data) {
  srv_volume_check_t* c = calloc(1, sizeof(*c));
  if (c == NULL) {
    return NULL;
  }
  c->md = EVP_MD_CTX_new();
  if (c->md == NULL || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
    srv_volume_check_free(c);
    return NULL;
  }
  snprintf(c->path, sizeof(c->path), "%s", path);
  const char* dir = getenv(SRV_CHECK_TEST_FIFOS_ENV);
  snprintf(c->test_fifos, sizeof(c->test_fifos), "%s", dir ? dir : "");
  c->data = data;
  c->req.data = c;
  return c;
}


void srv_volume_check_free(srv_volume_check_t* c) {
  if (c != NULL) {
    assert(!c->is_busy);
    EVP_MD_CTX_free(c->md);
    free(c);
  }
}


static float le_float(const uint8_t* p) {
  uint32_t v = (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
               (uint32_t) p[3] << 24;
  float f;
  memcpy(&f, &v, sizeof(f));
  return f;
}


/* Test only (SRV_CHECK_TEST_FIFOS_ENV): waits for the test's byte on the
 * step's own pipe, if the test made one. */
static void wait_test_fifo(const char* dir, unsigned step) {
  char path[300];
  snprintf(path, sizeof(path), "%s/%u", dir, step);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char b;
    while (read(fd, &b, 1) < 0 && errno == EINTR) {
    }
    close(fd);
  }
}


/* The first step: the header, checked against the file's size. */
static int check_header(srv_volume_check_t* c, int fd, uint8_t* buf) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = -errno;
    snprintf(c->why, sizeof(c->why), "the uploaded file cannot be read");
    return err;
  }
  c->size = (uint64_t) st.st_size;
  ssize_t n = pread(fd, buf, CORE_MRC_HEADER_LEN, 0);
  char err[200];
  if (n != CORE_MRC_HEADER_LEN) {
    snprintf(c->why, sizeof(c->why),
             "not an MRC file: shorter than the 1024-byte header");
    return -EINVAL;
  }
  if (core_mrc_header_parse(buf, CORE_MRC_HEADER_LEN, c->size, &c->h, err,
                            sizeof(err)) != 0) {
    snprintf(c->why, sizeof(c->why), "not a valid MRC2014 file: %s", err);
    return -EINVAL;
  }
  /* MRC2014 origin: x, y, z floats at byte 196; we report Z, Y, X. */
  c->origin[0] = le_float(buf + 204);
  c->origin[1] = le_float(buf + 200);
  c->origin[2] = le_float(buf + 196);
  c->is_started = true;
  return 0;
}


/* Hashes up to SRV_CHECK_STEP_BYTES from c->off. */
static int hash_step(srv_volume_check_t* c, int fd, uint8_t* buf) {
  uint64_t end = c->size - c->off > SRV_CHECK_STEP_BYTES
                     ? c->off + SRV_CHECK_STEP_BYTES
                     : c->size;
  while (c->off < end) {
    uint64_t want = end - c->off < READ_CHUNK ? end - c->off : READ_CHUNK;
    ssize_t n = pread(fd, buf, (size_t) want, (off_t) c->off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      int err = n < 0 ? -errno : -EIO; /* 0: shorter than it was */
      snprintf(c->why, sizeof(c->why), "the uploaded file cannot be read");
      return err;
    }
    if (EVP_DigestUpdate(c->md, buf, (size_t) n) != 1) {
      snprintf(c->why, sizeof(c->why), "out of memory");
      return -ENOMEM;
    }
    c->off += (uint64_t) n;
  }
  if (c->off == c->size) {
    unsigned char d[32];
    EVP_DigestFinal_ex(c->md, d, NULL);
    for (int i = 0; i < 32; i++) {
      snprintf(c->sha256 + 2 * i, 3, "%02x", d[i]);
    }
    c->is_done = true;
  }
  return 0;
}


static void check_work(uv_work_t* req) {
  srv_volume_check_t* c = req->data;
  uint8_t* buf = malloc(READ_CHUNK);
  int fd = open(c->path, O_RDONLY | O_CLOEXEC);
  if (c->test_fifos[0] != '\0') {
    wait_test_fifo(c->test_fifos, c->steps); /* the file open, as a step */
  }
  c->steps++;
  if (buf == NULL || fd < 0) {
    c->status = fd < 0 ? -errno : -ENOMEM; /* before snprintf touches errno */
    snprintf(c->why, sizeof(c->why), "%s",
             fd < 0 ? "the uploaded file cannot be read" : "out of memory");
  } else {
    c->status = c->is_started ? 0 : check_header(c, fd, buf);
    if (c->status == 0) {
      c->status = hash_step(c, fd, buf);
    }
  }
  if (fd >= 0) {
    close(fd);
  }
  free(buf);
}


static void check_done(uv_work_t* req, int status) {
  srv_volume_check_t* c = req->data;
  c->is_busy = false;
  if (status != 0 && c->status == 0) {
    c->status = status;
    snprintf(c->why, sizeof(c->why), "the validation was cancelled");
  }
  c->cb(c);
}


int srv_volume_check_step(uv_loop_t* loop,
                          srv_volume_check_t* c,
                          srv_volume_check_cb cb) {
  assert(!c->is_busy && !c->is_done && c->status == 0);
  c->cb = cb;
  c->is_busy = true;
  int err = uv_queue_work(loop, &c->req, check_work, check_done);
  if (err != 0) {
    c->is_busy = false;
  }
  return err;
}
