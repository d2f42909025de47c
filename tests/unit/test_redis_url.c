/* test_redis_url.c: --redis and --redis-password-file (src/server/
 * redis_url.c): the URL forms redis-cli -u takes, percent-escapes in the
 * user and password, what is refused and that no refusal shows the
 * password; the password file's first line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/redis_url.h"


static srv_redis_url_t parse_ok(const char* text) {
  srv_redis_url_t u;
  char why[256] = "";
  cr_assert_eq(srv_redis_parse_url(text, &u, why, sizeof(why)), 0, "%s: %s",
               text, why);
  return u;
}


Test(redis_url, host_port_db_without_auth) {
  srv_redis_url_t u = parse_ok("redis://10.0.0.5");
  cr_assert_str_eq(u.host, "10.0.0.5");
  cr_assert_eq(u.port, 6379);
  cr_assert_eq(u.db, 0);
  cr_assert_str_empty(u.password);
  u = parse_ok("redis://redis.lab:6380/3");
  cr_assert_str_eq(u.host, "redis.lab");
  cr_assert_eq(u.port, 6380);
  cr_assert_eq(u.db, 3);
  u = parse_ok("redis://h:1/");
  cr_assert_eq(u.port, 1);
}


Test(redis_url, password_alone_user_and_password_and_escapes) {
  srv_redis_url_t u = parse_ok("redis://:s3cret@h:7000/2");
  cr_assert_str_empty(u.user);
  cr_assert_str_eq(u.password, "s3cret");
  cr_assert_str_eq(u.host, "h");
  cr_assert_eq(u.port, 7000);
  cr_assert_eq(u.db, 2);
  /* redis-cli's reading: no colon, all password. */
  u = parse_ok("redis://s3cret@h");
  cr_assert_str_empty(u.user);
  cr_assert_str_eq(u.password, "s3cret");
  u = parse_ok("redis://cryomamba:pa%40ss%3Aw%2Fd%25@h");
  cr_assert_str_eq(u.user, "cryomamba");
  cr_assert_str_eq(u.password, "pa@ss:w/d%");
  /* An unescaped '@' in the password: the last one ends it. */
  u = parse_ok("redis://:a@b@h:1");
  cr_assert_str_eq(u.password, "a@b");
  cr_assert_str_eq(u.host, "h");
}


Test(redis_url, refusals_never_show_the_password) {
  const char* bad[] = {
      "http://:hunter2@h",
      "redis://:hunter2@",
      "redis://:hunter2@:6379",
      "redis://:hunter2@h:0",
      "redis://:hunter2@h:x",
      "redis://:hunter2@h/16",
      "redis://:hunter2@h/1x",
      "redis://:hunter2%4@h",
      "redis://:hunter2%zz@h",
      "redis://:hunter2%00@h",
      "redis://:@h",

      "redis://:hunter2@h:1?x",
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    srv_redis_url_t u;
    char why[256] = "";
    cr_assert_eq(srv_redis_parse_url(bad[i], &u, why, sizeof(why)), -1, "%s",
                 bad[i]);
    cr_assert(why[0] != '\0', "%s: a reason", bad[i]);
    cr_assert_null(strstr(why, "hunter2"), "%s -> %s", bad[i], why);
  }
  /* Too long for the struct: refused, not cut. */
  char url[1200];
  char pass[700];
  memset(pass, 'p', sizeof(pass) - 1);
  pass[sizeof(pass) - 1] = '\0';
  snprintf(url, sizeof(url), "redis://:%s@h", pass);
  srv_redis_url_t u;
  char why[256];
  cr_assert_eq(srv_redis_parse_url(url, &u, why, sizeof(why)), -1);
}


static char* temp_file(const char* content) {
  char* path = strdup("/tmp/cm-redis-pass-XXXXXX");
  cr_assert_not_null(path);
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  size_t n = strlen(content);
  cr_assert_eq(write(fd, content, n), (ssize_t) n);
  close(fd);
  return path;
}


Test(redis_url, a_user_without_password_waits_for_the_file) {
  srv_redis_url_t u = parse_ok("redis://ops:@h");
  cr_assert_str_eq(u.user, "ops");
  cr_assert_str_empty(u.password);
  char why[256] = "";
  cr_assert_eq(srv_redis_check_auth(&u, why, sizeof(why)), -1);
  cr_assert_not_null(strstr(why, "needs a password"), "%s", why);
  u = parse_ok("redis://:pw@h");
  cr_assert_eq(srv_redis_check_auth(&u, why, sizeof(why)), 0);
  u = parse_ok("redis://h");
  cr_assert_eq(srv_redis_check_auth(&u, why, sizeof(why)), 0);
}


Test(redis_url, password_file_first_line_replaces_the_urls) {
  srv_redis_url_t u = parse_ok("redis://ops:fromurl@h");
  char* path = temp_file("from file\nsecond line\n");
  char why[256] = "";
  cr_assert_eq(srv_redis_read_password_file(&u, path, why, sizeof(why)), 0,
               "%s", why);
  cr_assert_str_eq(u.password, "from file");
  cr_assert_str_eq(u.user, "ops", "the user stays the URL's");
  unlink(path);
  free(path);
  path = temp_file("crlf\r\n");
  cr_assert_eq(srv_redis_read_password_file(&u, path, why, sizeof(why)), 0);
  cr_assert_str_eq(u.password, "crlf");
  unlink(path);
  free(path);
}


Test(redis_url, password_file_missing_empty_or_too_long_is_refused) {
  srv_redis_url_t u = parse_ok("redis://h");
  char why[256] = "";
  cr_assert_eq(
      srv_redis_read_password_file(&u, "/nonexistent/pass", why, sizeof(why)),
      -1);
  cr_assert_not_null(strstr(why, "No such file"), "%s", why);
  cr_assert_eq(srv_redis_read_password_file(&u, "/tmp", why, sizeof(why)), -1);
  cr_assert_not_null(strstr(why, "a directory"), "%s", why);
  char* path = temp_file("\nsecret on line two\n");
  cr_assert_eq(srv_redis_read_password_file(&u, path, why, sizeof(why)), -1);
  cr_assert_not_null(strstr(why, "no password"), "%s", why);
  unlink(path);
  free(path);
  char big[700];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  path = temp_file(big);
  cr_assert_eq(srv_redis_read_password_file(&u, path, why, sizeof(why)), -1);
  cr_assert_not_null(strstr(why, "longer"), "%s", why);
  cr_assert_str_empty(u.password);
  unlink(path);
  free(path);
}
