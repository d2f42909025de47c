/* test_client_failover.c: libcryomamba's list of server URLs
 * (src/client/servers.c): parsing (comma-separated server_url, the
 * server_urls array, spaces, empty items, the bound), rotation and the
 * preferred server, the REST failover rule as a table, and subscriptions
 * moving between two scripted fake servers (tests/support/fake_ws.c), each
 * with its own prefix: base64 events go on from the second, chunks resume
 * with since/epoch on a server with the same epoch, take a keyframe from
 * one with another, and refuse a delta that builds on a since the new
 * server's table never had. Async REST against two tiny HTTP servers: a
 * GET moves on past a dead port and later requests stay on the server that
 * answered; a POST taken by a server that then hung up is not sent to the
 * next one, a GET is. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_int.h"
#include "client/servers.h"
#include "fake_ws.h"

/* ---- parsing and rotation ---- */

Test(client_failover, a_comma_separated_list_with_spaces) {
  client_servers_t s;
  cr_assert_eq(client_servers_init(
                   &s, " http://a:1/p1/ ,https://b/p2,\tws://[::1]:3", NULL, 0),
               0);
  cr_assert_eq(s.count, 3);
  cr_assert_str_eq(s.v[0].host, "a");
  cr_assert_eq(s.v[0].port, 1);
  cr_assert_str_eq(s.v[0].prefix, "/p1");
  cr_assert(!s.v[0].is_tls);
  cr_assert_str_eq(s.v[1].host, "b");
  cr_assert_eq(s.v[1].port, 443);
  cr_assert_str_eq(s.v[1].prefix, "/p2");
  cr_assert(s.v[1].is_tls);
  cr_assert_str_eq(s.v[2].host, "::1");
  cr_assert_str_eq(s.v[2].url, "http://[::1]:3");
  cr_assert(client_servers_any_tls(&s));
  client_servers_free(&s);
}


Test(client_failover, one_url_the_default_and_the_array) {
  client_servers_t s;
  cr_assert_eq(client_servers_init(&s, NULL, NULL, 0), 0);
  cr_assert_eq(s.count, 1);
  cr_assert_str_eq(s.v[0].url, "http://127.0.0.1:8000");
  cr_assert(!client_servers_any_tls(&s));
  client_servers_free(&s);
  /* The array wins over server_url, and its items are not split. */
  const char* urls[] = {"http://x:1", "http://y:2/a,b"};
  cr_assert_eq(client_servers_init(&s, "http://ignored:9", urls, 2), 0);
  cr_assert_eq(s.count, 2);
  cr_assert_str_eq(s.v[1].prefix, "/a,b");
  client_servers_free(&s);
}


Test(client_failover, bad_lists_are_refused) {
  client_servers_t s;
  const char* bad[] = {"",
                       ",",
                       "http://a:1,",
                       ",http://a:1",
                       "http://a:1,,http://b:2",
                       "http://a:1, ,http://b:2",
                       "http://a:1,ftp://b",
                       "http://a:1,http://b:0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(client_servers_init(&s, bad[i], NULL, 0), CM_EBADURL, "%s",
                 bad[i]);
    cr_assert_null(s.v);
  }
  const char* with_null[] = {"http://a:1", NULL};
  cr_assert_eq(client_servers_init(&s, NULL, with_null, 2), CM_EBADURL);
  cr_assert_eq(client_servers_init(&s, NULL, NULL, 2), CM_EBADARG);
  char many[1024] = "";
  for (int i = 0; i <= CLIENT_MAX_SERVERS; i++) {
    size_t n = strlen(many);
    snprintf(many + n, sizeof(many) - n, "%shttp://h:%d", i > 0 ? "," : "",
             i + 1);
  }
  cr_assert_eq(client_servers_init(&s, many, NULL, 0), CM_EBADARG);
  *strrchr(many, ',') = '\0'; /* exactly the bound */
  cr_assert_eq(client_servers_init(&s, many, NULL, 0), 0);
  cr_assert_eq(s.count, CLIENT_MAX_SERVERS);
  client_servers_free(&s);
  /* Through the public call: the same answers. */
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = "http://a:1,,http://b:2";
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), CM_EBADURL);
  o.server_url = "http://a:1,http://b:2";
  cr_assert_eq(cm_client_new(&o, &c), 0);
  cr_assert_eq(c->servers.count, 2);
  cr_assert_str_eq(c->servers.v[0].host, "a");
  char key[600];
  client_servers_key(&c->servers.v[1], key, sizeof key);
  cr_assert_str_eq(key, "http://b:2", "an upload's record names its server");
  cm_client_free(c);
}


Test(client_failover, rotation_wraps_and_prefers_the_last_that_answered) {
  client_servers_t s;
  cr_assert_eq(
      client_servers_init(&s, "http://a:1,http://b:2,http://c:3", NULL, 0), 0);
  cr_assert_eq(client_servers_first(&s), 0);
  cr_assert_eq(client_servers_next(&s, 0), 1);
  cr_assert_eq(client_servers_next(&s, 2), 0);
  client_servers_prefer(&s, 2);
  cr_assert_eq(client_servers_first(&s), 2);
  client_servers_prefer(&s, 7); /* out of range: ignored */
  cr_assert_eq(client_servers_first(&s), 2);
  client_servers_free(&s);
}


Test(client_failover, the_rest_rule) {
  typedef struct {
    int status;
    unsigned http;
    bool sent, safe, want;
  } row_t;
  static const row_t rows[] = {
      /* not reached: always on to the next */
      {UV_ECONNREFUSED, 0, false, false, true},
      {UV_ETIMEDOUT, 0, false, false, true},
      {UV_EAI_NONAME, 0, false, false, true},
      {UV_EHOSTUNREACH, 0, false, true, true},
      {CM_ETLS_CLOSED, 0, false, false, true},
      /* sent, then the connection died: only a GET goes on */
      {UV_ECONNRESET, 0, true, false, false},
      {UV_EPROTO, 0, true, false, false},
      {UV_ETIMEDOUT, 0, true, false, false},
      {UV_ECONNRESET, 0, true, true, true},
      {UV_EPROTO, 0, true, true, true},
      /* cut off mid-answer */
      {UV_ECONNRESET, 200, true, false, false},
      {UV_ECONNRESET, 200, true, true, true},
      /* answers stand */
      {0, 200, true, true, false},
      {0, 404, true, true, false},
      {0, 401, true, true, false},
      {0, 409, true, false, false},
      {0, 500, true, true, false},
      {0, 503, true, false, false},
      {0, 503, true, true, true},
      {0, 502, true, true, true},
      {0, 504, true, true, true},
      /* never: cancelled, a refused certificate, local or size errors */
      {UV_ECANCELED, 0, false, true, false},
      {CM_ETLS_VERIFY_BASE - 18, 0, false, true, false},
      {CM_ETLS, 0, false, true, false},
      {-ENOSPC, 200, true, true, false},
      {UV_E2BIG, 200, true, true, false},
      {-ENOMEM, 0, false, true, false},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const row_t* r = &rows[i];
    cr_assert_eq(
        client_servers_should_fail_over(r->status, r->http, r->sent, r->safe),
        r->want, "row %zu: status %d http %u sent %d safe %d", i, r->status,
        r->http, r->sent, r->safe);
  }
}


/* ---- subscriptions across two fake servers ---- */

typedef struct {
  int connected, reconnected, progress, finished, closed, closed_status;
  int deltas, keyframes, complete;
  int errors[8];
  uint64_t last_seq;
  bool seq_went_back;
} seen_t;

static void on_connected(cm_sub_t* sub, const cm_connected_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  s->connected++;
  s->reconnected += ev->is_reconnect;
}

static void note_seq(seen_t* s, uint64_t seq) {
  s->seq_went_back |= seq <= s->last_seq;
  s->last_seq = seq;
}

static void on_progress(cm_sub_t* sub, const cm_progress_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  s->progress++;
  note_seq(s, ev->seq);
}

static void on_finished(cm_sub_t* sub, const cm_finished_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  s->finished++;
  note_seq(s, ev->seq);
}

static void on_chunks(cm_sub_t* sub, const cm_chunks_t* ev, void* u) {
  (void) sub;
  seen_t* s = u;
  s->deltas++;
  s->keyframes += ev->is_keyframe;
  s->complete += ev->is_complete;
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
    .on_progress = on_progress,
    .on_finished = on_finished,
    .on_chunks = on_chunks,
    .on_error = on_error,
    .on_closed = on_closed,
};

/* Runs one subscription against "A/pa,B/pb" until it closes. */
static void run(fake_t* a, fake_t* b, cm_encoding_t enc, seen_t* seen) {
  signal(SIGPIPE, SIG_IGN);
  fake_start(a);
  fake_start(b);
  char urls[128];
  snprintf(urls, sizeof(urls), "http://127.0.0.1:%u/pa,http://127.0.0.1:%u/pb",
           a->port, b->port);
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = urls;
  o.reconnect_initial_ms = 20;
  o.reconnect_max_ms = 100;
  o.max_reconnect_attempts = 4;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  cm_sub_options_t so;
  cm_sub_options_init(&so);
  so.encoding = enc;
  if (enc == CM_ENCODING_CHUNKS) {
    so.scale = 1;
  }
  cm_sub_t* sub;
  cr_assert_eq(cm_sub_start_opts(c, FAKE_JOB, &so, &cbs, seen, &sub), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen->closed, 1);
  cm_sub_free(sub);
  cm_client_free(c);
  fake_stop(a);
  fake_stop(b);
}


Test(client_failover, base64_events_go_on_from_the_next_server, .timeout = 60) {
  fake_t a = {0}, b = {0};
  fake_add(&a, 0, ACT_TEXT, fake_connected(0, "[4,4,4]", 1, "[4,4,4]"), 0);
  fake_add(&a, 0, ACT_TEXT, fake_progress(1, 0.1), 0);
  fake_add(&a, 0, ACT_TEXT, fake_progress(2, 0.2), 0);
  fake_add(&a, 0, ACT_DROP, NULL, 0);
  /* B replays seq 2 (a latest it keeps), then goes on. */
  fake_add(&b, 0, ACT_TEXT, fake_connected(2, "[4,4,4]", 1, "[4,4,4]"), 0);
  fake_add(&b, 0, ACT_TEXT, fake_progress(2, 0.2), 0);
  fake_add(&b, 0, ACT_TEXT, fake_progress(3, 0.3), 0);
  fake_add(&b, 0, ACT_TEXT, fake_completed(4), 0);
  seen_t seen = {0};
  run(&a, &b, CM_ENCODING_BASE64, &seen);
  cr_assert_eq(a.accepted, 1);
  cr_assert_eq(b.accepted, 1);
  cr_assert_str_eq(a.targets[0], "/pa/ws/jobs/" FAKE_JOB);
  cr_assert_str_eq(b.targets[0], "/pb/ws/jobs/" FAKE_JOB, "B's own prefix");
  cr_assert_eq(seen.connected, 2);
  cr_assert_eq(seen.reconnected, 1);
  cr_assert_eq(seen.progress, 3, "seq 2 once");
  cr_assert_eq(seen.finished, 1);
  cr_assert(!seen.seq_went_back);
  cr_assert_eq(seen.closed_status, 0);
}


static char* connected_chunks(const char* epoch) {
  char data[512];
  snprintf(data, sizeof(data),
           "{\"state\":\"running\",\"progress\":0.1,\"last_seq\":0,"
           "\"volume\":{\"shape\":[40,40,40],\"voxel_size\":[1,1,1]},"
           "\"preview_shape\":[40,40,40],\"params\":{\"preview_scale\":1,"
           "\"preview_hz\":1.0},\"chunks\":{\"edge\":32,\"levels\":5,"
           "\"epoch\":\"%s\"}}",
           epoch);
  return fake_msg("connected", 0, data);
}

/* A delta of no chunks (level 0 of a 40^3 volume). */
static char* delta(unsigned seq, const char* epoch, unsigned base, bool key) {
  char data[512];
  snprintf(data, sizeof(data),
           "{\"epoch\":\"%s\",\"base\":%u,\"keyframe\":%s,\"complete\":true,"
           "\"chunks\":0,\"scale\":1,\"shape\":[40,40,40],"
           "\"plane_scale\":null}",
           epoch, base, key ? "true" : "false");
  return fake_msg("delta", seq, data);
}

/* A: keyframe seq 2 of epoch e1, then the connection dies. */
static void script_a(fake_t* a) {
  fake_add(a, 0, ACT_TEXT, connected_chunks("e1"), 0);
  fake_add(a, 0, ACT_TEXT, delta(2, "e1", 0, true), 0);
  fake_add(a, 0, ACT_DROP, NULL, 0);
}


Test(client_failover,
     chunks_resume_with_since_on_the_same_epoch,
     .timeout = 60) {
  fake_t a = {0}, b = {0};
  script_a(&a);
  fake_add(&b, 0, ACT_TEXT, connected_chunks("e1"), 0);
  fake_add(&b, 0, ACT_TEXT, delta(3, "e1", 2, false), 0);
  fake_add(&b, 0, ACT_TEXT, fake_completed(4), 0);
  seen_t seen = {0};
  run(&a, &b, CM_ENCODING_CHUNKS, &seen);
  cr_assert_str_eq(b.targets[0], "/pb/ws/jobs/" FAKE_JOB
                                 "?encoding=chunks&scale=1&since=2&epoch=e1");
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  cr_assert_eq(seen.complete, 2);
  cr_assert_eq(seen.keyframes, 1, "the second delta built on the first");
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed_status, 0);
}


Test(client_failover,
     chunks_take_a_keyframe_from_another_epoch,
     .timeout = 60) {
  fake_t a = {0}, b = {0};
  script_a(&a);
  fake_add(&b, 0, ACT_TEXT, connected_chunks("e2"), 0);
  fake_add(&b, 0, ACT_TEXT, delta(3, "e2", 0, true), 0);
  fake_add(&b, 0, ACT_TEXT, fake_completed(4), 0);
  seen_t seen = {0};
  run(&a, &b, CM_ENCODING_CHUNKS, &seen);
  cr_assert_not_null(strstr(b.targets[0], "&since=2&epoch=e1"));
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 0);
  cr_assert_eq(seen.keyframes, 2);
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed_status, 0);
}


Test(client_failover,
     chunks_refuse_a_delta_on_a_since_of_another_epoch,
     .timeout = 60) {
  fake_t a = {0}, b = {0};
  script_a(&a);
  /* B has table e2 yet sends a delta on base 2 as if it were e1's. */
  fake_add(&b, 0, ACT_TEXT, connected_chunks("e2"), 0);
  fake_add(&b, 0, ACT_TEXT, delta(3, "e2", 2, false), 0);
  fake_add(&b, 0, ACT_TEXT, fake_completed(9), 0); /* not reached */
  /* The next attempt goes back to A, without a since. */
  fake_add(&a, 1, ACT_TEXT, connected_chunks("e1"), 0);
  fake_add(&a, 1, ACT_TEXT, delta(5, "e1", 0, true), 0);
  fake_add(&a, 1, ACT_TEXT, fake_completed(6), 0);
  seen_t seen = {0};
  run(&a, &b, CM_ENCODING_CHUNKS, &seen);
  cr_assert_eq(seen.errors[CM_SUB_ERR_INVALID], 1);
  cr_assert_eq(a.accepted, 2);
  cr_assert_eq(b.accepted, 1);
  cr_assert_null(strstr(a.targets[1], "since="), "%s", a.targets[1]);
  cr_assert_eq(seen.keyframes, 2);
  cr_assert_eq(seen.finished, 1);
  cr_assert_eq(seen.closed_status, 0);
}


/* ---- REST, async, against two tiny HTTP servers ---- */

/* A listener thread: each connection's request (head and Content-Length
 * body) is read and counted, then answered with a health body, or (dies)
 * left unanswered: a server that took the request and went away. */
typedef struct {
  int fd;
  uint16_t port;
  bool dies;
  atomic_int requests;
  char last[128]; /* the last request line; read after http_stop() */
  pthread_t thread;
} http_srv_t;

static void serve_one(http_srv_t* s, int c) {
  char buf[8192];
  size_t n = 0;
  char* end = NULL;
  while (end == NULL && n < sizeof(buf) - 1) {
    ssize_t r = read(c, buf + n, sizeof(buf) - 1 - n);
    if (r <= 0) {
      return;
    }
    n += (size_t) r;
    buf[n] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  if (end == NULL) {
    return;
  }
  snprintf(s->last, sizeof(s->last), "%.*s", (int) strcspn(buf, "\r"), buf);
  const char* cl = strcasestr(buf, "Content-Length:");
  size_t body = cl != NULL && cl < end ? strtoul(cl + 15, NULL, 10) : 0;
  size_t have = n - (size_t) (end + 4 - buf);
  while (have < body) {
    ssize_t r = read(c, buf, sizeof(buf));
    if (r <= 0) {
      break;
    }
    have += (size_t) r;
  }
  atomic_fetch_add(&s->requests, 1);
  if (!s->dies) {
    static const char answer[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}";
    /* No cr_assert off the test's thread: a short write fails the
     * client's request, which the test sees. */
    ssize_t w = write(c, answer, sizeof(answer) - 1);
    (void) w;
  }
}

static void* http_main(void* arg) {
  http_srv_t* s = arg;
  for (;;) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) {
      return NULL; /* http_stop() shut the listener down */
    }
    serve_one(s, c);
    close(c);
  }
}

static void http_start(http_srv_t* s, bool dies) {
  memset(s, 0, sizeof(*s));
  s->dies = dies;
  atomic_init(&s->requests, 0);
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  cr_assert_eq(bind(s->fd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(listen(s->fd, 8), 0);
  cr_assert_eq(getsockname(s->fd, (struct sockaddr*) &a, &len), 0);
  s->port = ntohs(a.sin_port);
  cr_assert_eq(pthread_create(&s->thread, NULL, http_main, s), 0);
}

static void http_stop(http_srv_t* s) {
  shutdown(s->fd, SHUT_RDWR);
  pthread_join(s->thread, NULL);
  close(s->fd);
}

/* A port nothing listens on (bound, then closed). */
static uint16_t dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  cr_assert_eq(bind(fd, (struct sockaddr*) &a, sizeof(a)), 0);
  cr_assert_eq(getsockname(fd, (struct sockaddr*) &a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

typedef struct {
  int calls, status, logs_trying;
} rest_seen_t;

static void on_reply(cm_client_t* c, int status, const cm_reply_t* r, void* u) {
  (void) c;
  (void) r;
  rest_seen_t* s = u;
  s->calls++;
  s->status = status;
}

static void on_log(cm_log_level_t level, const char* msg, void* u) {
  (void) level;
  ((rest_seen_t*) u)->logs_trying += strstr(msg, "; trying ") != NULL;
}

static cm_client_t* rest_client(const char* urls, rest_seen_t* seen) {
  cm_client_options_t o;
  cm_client_options_init(&o);
  o.server_url = urls;
  o.log = on_log;
  o.log_data = seen;
  o.connect_timeout_ms = 2000;
  o.request_timeout_ms = 5000;
  cm_client_t* c = NULL;
  cr_assert_eq(cm_client_new(&o, &c), 0);
  return c;
}


Test(client_failover,
     async_get_moves_on_and_sticks_to_the_server,
     .timeout = 30) {
  http_srv_t good;
  http_start(&good, false);
  char urls[128];
  snprintf(urls, sizeof(urls), "http://127.0.0.1:%u,http://127.0.0.1:%u/pre",
           dead_port(), good.port);
  rest_seen_t seen = {0};
  cm_client_t* c = rest_client(urls, &seen);
  cr_assert_eq(cm_health(c, on_reply, &seen), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen.calls, 1);
  cr_assert_eq(seen.status, 0, "%s", cm_strerror(seen.status));
  cr_assert_eq(seen.logs_trying, 1);
  cr_assert_eq(client_servers_first(&c->servers), 1, "it answered");
  /* The next request goes straight there: no second note. */
  cr_assert_eq(cm_health(c, on_reply, &seen), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen.status, 0);
  cr_assert_eq(seen.logs_trying, 1);
  cm_client_free(c);
  http_stop(&good);
  cr_assert_eq(atomic_load(&good.requests), 2);
  cr_assert_str_eq(good.last, "GET /pre/v1/healthz HTTP/1.1", "B's prefix");
}


Test(client_failover, a_post_that_went_out_is_not_sent_again, .timeout = 30) {
  http_srv_t dies, good;
  http_start(&dies, true);
  http_start(&good, false);
  char urls[128];
  snprintf(urls, sizeof(urls), "http://127.0.0.1:%u,http://127.0.0.1:%u",
           dies.port, good.port);
  rest_seen_t seen = {0};
  cm_client_t* c = rest_client(urls, &seen);
  cm_job_spec_t spec;
  cm_job_spec_init(&spec);
  cr_assert_eq(cm_job_create(c, &spec, on_reply, &seen), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen.calls, 1);
  cr_assert_neq(seen.status, 0);
  cr_assert_eq(seen.logs_trying, 0);
  /* A GET cut off the same way goes on to the next server. */
  cr_assert_eq(cm_health(c, on_reply, &seen), 0);
  cr_assert_eq(cm_client_run(c), 0);
  cr_assert_eq(seen.status, 0, "%s", cm_strerror(seen.status));
  cr_assert_eq(seen.logs_trying, 1);
  cm_client_free(c);
  http_stop(&dies);
  http_stop(&good);
  cr_assert_eq(atomic_load(&dies.requests), 2);
  cr_assert_str_eq(dies.last, "GET /v1/healthz HTTP/1.1");
  cr_assert_eq(atomic_load(&good.requests), 1, "only the GET");
  cr_assert_str_eq(good.last, "GET /v1/healthz HTTP/1.1");
}
