/* test_client_chunks.c: libcryomamba's chunked delta previews
 * (docs/protocol.md 11) against the scripted fake server
 * (tests/support/fake_ws.c): a keyframe and deltas rebuild a random mask
 * exactly, at the connection's level and the plane level; zero chunks
 * clear; bad chunks (magic, coordinates, sizes, base) are reported, the
 * connection dropped and the next one asks for no since; a reconnect
 * asks with since/epoch, keeps the masks, and sends the view again. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "core/chunk.h"
#include "fake_ws.h"

/* ---- messages ---- */

static char* connected_chunks(const char* shape, const char* epoch) {
  char data[512];
  snprintf(data, sizeof(data),
           "{\"state\":\"running\",\"progress\":0.1,\"last_seq\":0,"
           "\"volume\":{\"shape\":%s,\"voxel_size\":[1,1,1]},"
           "\"preview_shape\":%s,\"params\":{\"preview_scale\":1,"
           "\"preview_hz\":1.0},\"chunks\":{\"edge\":32,\"levels\":5,"
           "\"epoch\":\"%s\"}}",
           shape, shape, epoch);
  return fake_msg("connected", 0, data);
}


static char* delta(unsigned seq,
                   const char* epoch,
                   unsigned base,
                   bool key,
                   bool complete,
                   unsigned chunks,
                   unsigned scale,
                   const core_shape_t* lshape,
                   unsigned plane_scale) {
  char data[512], plane[16];
  snprintf(plane, sizeof(plane), "%u", plane_scale);
  snprintf(data, sizeof(data),
           "{\"epoch\":\"%s\",\"base\":%u,\"keyframe\":%s,\"complete\":%s,"
           "\"chunks\":%u,\"scale\":%u,\"shape\":[%u,%u,%u],"
           "\"plane_scale\":%s}",
           epoch, base, key ? "true" : "false", complete ? "true" : "false",
           chunks, scale, lshape->d[0], lshape->d[1], lshape->d[2],
           plane_scale > 0 ? plane : "null");
  return fake_msg("delta", seq, data);
}


/* A level mask and its grid. */
typedef struct {
  core_chunk_grid_t g;
  uint8_t* v;
} lmask_t;

static lmask_t lmask(const core_shape_t* vol, unsigned level) {
  lmask_t m = {.g = core_chunk_grid(vol, level)};
  m.v = calloc(1, (size_t) core_shape_voxels(&m.g.shape));
  cr_assert_not_null(m.v);
  return m;
}

static core_box_t whole(const lmask_t* m) {
  core_box_t b = {{0, 0, 0},
                  {m->g.shape.d[0], m->g.shape.d[1], m->g.shape.d[2]}};
  return b;
}

/* Random boxes of labels 1 and 2 over a zero mask; chunk (0,0,0) stays
 * zero, so a keyframe leaves some out. */
static void scribble(lmask_t* m, unsigned* seed, int boxes) {
  for (int i = 0; i < boxes; i++) {
    uint32_t lo[3], hi[3];
    for (int a = 0; a < 3; a++) {
      uint32_t n = m->g.shape.d[a];
      lo[a] = (uint32_t) rand_r(seed) % n;
      hi[a] = lo[a] + 1 + (uint32_t) rand_r(seed) % 12;
      hi[a] = hi[a] > n ? n : hi[a];
    }
    uint8_t label = (uint8_t) (1 + rand_r(seed) % 2);
    for (uint32_t z = lo[0]; z < hi[0]; z++) {
      for (uint32_t y = lo[1]; y < hi[1]; y++) {
        for (uint32_t x = lo[2]; x < hi[2]; x++) {
          if (z >= CORE_CHUNK_EDGE || y >= CORE_CHUNK_EDGE ||
              x >= CORE_CHUNK_EDGE) {
            m->v[((size_t) z * m->g.shape.d[1] + y) * m->g.shape.d[2] + x] =
                label;
          }
        }
      }
    }
  }
}

/* Chunk i of `m` as a chunk message (the zero flag when all zero); *len
 * set. */
static uint8_t* chunk_of(const lmask_t* m,
                         uint64_t i,
                         uint32_t version,
                         size_t* len) {
  uint32_t c[3];
  core_chunk_coords(&m->g, i, c);
  core_box_t b = core_chunk_box(&m->g, c);
  core_box_t src = whole(m);
  size_t n = (size_t) core_box_voxels(&b);
  uint8_t vox[CORE_CHUNK_VOXELS];
  core_chunk_cut(m->v, &src, &b, vox);
  core_chunk_head_t h = {.level = (uint8_t) m->g.level, .version = version};
  memcpy(h.c, c, sizeof(h.c));
  uint8_t* out = malloc(CORE_CHUNK_HEAD_LEN + core_zstd_bound(n));
  cr_assert_not_null(out);
  if (core_bytes_all_zero(vox, n)) {
    h.flags = CORE_CHUNK_FLAG_ZERO;
  } else {
    long z = core_zstd_compress(vox, n, out + CORE_CHUNK_HEAD_LEN,
                                core_zstd_bound(n), 1);
    cr_assert_gt(z, 0);
    h.payload_len = (uint32_t) z;
  }
  core_chunk_head_write(&h, out);
  *len = CORE_CHUNK_HEAD_LEN + h.payload_len;
  return out;
}

static bool chunk_is_zero(const lmask_t* m, uint64_t i) {
  uint32_t c[3];
  core_chunk_coords(&m->g, i, c);
  core_box_t b = core_chunk_box(&m->g, c);
  core_box_t src = whole(m);
  uint8_t vox[CORE_CHUNK_VOXELS];
  core_chunk_cut(m->v, &src, &b, vox);
  return core_bytes_all_zero(vox, (size_t) core_box_voxels(&b));
}

static bool chunk_differs(const lmask_t* a, const lmask_t* b, uint64_t i) {
  uint32_t c[3];
  core_chunk_coords(&a->g, i, c);
  core_box_t box = core_chunk_box(&a->g, c);
  core_box_t src = whole(a);
  uint8_t va[CORE_CHUNK_VOXELS], vb[CORE_CHUNK_VOXELS];
  core_chunk_cut(a->v, &src, &box, va);
  core_chunk_cut(b->v, &src, &box, vb);
  return memcmp(va, vb, (size_t) core_box_voxels(&box)) != 0;
}

static void add_chunk(fake_t* f,
                      int conn,
                      const lmask_t* m,
                      uint64_t i,
                      uint32_t version) {
  size_t len;
  uint8_t* b = chunk_of(m, i, version, &len);
  fake_add_bytes(f, conn, b, len);
}

/* ---- the client side ---- */

#define SNAPS 8

typedef struct {
  int deltas, complete, keyframes;
  size_t chunks;
  /* Copies of the masks after each complete delta, by level. */
  uint8_t* snap[SNAPS][CORE_CHUNK_LEVELS];
  uint64_t snap_seq[SNAPS];
  int errors[8];
  int finished, closed, closed_status, connected;
  bool chunks_outside_box;
} seen_t;

static void on_chunks(cm_sub_t* sub, const cm_chunks_t* ev, void* u) {
  seen_t* s = u;
  s->deltas++;
  s->keyframes += ev->is_keyframe;
  s->chunks += ev->chunk_count;
  for (size_t i = 0; i < ev->chunk_count; i++) {
    const cm_chunk_ref_t* r = &ev->chunks[i];
    for (int a = 0; a < 3; a++) {
      if (r->lo[a] != r->c[a] * CORE_CHUNK_EDGE || r->hi[a] <= r->lo[a] ||
          r->hi[a] - r->lo[a] > CORE_CHUNK_EDGE) {
        s->chunks_outside_box = true;
      }
    }
  }
  if (!ev->is_complete || s->complete >= SNAPS) {
    return;
  }
  for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
    uint32_t shape[3];
    const uint8_t* m = cm_sub_chunk_mask(sub, 1u << l, shape);
    if (m != NULL) {
      size_t n = (size_t) shape[0] * shape[1] * shape[2];
      s->snap[s->complete][l] = malloc(n);
      memcpy(s->snap[s->complete][l], m, n);
    }
  }
  s->snap_seq[s->complete++] = ev->seq;
}

static void on_connected(cm_sub_t* sub, const cm_connected_t* ev, void* u) {
  (void) sub;
  (void) ev;
  ((seen_t*) u)->connected++;
}

static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* u) {
  (void) sub;
  (void) ev;
  ((seen_t*) u)->finished++;
}

static void on_error(cm_sub_t* sub, const cm_sub_error_t* ev, void* u) {
  (void) sub;
  ((seen_t*) u)->errors[ev->kind]++;
}

static void on_closed(cm_sub_t* sub, int status, void* u) {
  (void) sub;
  seen_t* s = u;
  s->closed++;
  s->closed_status = status;
}

static const cm_sub_cbs_t cbs = {
    .on_connected = on_connected,
    .on_chunks = on_chunks,
    .on_finished = on_finished,
    .on_error = on_error,
    .on_closed = on_closed,
};

typedef struct {
  uint32_t scale;
  bool has_view;
  int64_t view[3];
  double zoom;
  uint64_t max_mask_bytes; /* 0: the default */
} how_t;

static void run(fake_t* f, seen_t* seen, const how_t* how) {
  /* A view written to a connection the fake dropped (client.h, SIGPIPE). */
  signal(SIGPIPE, SIG_IGN);
  fake_start(f);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", f->port);
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = url;
  o.reconnect_initial_ms = 20;
  o.reconnect_max_ms = 100;
  o.max_reconnect_attempts = 5;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  cm_sub_options_t so;
  cm_sub_options_init(&so);
  so.encoding = CM_ENCODING_CHUNKS;
  so.scale = how->scale;
  if (how->max_mask_bytes != 0) {
    so.max_mask_bytes = how->max_mask_bytes;
  }
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start_opts(c, FAKE_JOB, &so, &cbs, seen, &sub), 0);
  if (how->has_view) {
    cr_assert_eq(cm_sub_set_view(sub, how->view[0], how->view[1], how->view[2],
                                 how->zoom),
                 0);
  }
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen->closed, 1);
  cm_sub_stats_t st;
  cm_sub_get_stats(sub, &st);
  cr_assert_gt(st.wire_bytes, st.bytes, "the wire carries more than messages");
  cm_sub_free(sub);
  cm_client_free(c);
  fake_stop(f);
}

static void seen_free(seen_t* s) {
  for (int i = 0; i < SNAPS; i++) {
    for (unsigned l = 0; l < CORE_CHUNK_LEVELS; l++) {
      free(s->snap[i][l]);
    }
  }
}

static void assert_same(const uint8_t* got,
                        const lmask_t* want,
                        const char* what) {
  cr_assert_not_null(got, "%s: no mask", what);
  size_t n = (size_t) core_shape_voxels(&want->g.shape);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    bad += got[i] != want->v[i];
  }
  cr_assert_eq(bad, 0, "%s: %zu of %zu voxels differ", what, bad, n);
}


Test(client_chunks, keyframe_then_deltas_rebuild_a_random_mask, .timeout = 60) {
  /* Connection level 1 (scale 2), plane level 0 for a view. */
  core_shape_t vol = {{40, 70, 100}};
  lmask_t a1 = lmask(&vol, 1), b1 = lmask(&vol, 1);
  lmask_t a0 = lmask(&vol, 0), b0 = lmask(&vol, 0);
  unsigned seed = 7;
  scribble(&a1, &seed, 40);
  scribble(&a0, &seed, 60);
  memcpy(b1.v, a1.v, (size_t) core_shape_voxels(&a1.g.shape));
  memcpy(b0.v, a0.v, (size_t) core_shape_voxels(&a0.g.shape));
  scribble(&b1, &seed, 10);
  scribble(&b0, &seed, 10);
  /* One chunk of each level becomes zero: the delta must clear it. */
  uint64_t gone1 = a1.g.count - 1, gone0 = a0.g.count - 1;
  cr_assert(!chunk_is_zero(&a1, gone1) && !chunk_is_zero(&a0, gone0));
  for (int pass = 0; pass < 2; pass++) {
    lmask_t* m = pass == 0 ? &b1 : &b0;
    uint64_t gone = pass == 0 ? gone1 : gone0;
    uint32_t c[3];
    core_chunk_coords(&m->g, gone, c);
    core_box_t box = core_chunk_box(&m->g, c);
    uint8_t zero[CORE_CHUNK_VOXELS] = {0};
    core_chunk_place(m->v, &m->g.shape, &box, zero);
  }
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[40,70,100]", "ep1"), 0);
  fake_add(&f, 0, ACT_AWAIT_TEXT, NULL, 0); /* the view */
  /* The keyframe in two rounds: level 1 first, then level 0's chunks. */
  unsigned n1 = 0, n0 = 0;
  for (uint64_t i = 0; i < a1.g.count; i++) {
    n1 += !chunk_is_zero(&a1, i);
  }
  for (uint64_t i = 0; i < a0.g.count; i++) {
    n0 += !chunk_is_zero(&a0, i);
  }
  cr_assert(n1 < a1.g.count && n0 < a0.g.count, "some chunks are zero");
  fake_add(&f, 0, ACT_TEXT,
           delta(3, "ep1", 0, true, false, n1, 2, &a1.g.shape, 1), 0);
  for (uint64_t i = 0; i < a1.g.count; i++) {
    if (!chunk_is_zero(&a1, i)) {
      add_chunk(&f, 0, &a1, i, 3);
    }
  }
  fake_add(&f, 0, ACT_TEXT, fake_progress(4, 0.4), 0); /* between deltas */
  fake_add(&f, 0, ACT_TEXT,
           delta(3, "ep1", 0, false, true, n0, 2, &a1.g.shape, 1), 0);
  for (uint64_t i = 0; i < a0.g.count; i++) {
    if (!chunk_is_zero(&a0, i)) {
      add_chunk(&f, 0, &a0, i, 2);
    }
  }
  /* The delta: only what changed, levels interleaved. */
  unsigned d = 0;
  for (uint64_t i = 0; i < a1.g.count; i++) {
    d += chunk_differs(&a1, &b1, i);
  }
  for (uint64_t i = 0; i < a0.g.count; i++) {
    d += chunk_differs(&a0, &b0, i);
  }
  fake_add(&f, 0, ACT_TEXT,
           delta(5, "ep1", 3, false, true, d, 2, &a1.g.shape, 1), 0);
  for (uint64_t i = 0; i < a0.g.count; i++) {
    if (chunk_differs(&a0, &b0, i)) {
      add_chunk(&f, 0, &b0, i, 5);
    }
    if (i < a1.g.count && chunk_differs(&a1, &b1, i)) {
      add_chunk(&f, 0, &b1, i, 5);
    }
  }
  fake_add(&f, 0, ACT_TEXT, fake_completed(6), 0);
  seen_t seen = {0};
  how_t how = {.scale = 2, .has_view = true, .view = {10, -1, 50}, .zoom = 2};
  run(&f, &seen, &how);
  cr_assert_str_eq(f.targets[0],
                   "/ws/jobs/" FAKE_JOB "?encoding=chunks&scale=2");
  cr_assert_not_null(f.received[0]);
  cr_assert(strstr(f.received[0],
                   "{\"type\":\"view\",\"z\":10,\"y\":null,"
                   "\"x\":50,\"zoom\":2") != NULL,
            "view sent: %s", f.received[0]);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  cr_assert_eq(seen.deltas, 3);
  cr_assert_eq(seen.keyframes, 1);
  cr_assert_eq(seen.complete, 2);
  cr_assert_eq(seen.chunks, n1 + n0 + d);
  cr_assert(!seen.chunks_outside_box);
  cr_assert_eq(seen.snap_seq[0], 3);
  cr_assert_eq(seen.snap_seq[1], 5);
  assert_same(seen.snap[0][1], &a1, "level 1 after the keyframe");
  assert_same(seen.snap[0][0], &a0, "level 0 after the keyframe");
  assert_same(seen.snap[1][1], &b1, "level 1 after the delta");
  assert_same(seen.snap[1][0], &b0, "level 0 after the delta");
  cr_assert_null(seen.snap[1][2], "no mask at a level never sent");
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed_status, 0);
  seen_free(&seen);
  fake_free_received(&f);
  free(a1.v), free(b1.v), free(a0.v), free(b0.v);
}


Test(client_chunks, a_mask_over_max_mask_bytes_ends_the_sub, .timeout = 60) {
  core_shape_t vol = {{33, 20, 20}}; /* 13200 bytes at scale 1 */
  lmask_t m = lmask(&vol, 0);
  memset(m.v, 1, (size_t) core_shape_voxels(&m.g.shape));
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[33,20,20]", "e"), 0);
  fake_add(&f, 0, ACT_TEXT, delta(1, "e", 0, true, true, 2, 1, &m.g.shape, 0),
           0);
  add_chunk(&f, 0, &m, 0, 1);
  add_chunk(&f, 0, &m, 1, 1);
  seen_t seen = {0};
  how_t how = {.scale = 1, .max_mask_bytes = 13199};
  run(&f, &seen, &how);
  cr_assert_eq(seen.errors[CM_SUB_ERR_SKIPPED], 1, "mask_too_large");
  cr_assert_eq(seen.complete, 0, "no delta applied");
  cr_assert_eq(seen.closed, 1);
  seen_free(&seen);
  free(m.v);
}


Test(client_chunks, zero_chunks_clear, .timeout = 60) {
  core_shape_t vol = {{33, 20, 20}}; /* two chunks along z, one thin */
  lmask_t m = lmask(&vol, 0);
  memset(m.v, 2, (size_t) core_shape_voxels(&m.g.shape));
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[33,20,20]", "e"), 0);
  fake_add(&f, 0, ACT_TEXT, delta(1, "e", 0, true, true, 2, 1, &m.g.shape, 0),
           0);
  add_chunk(&f, 0, &m, 0, 1);
  add_chunk(&f, 0, &m, 1, 1);
  memset(m.v, 0, (size_t) core_shape_voxels(&m.g.shape));
  fake_add(&f, 0, ACT_TEXT, delta(2, "e", 1, false, true, 1, 1, &m.g.shape, 0),
           0);
  add_chunk(&f, 0, &m, 1, 2); /* all zero: the zero flag, no payload */
  fake_add(&f, 0, ACT_TEXT, fake_completed(3), 0);
  seen_t seen = {0};
  how_t how = {.scale = 0};
  run(&f, &seen, &how);
  cr_assert_str_eq(f.targets[0], "/ws/jobs/" FAKE_JOB "?encoding=chunks");
  cr_assert_eq(seen.complete, 2);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  const uint8_t* last = seen.snap[1][0];
  cr_assert_not_null(last);
  size_t plane = 20 * 20;
  for (size_t i = 0; i < 33 * plane; i++) {
    cr_assert_eq(last[i], i < 32 * plane ? 2 : 0, "voxel %zu", i);
  }
  seen_free(&seen);
  free(m.v);
}


Test(client_chunks, empty_keyframe_of_a_job_without_previews, .timeout = 60) {
  /* Before the job's first preview there is no preview seq: the empty
   * keyframe may carry 0, and the next delta builds on it. */
  core_shape_t vol = {{10, 10, 10}};
  lmask_t m = lmask(&vol, 0);
  memset(m.v, 1, 1000);
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[10,10,10]", "e"), 0);
  fake_add(&f, 0, ACT_TEXT, delta(0, "e", 0, true, true, 0, 1, &m.g.shape, 0),
           0);
  fake_add(&f, 0, ACT_TEXT, fake_progress(1, 0.1), 0);
  fake_add(&f, 0, ACT_TEXT, delta(2, "e", 0, false, true, 1, 1, &m.g.shape, 0),
           0);
  add_chunk(&f, 0, &m, 0, 2);
  fake_add(&f, 0, ACT_TEXT, fake_completed(3), 0);
  seen_t seen = {0};
  how_t how = {.scale = 1};
  run(&f, &seen, &how);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  cr_assert_eq(seen.complete, 2);
  cr_assert_eq(seen.snap_seq[0], 0);
  cr_assert(core_bytes_all_zero(seen.snap[0][0], 1000));
  assert_same(seen.snap[1][0], &m, "after the first delta");
  seen_free(&seen);
  free(m.v);
}


/* ---- hostile chunks ---- */

typedef enum {
  BAD_MAGIC,
  BAD_COORDS,
  BAD_SIZE,
  BAD_BASE,
  BAD_LEVEL,
  BAD_STRAY,
  BAD_COUNT
} bad_t;

static const char* bad_names[] = {"magic", "coords", "size",
                                  "base",  "level",  "stray"};

static void bad_chunk_case(bad_t bad) {
  core_shape_t vol = {{40, 40, 40}};
  lmask_t m = lmask(&vol, 0);
  memset(m.v, 1, (size_t) core_shape_voxels(&m.g.shape));
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[40,40,40]", "e1"), 0);
  fake_add(&f, 0, ACT_TEXT, delta(2, "e1", 0, true, true, 1, 1, &m.g.shape, 0),
           0);
  add_chunk(&f, 0, &m, 0, 2);
  /* Then the bad delta, since is 2 now. */
  fake_add(
      &f, 0, ACT_TEXT,
      delta(3, "e1", bad == BAD_BASE ? 1 : 2, false, true, 1, 1, &m.g.shape, 0),
      0);
  size_t len;
  uint8_t* b = chunk_of(&m, 1, 3, &len);
  switch (bad) {
  case BAD_MAGIC:
    b[0] = 'X';
    break;
  case BAD_COORDS:
    b[8 + 3] = 2; /* cz = 2 of a 2-chunk axis */
    break;
  case BAD_SIZE: {
    /* A frame of one voxel fewer than the chunk holds. */
    uint32_t c[3];
    core_chunk_coords(&m.g, 1, c);
    core_box_t box = core_chunk_box(&m.g, c);
    size_t n = (size_t) core_box_voxels(&box) - 1;
    uint8_t vox[CORE_CHUNK_VOXELS];
    memset(vox, 1, n);
    free(b);
    b = malloc(CORE_CHUNK_HEAD_LEN + core_zstd_bound(n));
    long z = core_zstd_compress(vox, n, b + CORE_CHUNK_HEAD_LEN,
                                core_zstd_bound(n), 1);
    core_chunk_head_t h = {
        .level = 0, .version = 3, .payload_len = (uint32_t) z};
    memcpy(h.c, c, sizeof(c));
    core_chunk_head_write(&h, b);
    len = CORE_CHUNK_HEAD_LEN + (size_t) z;
    break;
  }
  case BAD_LEVEL:
    b[4] = 3; /* a level the delta does not carry */
    break;
  case BAD_BASE:
  case BAD_STRAY:
  case BAD_COUNT:
    break;
  }
  fake_add_bytes(&f, 0, b, len);
  if (bad == BAD_STRAY) {
    add_chunk(&f, 0, &m, 2, 3); /* one more than announced */
  }
  fake_add(&f, 0, ACT_TEXT, fake_completed(9), 0); /* ignored if broken */
  fake_add(&f, 1, ACT_TEXT, connected_chunks("[40,40,40]", "e1"), 0);
  fake_add(&f, 1, ACT_TEXT, delta(4, "e1", 0, true, true, 0, 1, &m.g.shape, 0),
           0);
  fake_add(&f, 1, ACT_TEXT, fake_completed(9), 0);
  seen_t seen = {0};
  how_t how = {.scale = 1};
  run(&f, &seen, &how);
  const char* name = bad_names[bad];
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 1, "%s: invalid %d", name,
               seen.errors[CM_SUB_ERR_INVALID]);
  cr_assert_eq(f.accepted, 2, "%s: reconnected once", name);
  cr_assert_eq(seen.connected, 2, "%s", name);
  cr_assert_null(strstr(f.targets[1], "since="), "%s: %s", name, f.targets[1]);
  cr_assert_eq(seen.keyframes, 2, "%s", name);
  cr_assert_eq(seen.finished, 1, "%s", name);
  cr_assert_eq(seen.closed_status, 0, "%s", name);
  /* The last keyframe was empty: the mask is zero again. */
  const uint8_t* last = seen.snap[seen.complete - 1][0];
  cr_assert(core_bytes_all_zero(last, 40 * 40 * 40), "%s", name);
  seen_free(&seen);
  free(m.v);
}


Test(client_chunks,
     bad_chunks_are_reported_and_reconnect_without_since,
     .timeout = 120) {
  for (bad_t b = BAD_MAGIC; b < BAD_COUNT; b++) {
    bad_chunk_case(b);
  }
}


Test(client_chunks, reconnect_sends_since_epoch_and_the_view, .timeout = 60) {
  core_shape_t vol = {{40, 40, 40}};
  lmask_t m = lmask(&vol, 0);
  unsigned seed = 3;
  scribble(&m, &seed, 30);
  for (size_t i = 0; i < 40 * 40 * 40; i += 97) {
    m.v[i] = 2; /* every chunk has something */
  }
  fake_t f = {0};
  fake_add(&f, 0, ACT_TEXT, connected_chunks("[40,40,40]", "e 1/x"), 0);
  /* The view is read before the drop: a close with unread input is a reset,
   * which may discard chunks the client has not read yet. */
  fake_add(&f, 0, ACT_AWAIT_TEXT, NULL, 0);
  fake_add(
      &f, 0, ACT_TEXT,
      delta(4, "e 1/x", 0, true, true, (unsigned) m.g.count, 1, &m.g.shape, 0),
      0);
  for (uint64_t i = 0; i < m.g.count; i++) {
    add_chunk(&f, 0, &m, i, 4);
  }
  fake_add(&f, 0, ACT_DROP, NULL, 0);
  /* Only chunk 5 changed since 4; the rest must survive the reconnect. */
  uint32_t c[3];
  core_chunk_coords(&m.g, 5, c);
  core_box_t box = core_chunk_box(&m.g, c);
  uint8_t ones[CORE_CHUNK_VOXELS];
  memset(ones, 1, sizeof(ones));
  core_chunk_place(m.v, &m.g.shape, &box, ones);
  fake_add(&f, 1, ACT_TEXT, connected_chunks("[40,40,40]", "e 1/x"), 0);
  fake_add(&f, 1, ACT_AWAIT_TEXT, NULL, 0); /* the view, again */
  fake_add(&f, 1, ACT_TEXT,
           delta(6, "e 1/x", 4, false, true, 1, 1, &m.g.shape, 0), 0);
  add_chunk(&f, 1, &m, 5, 6);
  fake_add(&f, 1, ACT_TEXT, fake_completed(7), 0);
  seen_t seen = {0};
  how_t how = {.scale = 1, .has_view = true, .view = {-1, 3, -1}};
  run(&f, &seen, &how);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  cr_assert_eq(seen.connected, 2);
  cr_assert_str_eq(f.targets[0],
                   "/ws/jobs/" FAKE_JOB "?encoding=chunks&scale=1");
  cr_assert_str_eq(f.targets[1],
                   "/ws/jobs/" FAKE_JOB
                   "?encoding=chunks&scale=1&since=4&epoch=e%201%2Fx");
  static const char view[] =
      "{\"type\":\"view\",\"z\":null,\"y\":3,\"x\":null}\n";
  cr_assert_not_null(f.received[0]);
  cr_assert_str_eq(f.received[0], view, "sent after the first connected");
  cr_assert_not_null(f.received[1]);
  cr_assert_str_eq(f.received[1], view, "sent again after the reconnect");
  cr_assert_eq(seen.complete, 2);
  cr_assert_eq(seen.snap_seq[1], 6);
  assert_same(seen.snap[1][0], &m, "after the reconnect's delta");
  seen_free(&seen);
  fake_free_received(&f);
  free(m.v);
}


Test(client_chunks, options_and_view_are_checked) {
  cm_client_options_t o;
  cm_client_options_init(&o);
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  cm_sub_options_t so;
  cm_sub_options_init(&so);
  cm_sub_t* sub = NULL;
  seen_t seen = {0};
  so.scale = 2; /* not with base64 */
  cr_assert_eq(cm_sub_start_opts(c, FAKE_JOB, &so, &cbs, &seen, &sub),
               CM_EBADARG);
  so.encoding = CM_ENCODING_CHUNKS;
  so.scale = 3;
  cr_assert_eq(cm_sub_start_opts(c, FAKE_JOB, &so, &cbs, &seen, &sub),
               CM_EBADARG);
  so.scale = 0;
  cr_assert_eq(cm_sub_start_opts(c, FAKE_JOB, &so, &cbs, &seen, &sub), 0);
  cr_assert_eq(cm_sub_set_view(sub, -2, 0, 0, 1), CM_EBADARG);
  cr_assert_eq(cm_sub_set_view(sub, 0, 0, 0, -1), CM_EBADARG);
  cm_sub_close(sub);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen.closed, 1);
  cr_assert_eq(seen.connected, 0);
  cm_sub_free(sub);
  cm_client_free(c);
}
