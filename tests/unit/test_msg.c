/* test_msg.c: the WebSocket codec: envelopes, the hand-laid preview frame
 * read back by jansson, client message classes, strict decoding of hostile
 * messages, and the HTTP error envelope. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/msg.h"
#include "core/timefmt.h"

#define JOB "0b6a1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
#define TS_US 1795896000123456LL
#define TS "2026-11-28T20:00:00.123456Z"


/* Builds the whole preview message for `voxels` of `shape` at `scale`. */
static char* build_preview(const core_shape_t* shape,
                           uint32_t scale,
                           const uint8_t* voxels,
                           size_t n,
                           size_t* len) {
  core_preview_layout_t lay;
  cr_assert_eq(core_msg_preview_layout(JOB, 7, TS_US, shape, scale, n, &lay),
               0);
  char* msg = malloc(lay.total_len + 1);
  memcpy(msg, lay.prefix, lay.prefix_len);
  size_t b = core_base64_encode(voxels, n, msg + lay.prefix_len);
  cr_assert_eq(b, lay.b64_len);
  memcpy(msg + lay.prefix_len + b, lay.suffix, lay.suffix_len);
  msg[lay.total_len] = '\0';
  *len = lay.total_len;
  return msg;
}


Test(msg, encode_is_compact_in_key_order, .timeout = 10) {
  json_t* data = json_pack("{s:f,s:s}", "progress", 0.5, "state", "running");
  size_t len = 0;
  char* s = core_msg_encode("progress", JOB, 3, TS_US, data, &len);
  cr_assert(s != NULL);
  cr_assert_eq(len, strlen(s));
  cr_assert_str_eq(s, "{\"type\":\"progress\",\"job_id\":\"" JOB
                      "\",\"seq\":3,\"timestamp\":\"" TS
                      "\",\"data\":"
                      "{\"progress\":0.5,\"state\":\"running\"}}");
  core_server_msg_t m;
  char err[128];
  cr_assert_eq(core_msg_decode(s, len, &m, err, sizeof(err)), 0, "%s", err);
  cr_assert_str_eq(m.type, "progress");
  cr_assert_str_eq(m.job_id, JOB);
  cr_assert_eq(m.seq, 3);
  cr_assert_eq(m.ts_us, TS_US);
  cr_assert_str_eq(json_string_value(json_object_get(m.data, "state")),
                   "running");
  core_msg_clear(&m);
  core_msg_clear(&m);
  free(s);
}


Test(msg, encode_without_data_or_job, .timeout = 10) {
  size_t len;
  char* s = core_msg_encode("connected", JOB, 0, 0, NULL, &len);
  cr_assert_str_eq(s, "{\"type\":\"connected\",\"job_id\":\"" JOB
                      "\",\"seq\":0,\"timestamp\":"
                      "\"1970-01-01T00:00:00.000000Z\",\"data\":{}}");
  free(s);
  s = core_msg_encode("pong", NULL, 0, TS_US, NULL, &len);
  cr_assert_str_eq(s,
                   "{\"type\":\"pong\",\"timestamp\":\"" TS "\",\"data\":{}}");
  core_server_msg_t m;
  char err[128];
  cr_assert_eq(core_msg_decode(s, len, &m, err, sizeof(err)), 0, "%s", err);
  cr_assert_str_eq(m.type, "pong");
  cr_assert_str_eq(m.job_id, "");
  core_msg_clear(&m);
  free(s);
}


Test(msg, preview_prefix_is_exact, .timeout = 10) {
  core_shape_t shape = {{3, 4, 5}};
  core_preview_layout_t lay;
  cr_assert_eq(core_msg_preview_layout(JOB, 42, TS_US, &shape, 2, 60, &lay), 0);
  const char* want = "{\"type\":\"preview\",\"job_id\":\"" JOB
                     "\",\"seq\":42,\"timestamp\":\"" TS
                     "\",\"data\":{\"scale\":[2,2,2],\"shape\":[3,4,5],"
                     "\"dtype\":\"uint8\",\"payload\":\"";
  cr_assert_eq(lay.prefix_len, strlen(want));
  cr_assert_eq(memcmp(lay.prefix, want, lay.prefix_len), 0, "%.*s",
               (int) lay.prefix_len, lay.prefix);
  cr_assert_str_eq(lay.suffix, "\"}}");
  cr_assert_eq(lay.suffix_len, 3);
  cr_assert_eq(lay.b64_len, 80);
  cr_assert_eq(lay.total_len, lay.prefix_len + 80 + 3);
}


Test(msg, preview_frame_parses_and_decodes_to_the_same_bytes, .timeout = 10) {
  core_shape_t volume = {{9, 10, 11}};
  for (uint32_t scale = 1; scale <= 4; scale++) {
    core_shape_t shape = core_shape_downsample(&volume, scale);
    size_t n = (size_t) core_shape_voxels(&shape);
    uint8_t* vox = malloc(n);
    for (size_t i = 0; i < n; i++) {
      vox[i] = (uint8_t) (i * 7 % 251);
    }
    size_t len;
    char* text = build_preview(&shape, scale, vox, n, &len);

    json_error_t jerr;
    json_t* root = json_loadb(text, len, 0, &jerr);
    cr_assert(root != NULL, "jansson: %s", jerr.text);
    json_decref(root);

    core_server_msg_t m;
    char err[256];
    cr_assert_eq(core_msg_decode(text, len, &m, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_str_eq(m.type, "preview");
    cr_assert_eq(m.seq, 7);
    core_preview_t p;
    cr_assert_eq(core_msg_decode_preview(m.data, &volume, &p, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(p.len, n);
    cr_assert_eq(memcmp(p.voxels, vox, n), 0);
    for (int a = 0; a < 3; a++) {
      cr_assert_eq(p.scale[a], scale);
      cr_assert_eq(p.shape.d[a], shape.d[a]);
    }
    free(p.voxels);
    core_msg_clear(&m);
    free(text);
    free(vox);
  }
}


Test(msg, preview_layout_escapes_or_refuses_odd_ids, .timeout = 10) {
  core_shape_t shape = {{1, 1, 1}};
  core_preview_layout_t lay;
  cr_assert_eq(core_msg_preview_layout("a\"b\\c\n", 1, 0, &shape, 1, 1, &lay),
               0);
  char text[CORE_MSG_PREFIX_MAX + 16];
  memcpy(text, lay.prefix, lay.prefix_len);
  memcpy(text + lay.prefix_len, "AA==\"}}", 8);
  json_error_t jerr;
  json_t* root = json_loads(text, 0, &jerr);
  cr_assert(root != NULL, "%s: %s", text, jerr.text);
  cr_assert_str_eq(json_string_value(json_object_get(root, "job_id")),
                   "a\"b\\c\n");
  json_decref(root);

  char long_id[CORE_MSG_PREFIX_MAX];
  memset(long_id, 'a', sizeof(long_id) - 1);
  long_id[sizeof(long_id) - 1] = '\0';
  cr_assert_eq(core_msg_preview_layout(long_id, 1, 0, &shape, 1, 1, &lay),
               -ENAMETOOLONG);
}


Test(msg, classifies_client_messages, .timeout = 10) {
  static const struct {
    const char* text;
    core_client_msg_t want;
  } cases[] = {
      {"{\"type\":\"ping\"}", CORE_CLIENT_MSG_PING},
      {" {\"type\" : \"ping\", \"x\": [1]} ", CORE_CLIENT_MSG_PING},
      {"{\"type\":\"pong\"}", CORE_CLIENT_MSG_UNKNOWN},
      {"{\"type\":\"PING\"}", CORE_CLIENT_MSG_UNKNOWN},
      {"{\"type\":1}", CORE_CLIENT_MSG_UNKNOWN},
      {"{}", CORE_CLIENT_MSG_UNKNOWN},
      {"[]", CORE_CLIENT_MSG_INVALID},
      {"\"ping\"", CORE_CLIENT_MSG_INVALID},
      {"ping", CORE_CLIENT_MSG_INVALID},
      {"", CORE_CLIENT_MSG_INVALID},
      {"{\"type\":\"ping\"", CORE_CLIENT_MSG_INVALID},
      {"{\"type\":\"ping\"}x", CORE_CLIENT_MSG_INVALID},
      {"{\"type\":\"ping\",\"type\":\"ping\"}", CORE_CLIENT_MSG_INVALID},
      {"null", CORE_CLIENT_MSG_INVALID},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    cr_assert_eq(core_msg_parse_client(cases[i].text, strlen(cases[i].text)),
                 cases[i].want, "%s", cases[i].text);
  }
  /* Only `len` bytes count: the ping below is cut short. */
  cr_assert_eq(core_msg_parse_client("{\"type\":\"ping\"}", 10),
               CORE_CLIENT_MSG_INVALID);
}


Test(msg, decode_rejects_bad_envelopes, .timeout = 10) {
  static const char* bad[] = {
      "",
      "[]",
      "{\"job_id\":\"" JOB "\",\"seq\":1,\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"\",\"job_id\":\"" JOB "\",\"seq\":1,\"timestamp\":\"" TS
      "\",\"data\":{}}",
      "{\"type\":\"0123456789012345678901234567890123\",\"job_id\":\"" JOB
      "\",\"seq\":1,\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"nope\",\"seq\":1,"
      "\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"seq\":1,\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":-1,"
      "\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":\"1\","
      "\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":1.0,"
      "\"timestamp\":\"" TS "\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":1,"
      "\"timestamp\":\"2026-11-28T20:00:00Z\",\"data\":{}}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":1,"
      "\"timestamp\":\"" TS "\",\"data\":[]}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":1,"
      "\"timestamp\":\"" TS "\"}",
      "{\"type\":\"progress\",\"job_id\":\"" JOB
      "\",\"seq\":1,"
      "\"timestamp\":\"" TS "\",\"data\":{},\"seq\":2}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    core_server_msg_t m;
    char err[256] = "";
    cr_assert_eq(core_msg_decode(bad[i], strlen(bad[i]), &m, err, sizeof(err)),
                 -EINVAL, "accepted %s", bad[i]);
    cr_assert_neq(err[0], '\0', "no message for %s", bad[i]);
    cr_assert_null(m.data);
  }
}


/* Decodes a preview data object given as JSON text. */
static int decode_preview_text(const char* text,
                               const core_shape_t* volume,
                               char* err,
                               size_t err_len) {
  json_error_t jerr;
  json_t* data = json_loads(text, 0, &jerr);
  cr_assert(data != NULL, "%s: %s", text, jerr.text);
  core_preview_t p;
  int rc = core_msg_decode_preview(data, volume, &p, err, err_len);
  if (rc == 0) {
    free(p.voxels);
  } else {
    cr_assert_null(p.voxels);
  }
  json_decref(data);
  return rc;
}


Test(msg, decode_preview_validates_every_field, .timeout = 10) {
  core_shape_t volume = {{4, 4, 4}};
  char err[256];
  /* 2x2x2 voxels = 8 bytes = "AAAAAAAAAAA=" */
  cr_assert_eq(decode_preview_text("{\"scale\":[2,2,2],\"shape\":[2,2,2],"
                                   "\"dtype\":\"uint8\",\"payload\":"
                                   "\"AAECAwQFBgc=\"}",
                                   &volume, err, sizeof(err)),
               0, "%s", err);
  cr_assert_eq(decode_preview_text("{\"scale\":[1,2,4],\"shape\":[4,2,1],"
                                   "\"dtype\":\"uint8\",\"payload\":"
                                   "\"AAECAwQFBgc=\"}",
                                   &volume, err, sizeof(err)),
               0, "%s", err);
  static const struct {
    const char* data;
    const char* needle;
  } bad[] = {
      {"[]", "object"},
      {"{\"scale\":[0,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "scale"},
      {"{\"scale\":[2,2,17],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "scale"},
      {"{\"scale\":[2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "scale"},
      {"{\"scale\":2,\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "scale"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,0],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "shape"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"int8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "dtype"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],"
       "\"payload\":\"AAECAwQFBgc=\"}",
       "dtype"},
      {"{\"scale\":[1,1,1],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc=\"}",
       "data.shape[0]"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBg==\"}",
       "payload"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgcI\"}",
       "payload"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQF-gc=\"}",
       "payload"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":\"AAECAwQFBgc\"}",
       "payload"},
      {"{\"scale\":[2,2,2],\"shape\":[2,2,2],\"dtype\":\"uint8\","
       "\"payload\":null}",
       "payload"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char e[256] = "";
    cr_assert_eq(decode_preview_text(bad[i].data, &volume, e, sizeof(e)),
                 -EINVAL, "accepted %s", bad[i].data);
    cr_assert(strstr(e, bad[i].needle) != NULL, "\"%s\" lacks %s", e,
              bad[i].needle);
  }
}


Test(msg, decode_preview_refuses_huge_shapes_before_allocating, .timeout = 10) {
  char err[256];
  /* 4096^3 voxels (64 GiB) announced with a 4-character payload: the length
   * check must fail it without trying to allocate. */
  cr_assert_eq(decode_preview_text("{\"scale\":[1,1,1],"
                                   "\"shape\":[4096,4096,4096],"
                                   "\"dtype\":\"uint8\",\"payload\":\"AAAA\"}",
                                   NULL, err, sizeof(err)),
               -EINVAL);
  cr_assert(strstr(err, "payload") != NULL, "%s", err);
}


Test(msg, error_envelope_has_all_fields, .timeout = 10) {
  size_t len;
  char* s =
      core_msg_error_json("job_not_found", "no job \"x\"", NULL, false, &len);
  cr_assert_str_eq(s,
                   "{\"error\":{\"code\":\"job_not_found\",\"message\":"
                   "\"no job \\\"x\\\"\",\"hint\":null,"
                   "\"retryable\":false}}");
  cr_assert_eq(len, strlen(s));
  free(s);
  s = core_msg_error_json("busy", "try later", "wait 5 s", true, &len);
  json_t* root = json_loads(s, 0, NULL);
  json_t* e = json_object_get(root, "error");
  cr_assert_str_eq(json_string_value(json_object_get(e, "hint")), "wait 5 s");
  cr_assert(json_is_true(json_object_get(e, "retryable")));
  json_decref(root);
  free(s);
  /* Invalid UTF-8 in a message (quoting a client) still gives JSON. */
  s = core_msg_error_json("bad_path", "no file \xff\xfe.mrc", NULL, false,
                          &len);
  cr_assert(s != NULL);
  root = json_loads(s, 0, NULL);
  cr_assert(root != NULL, "%s", s);
  json_decref(root);
  free(s);
}
