/* test_client_upload_record.c: an upload's resume record (src/client/
 * upload_record.c): JSON round trips, what is refused as not a record,
 * the key comparison, the file name, the default directory, and the files
 * themselves (created 0700/0600, written atomically, replaced, removed)
 * in a temporary directory. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/upload_record.h"

#define SHA "3feec47a8f9b862aa0e10e85fccb3457a9cf8e672563d65893476fb2b2a14ae0"


static upload_record_t single(void) {
  upload_record_t r;
  memset(&r, 0, sizeof(r));
  snprintf(r.path, sizeof(r.path), "/data/tomo 1.mrc");
  snprintf(r.server, sizeof(r.server), "http://127.0.0.1:8000");
  r.size = 268436480;
  r.mtime_ns = 1796178724157712792;
  snprintf(r.sha256, sizeof(r.sha256), SHA);
  snprintf(r.upload_url, sizeof(r.upload_url), "/v1/uploads/abc");
  return r;
}


static upload_record_t parts(void) {
  upload_record_t r = single();
  r.size = 100;
  r.part_count = 3;
  uint64_t lens[3] = {40, 40, 20};
  uint64_t at = 0;
  for (unsigned i = 0; i < 3; i++) {
    snprintf(r.parts[i].url, sizeof(r.parts[i].url), "/v1/uploads/p%u", i);
    r.parts[i].start = at;
    r.parts[i].length = lens[i];
    at += lens[i];
  }
  snprintf(r.upload_url, sizeof(r.upload_url), "/v1/uploads/final");
  return r;
}


static void assert_same(const upload_record_t* a, const upload_record_t* b) {
  cr_assert_str_eq(a->path, b->path);
  cr_assert_str_eq(a->server, b->server);
  cr_assert_str_eq(a->holder, b->holder);
  cr_assert_eq(a->size, b->size);
  cr_assert_eq(a->mtime_ns, b->mtime_ns);
  cr_assert_str_eq(a->sha256, b->sha256);
  cr_assert_str_eq(a->upload_url, b->upload_url);
  cr_assert_eq(a->part_count, b->part_count);
  for (unsigned i = 0; i < a->part_count; i++) {
    cr_assert_str_eq(a->parts[i].url, b->parts[i].url);
    cr_assert_eq(a->parts[i].start, b->parts[i].start);
    cr_assert_eq(a->parts[i].length, b->parts[i].length);
  }
}


static upload_record_t round_trip(const upload_record_t* in) {
  char* text = NULL;
  cr_assert_eq(upload_record_to_json(in, &text), 0);
  upload_record_t out;
  cr_assert_eq(upload_record_from_json(text, strlen(text), &out), 0, "%s",
               text);
  free(text);
  return out;
}


Test(upload_record, single_upload_survives_json, .timeout = 10) {
  upload_record_t in = single();
  upload_record_t out = round_trip(&in);
  assert_same(&in, &out);
}


Test(upload_record, concatenation_parts_survive_json, .timeout = 10) {
  upload_record_t in = parts();
  upload_record_t out = round_trip(&in);
  assert_same(&in, &out);
}


Test(upload_record, unhashed_record_without_url_survives, .timeout = 10) {
  upload_record_t in = single();
  in.sha256[0] = '\0';
  in.upload_url[0] = '\0';
  upload_record_t out = round_trip(&in);
  assert_same(&in, &out);
  cr_assert_str_empty(out.sha256);
  cr_assert_str_empty(out.upload_url);
}


Test(upload_record,
     holder_survives_json_and_is_omitted_when_empty,
     .timeout = 10) {
  upload_record_t in = single();
  char* text = NULL;
  cr_assert_eq(upload_record_to_json(&in, &text), 0);
  cr_assert_null(strstr(text, "holder"), "records of one server: %s", text);
  free(text);
  /* The upload moved to another server of the list: its URLs are there. */
  snprintf(in.holder, sizeof(in.holder), "https://gw2.example:8443/cm");
  upload_record_t out = round_trip(&in);
  assert_same(&in, &out);
  cr_assert_str_eq(out.holder, "https://gw2.example:8443/cm");
}


static int parse(const char* text) {
  upload_record_t out;
  int rc = upload_record_from_json(text, strlen(text), &out);
  if (rc != 0) {
    /* Nothing of a refused record is left behind. */
    cr_assert_str_empty(out.path);
    cr_assert_eq(out.size, 0);
  }
  return rc;
}


Test(upload_record, what_is_not_a_record_is_refused, .timeout = 10) {
  const char* ok =
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"http://h:1\","
      "\"size\":10,\"mtime_ns\":5}";
  cr_assert_eq(parse(ok), 0);
  const char* bad[] = {
      "",
      "not json",
      "[]",
      "{\"version\":2,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":1,"
      "\"mtime_ns\":1}",
      "{\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":1,\"mtime_ns\":1}",
      "{\"version\":1,\"path\":\"a.mrc\",\"server\":\"s\",\"size\":1,"
      "\"mtime_ns\":1}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"size\":1,\"mtime_ns\":1}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":-1,"
      "\"mtime_ns\":1}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":\"1\","
      "\"mtime_ns\":1}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":1,"
      "\"mtime_ns\":1,\"sha256\":\"ABC\"}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":1,"
      "\"mtime_ns\":1,\"upload_url\":7}",
      "{\"version\":1,\"path\":\"/a.mrc\",\"server\":\"s\",\"size\":1,"
      "\"mtime_ns\":1,\"holder\":7}",
      /* parts must tile [0, size): a gap, an overlap, too short, one */
      "{\"version\":1,\"path\":\"/a\",\"server\":\"s\",\"size\":10,"
      "\"mtime_ns\":1,\"parts\":[{\"url\":\"/u1\",\"start\":0,\"length\":4},"
      "{\"url\":\"/u2\",\"start\":5,\"length\":5}]}",
      "{\"version\":1,\"path\":\"/a\",\"server\":\"s\",\"size\":10,"
      "\"mtime_ns\":1,\"parts\":[{\"url\":\"/u1\",\"start\":0,\"length\":6},"
      "{\"url\":\"/u2\",\"start\":4,\"length\":6}]}",
      "{\"version\":1,\"path\":\"/a\",\"server\":\"s\",\"size\":10,"
      "\"mtime_ns\":1,\"parts\":[{\"url\":\"/u1\",\"start\":0,\"length\":4},"
      "{\"url\":\"/u2\",\"start\":4,\"length\":4}]}",
      "{\"version\":1,\"path\":\"/a\",\"server\":\"s\",\"size\":10,"
      "\"mtime_ns\":1,\"parts\":[{\"url\":\"/u1\",\"start\":0,\"length\":10}]}",
      "{\"version\":1,\"path\":\"/a\",\"server\":\"s\",\"size\":10,"
      "\"mtime_ns\":1,\"parts\":[{\"start\":0,\"length\":5},"
      "{\"url\":\"/u2\",\"start\":5,\"length\":5}]}",
      /* a duplicated key could hide which value counts */
      "{\"version\":1,\"path\":\"/a.mrc\",\"path\":\"/b.mrc\",\"server\":"
      "\"s\",\"size\":1,\"mtime_ns\":1}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(parse(bad[i]), -EINVAL, "accepted: %s", bad[i]);
  }
}


Test(upload_record, key_is_path_server_size_and_mtime, .timeout = 10) {
  upload_record_t a = single();
  upload_record_t b = single();
  cr_assert(upload_record_same_key(&a, &b));
  b.sha256[0] = '\0'; /* what it remembers is not the key */
  b.upload_url[0] = '\0';
  cr_assert(upload_record_same_key(&a, &b));
  b = single();
  b.size++;
  cr_assert_not(upload_record_same_key(&a, &b));
  b = single();
  b.mtime_ns++;
  cr_assert_not(upload_record_same_key(&a, &b));
  b = single();
  b.path[1] = 'D';
  cr_assert_not(upload_record_same_key(&a, &b));
  b = single();
  snprintf(b.server, sizeof(b.server), "http://127.0.0.1:8001");
  cr_assert_not(upload_record_same_key(&a, &b));
}


Test(upload_record, file_name_depends_on_path_and_server, .timeout = 10) {
  char a[512], b[512], c[512], d[512];
  cr_assert_eq(upload_record_file("/s", "/x/a.mrc", "http://h:1", a, sizeof(a)),
               0);
  cr_assert_eq(upload_record_file("/s", "/x/a.mrc", "http://h:1", b, sizeof(b)),
               0);
  cr_assert_eq(upload_record_file("/s", "/x/b.mrc", "http://h:1", c, sizeof(c)),
               0);
  cr_assert_eq(upload_record_file("/s", "/x/a.mrc", "http://h:2", d, sizeof(d)),
               0);
  cr_assert_str_eq(a, b);
  cr_assert_neq(strcmp(a, c), 0);
  cr_assert_neq(strcmp(a, d), 0);
  cr_assert_eq(strncmp(a, "/s/", 3), 0, "%s", a);
  cr_assert_eq(strlen(a), 3 + 64 + 5, "%s", a);
  cr_assert_str_eq(a + strlen(a) - 5, ".json");
  cr_assert_eq(strspn(a + 3, "0123456789abcdef"), 64);
  char tiny[16];
  cr_assert_eq(
      upload_record_file("/s", "/x/a.mrc", "http://h:1", tiny, sizeof(tiny)),
      -ENAMETOOLONG);
}


Test(upload_record, default_dir_follows_xdg_then_home, .timeout = 10) {
  char out[256];
  cr_assert_eq(upload_record_default_dir("/st", "/home/u", out, sizeof(out)),
               0);
  cr_assert_str_eq(out, "/st/cryomamba/uploads");
  cr_assert_eq(upload_record_default_dir(NULL, "/home/u", out, sizeof(out)), 0);
  cr_assert_str_eq(out, "/home/u/.local/state/cryomamba/uploads");
  /* A relative XDG_STATE_HOME is invalid (the XDG spec): ignored. */
  cr_assert_eq(upload_record_default_dir("rel", "/home/u", out, sizeof(out)),
               0);
  cr_assert_str_eq(out, "/home/u/.local/state/cryomamba/uploads");
  cr_assert_eq(upload_record_default_dir(NULL, NULL, out, sizeof(out)),
               -ENOENT);
  cr_assert_eq(upload_record_default_dir(NULL, "", out, sizeof(out)), -ENOENT);
}


static char* temp_dir(void) {
  char tmpl[] = "/tmp/cm-record-XXXXXX";
  char* d = mkdtemp(tmpl);
  cr_assert_not_null(d);
  return strdup(d);
}


static int count_entries(const char* dir) {
  DIR* d = opendir(dir);
  cr_assert_not_null(d, "%s", dir);
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  }
  closedir(d);
  return n;
}


Test(upload_record, save_creates_private_dirs_and_loads_back, .timeout = 10) {
  char* root = temp_dir();
  char dir[600], file[800];
  snprintf(dir, sizeof(dir), "%s/state/cryomamba/uploads", root);
  upload_record_t in = parts();
  cr_assert_eq(upload_record_file(dir, in.path, in.server, file, sizeof(file)),
               0);
  cr_assert_eq(upload_record_load(file, &(upload_record_t){0}), -ENOENT);
  cr_assert_eq(upload_record_save(dir, file, &in), 0);
  struct stat st;
  cr_assert_eq(stat(dir, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0700, "dir mode %o", st.st_mode & 0777);
  char parent[700];
  snprintf(parent, sizeof(parent), "%s/state", root);
  cr_assert_eq(stat(parent, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0700);
  cr_assert_eq(stat(file, &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600, "file mode %o", st.st_mode & 0777);
  upload_record_t out;
  cr_assert_eq(upload_record_load(file, &out), 0);
  assert_same(&in, &out);
  cr_assert_eq(count_entries(dir), 1, "no temporary file is left");
  /* A second save replaces the first, still one file. */
  in.upload_url[0] = '\0';
  in.parts[0].url[1] = 'X';
  cr_assert_eq(upload_record_save(dir, file, &in), 0);
  cr_assert_eq(upload_record_load(file, &out), 0);
  assert_same(&in, &out);
  cr_assert_eq(count_entries(dir), 1);
  cr_assert_eq(upload_record_remove(file), 0);
  cr_assert_eq(upload_record_load(file, &out), -ENOENT);
  cr_assert_eq(upload_record_remove(file), 0, "removing nothing is no error");
  cr_assert_eq(count_entries(dir), 0);
  free(root);
}


Test(upload_record, damaged_file_is_not_a_record, .timeout = 10) {
  char* root = temp_dir();
  char file[600];
  snprintf(file, sizeof(file), "%s/r.json", root);
  upload_record_t in = single();
  cr_assert_eq(upload_record_save(root, file, &in), 0);
  /* Truncated half-way, as a torn write would leave it (rename makes that
   * impossible for our own writes; a foreign or damaged file is read as no
   * record, never half of one). */
  struct stat st;
  cr_assert_eq(stat(file, &st), 0);
  cr_assert_eq(truncate(file, st.st_size / 2), 0);
  upload_record_t out;
  cr_assert_eq(upload_record_load(file, &out), -EINVAL);
  cr_assert_eq(upload_record_remove(file), 0);
  free(root);
}


Test(upload_record, save_into_a_file_path_fails_cleanly, .timeout = 10) {
  char* root = temp_dir();
  char blocker[600], dir[700], file[800];
  snprintf(blocker, sizeof(blocker), "%s/blocker", root);
  FILE* f = fopen(blocker, "w");
  cr_assert_not_null(f);
  fclose(f);
  snprintf(dir, sizeof(dir), "%s/sub", blocker);
  snprintf(file, sizeof(file), "%s/r.json", dir);
  upload_record_t in = single();
  int rc = upload_record_save(dir, file, &in);
  cr_assert(rc == -ENOTDIR || rc == -EEXIST, "rc %d", rc);
  unlink(blocker);
  free(root);
}
