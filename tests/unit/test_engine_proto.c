/* test_engine_proto.c: the exec engine protocol's stdout lines: each
 * message type with its fields, and every malformed line refused with a
 * sentence (not JSON, not an object, no or unknown type, bad progress, bad
 * box, oversized stats), blank lines ignored, long messages cut at a
 * character boundary. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/engine_proto.h"


static int parse(const char* line, core_engine_msg_t* m, char* err) {
  return core_engine_msg_parse(line, strlen(line), m, err, 256);
}


Test(engine_proto, each_message_type, .timeout = 10) {
  core_engine_msg_t m;
  char err[256];
  cr_assert_eq(parse("{\"type\":\"progress\",\"progress\":0.25}", &m, err), 0);
  cr_assert_eq(m.type, CORE_ENGINE_MSG_PROGRESS);
  cr_assert(m.has_progress && m.progress == 0.25 && !m.has_message);
  cr_assert_eq(parse("{\"type\":\"message\",\"message\":\"hi\"}", &m, err), 0);
  cr_assert_eq(m.type, CORE_ENGINE_MSG_MESSAGE);
  cr_assert_str_eq(m.message, "hi");
  cr_assert_eq(parse("{\"type\":\"region\",\"box\":[0,1,2,3,4,5],"
                     "\"progress\":1}",
                     &m, err),
               0);
  cr_assert_eq(m.type, CORE_ENGINE_MSG_REGION);
  cr_assert_eq(m.box[0], 0);
  cr_assert_eq(m.box[5], 5);
  cr_assert(m.has_progress && m.progress == 1.0);
  cr_assert_eq(parse("{\"type\":\"stats\",\"stats\":{\"n\":3}}", &m, err), 0);
  cr_assert_eq(m.type, CORE_ENGINE_MSG_STATS);
  cr_assert_eq(json_integer_value(json_object_get(m.stats, "n")), 3);
  json_decref(m.stats);
}


Test(engine_proto, blank_lines_are_nothing, .timeout = 10) {
  core_engine_msg_t m;
  char err[256];
  cr_assert_eq(parse("", &m, err), -ENODATA);
  cr_assert_eq(parse("  \t\r", &m, err), -ENODATA);
}


Test(engine_proto, violations_say_why, .timeout = 10) {
  static const struct {
    const char* line;
    const char* why;
  } bad[] = {
      {"hello", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {"{\"progress\":1}", "no \"type\""},
      {"{\"type\":\"dance\"}", "unknown message type"},
      {"{\"type\":\"progress\"}", "progress"},
      {"{\"type\":\"progress\",\"progress\":1.5}", "[0, 1]"},
      {"{\"type\":\"progress\",\"progress\":\"1\"}", "[0, 1]"},
      {"{\"type\":\"message\"}", "message"},
      {"{\"type\":\"region\",\"box\":[0,0,0,1,1]}", "box"},
      {"{\"type\":\"region\",\"box\":[0,0,0,1,1,-1]}", "box"},
      {"{\"type\":\"region\",\"box\":[0,0,0,1,1,1.5]}", "box"},
      {"{\"type\":\"stats\",\"stats\":[1]}", "object"},
      {"{\"type\":\"progress\",\"progress\":1,\"progress\":0}", "JSON"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    core_engine_msg_t m;
    char err[256] = "";
    cr_assert_eq(parse(bad[i].line, &m, err), -EINVAL, "%s", bad[i].line);
    cr_assert(strstr(err, bad[i].why) != NULL, "%s: %s", bad[i].line, err);
  }
}


Test(engine_proto, oversized_stats_refused, .timeout = 10) {
  char line[CORE_ENGINE_STATS_MAX + 64];
  char pad[CORE_ENGINE_STATS_MAX + 1];
  memset(pad, 'a', sizeof(pad) - 1);
  pad[sizeof(pad) - 1] = '\0';
  snprintf(line, sizeof(line), "{\"type\":\"stats\",\"stats\":{\"s\":\"%s\"}}",
           pad);
  core_engine_msg_t m;
  char err[256];
  cr_assert_eq(parse(line, &m, err), -EINVAL);
}


Test(engine_proto, long_messages_cut_at_a_character, .timeout = 10) {
  char line[2000];
  char text[1000] = "";
  for (int i = 0; i < 200; i++) {
    strcat(text, "\xc3\xa9"); /* é, two bytes */
  }
  snprintf(line, sizeof(line), "{\"type\":\"message\",\"message\":\"%s\"}",
           text);
  core_engine_msg_t m;
  char err[256];
  cr_assert_eq(parse(line, &m, err), 0);
  size_t n = strlen(m.message);
  cr_assert_leq(n, CORE_ENGINE_MESSAGE_MAX);
  cr_assert_eq(n % 2, 0, "cut inside a character: %zu bytes", n);
}
