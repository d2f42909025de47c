/* test_job_request.c: POST /v1/jobs bodies: defaults, accepted spellings,
 * and one rejection per bad field with a message naming it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/job_request.h"


/* Parses `text` (JSON) and returns the code; err is filled. */
static int parse_text(const char* text,
                      core_job_request_t* req,
                      char* err,
                      size_t err_len) {
  json_error_t jerr;
  json_t* body = json_loads(text, JSON_DECODE_ANY, &jerr);
  cr_assert(body != NULL, "test JSON %s: %s", text, jerr.text);
  int rc = core_job_request_parse(body, req, err, err_len);
  json_decref(body);
  return rc;
}


static void check_defaults(const core_job_request_t* r) {
  cr_assert_not(r->has_shape);
  cr_assert_not(r->has_voxel_size);
  cr_assert_not(r->has_volume_path);
  for (int a = 0; a < 3; a++) {
    cr_assert_eq(r->shape.d[a], 64);
    cr_assert_float_eq(r->voxel_size[a], 1.0, 1e-12);
  }
  cr_assert_float_eq(r->params.preview_hz, 1.0, 1e-12);
  cr_assert_eq(r->params.preview_scale, 1);
  cr_assert_float_eq(r->params.duration_s, 30.0, 1e-12);
  cr_assert_eq(r->params.seed, 0);
  cr_assert_eq(r->params.pattern, CORE_PATTERN_RANDOM);
}


Test(job_request, null_body_gives_defaults, .timeout = 10) {
  core_job_request_t r;
  char err[256] = "x";
  cr_assert_eq(core_job_request_parse(NULL, &r, err, sizeof(err)), 0);
  check_defaults(&r);
  cr_assert_str_eq(err, "");
}


Test(job_request, empty_object_gives_defaults, .timeout = 10) {
  core_job_request_t r;
  char err[256];
  cr_assert_eq(parse_text("{}", &r, err, sizeof(err)), 0);
  check_defaults(&r);
  cr_assert_eq(
      parse_text("{\"unknown\":[1,2],\"params\":null}", &r, err, sizeof(err)),
      0);
  check_defaults(&r);
}


Test(job_request, reads_every_field, .timeout = 10) {
  core_job_request_t r;
  char err[256];
  int rc = parse_text(
      "{\"volume\":{\"shape\":[10,20,4096],\"voxel_size\":[1.5,2,3.25]},"
      "\"params\":{\"preview_hz\":0.1,\"preview_scale\":16,"
      "\"duration_s\":86400,\"seed\":9007199254740993,"
      "\"pattern\":\"blobs\"}}",
      &r, err, sizeof(err));
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert(r.has_shape);
  cr_assert(r.has_voxel_size);
  cr_assert_not(r.has_volume_path);
  cr_assert_eq(r.shape.d[0], 10);
  cr_assert_eq(r.shape.d[1], 20);
  cr_assert_eq(r.shape.d[2], 4096);
  cr_assert_float_eq(r.voxel_size[0], 1.5, 1e-12);
  cr_assert_float_eq(r.voxel_size[1], 2.0, 1e-12);
  cr_assert_float_eq(r.voxel_size[2], 3.25, 1e-12);
  cr_assert_float_eq(r.params.preview_hz, 0.1, 1e-12);
  cr_assert_eq(r.params.preview_scale, 16);
  cr_assert_float_eq(r.params.duration_s, 86400.0, 1e-9);
  cr_assert_eq(r.params.seed, 9007199254740993ull);
  cr_assert_eq(r.params.pattern, CORE_PATTERN_BLOBS);
}


Test(job_request,
     accepts_top_level_params_and_scalar_voxel_size,
     .timeout = 10) {
  core_job_request_t r;
  char err[256];
  int rc = parse_text(
      "{\"preview_hz\":30,\"preview_scale\":2,\"duration_s\":0.5,"
      "\"seed\":7,\"pattern\":\"random\",\"volume\":{\"voxel_size\":4}}",
      &r, err, sizeof(err));
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_float_eq(r.params.preview_hz, 30.0, 1e-12);
  cr_assert_eq(r.params.preview_scale, 2);
  cr_assert_float_eq(r.params.duration_s, 0.5, 1e-12);
  cr_assert_eq(r.params.seed, 7);
  cr_assert(r.has_voxel_size);
  cr_assert_not(r.has_shape);
  cr_assert_eq(r.shape.d[0], 64);
  for (int a = 0; a < 3; a++) {
    cr_assert_float_eq(r.voxel_size[a], 4.0, 1e-12);
  }
}


Test(job_request, params_object_wins_over_top_level, .timeout = 10) {
  core_job_request_t r;
  char err[256];
  cr_assert_eq(
      parse_text("{\"seed\":1,\"params\":{\"seed\":2}}", &r, err, sizeof(err)),
      0);
  cr_assert_eq(r.params.seed, 2);
}


Test(job_request, reads_volume_paths, .timeout = 10) {
  core_job_request_t r;
  char err[256];
  cr_assert_eq(parse_text("{\"volume_path\":\"tomos/a..b/x.mrc\"}", &r, err,
                          sizeof(err)),
               0, "%s", err);
  cr_assert(r.has_volume_path);
  cr_assert_not(r.has_shape);
  cr_assert_str_eq(r.volume_path, "tomos/a..b/x.mrc");
  cr_assert_eq(parse_text("{\"volume\":{\"path\":\"./x.mrc\","
                          "\"voxel_size\":[2,2,2]}}",
                          &r, err, sizeof(err)),
               0, "%s", err);
  cr_assert(r.has_volume_path);
  cr_assert_str_eq(r.volume_path, "./x.mrc");
}


/* Each bad body must give -EINVAL and an error naming `field`. */
static const struct {
  const char* body;
  const char* field;
} bad_bodies[] = {
    {"[]", "body"},
    {"\"x\"", "body"},
    {"{\"volume\":[64,64,64]}", "volume"},
    {"{\"volume\":{\"shape\":[64,64]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[64,64,64,1]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[0,64,64]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[64,4097,64]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[64,64,-1]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[64,64,1.5]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":[64,64,\"64\"]}}", "volume.shape"},
    {"{\"volume\":{\"shape\":\"64\"}}", "volume.shape"},
    {"{\"volume\":{\"voxel_size\":0}}", "volume.voxel_size"},
    {"{\"volume\":{\"voxel_size\":-1}}", "volume.voxel_size"},
    {"{\"volume\":{\"voxel_size\":[1,2]}}", "volume.voxel_size"},
    {"{\"volume\":{\"voxel_size\":[1,\"a\",2]}}", "volume.voxel_size"},
    {"{\"volume\":{\"voxel_size\":true}}", "volume.voxel_size"},
    {"{\"volume_path\":\"\"}", "volume_path"},
    {"{\"volume_path\":5}", "volume_path"},
    {"{\"volume_path\":\"/etc/passwd\"}", "volume_path"},
    {"{\"volume_path\":\"../x.mrc\"}", "volume_path"},
    {"{\"volume_path\":\"a/../../x.mrc\"}", "volume_path"},
    {"{\"volume_path\":\"a/..\"}", "volume_path"},
    {"{\"volume_path\":\"..\"}", "volume_path"},
    {"{\"volume\":{\"path\":\"a//../b\"}}", "volume.path"},
    {"{\"volume_path\":\"a.mrc\",\"volume\":{\"path\":\"b.mrc\"}}",
     "volume_path"},
    {"{\"volume_path\":\"a.mrc\",\"volume\":{\"shape\":[1,1,1]}}",
     "volume.shape"},
    {"{\"params\":[]}", "params"},
    {"{\"params\":{\"preview_hz\":0.05}}", "params.preview_hz"},
    {"{\"params\":{\"preview_hz\":30.5}}", "params.preview_hz"},
    {"{\"params\":{\"preview_hz\":\"1\"}}", "params.preview_hz"},
    {"{\"preview_hz\":0}", "preview_hz"},
    {"{\"params\":{\"preview_scale\":0}}", "params.preview_scale"},
    {"{\"params\":{\"preview_scale\":17}}", "params.preview_scale"},
    {"{\"params\":{\"preview_scale\":2.0}}", "params.preview_scale"},
    {"{\"preview_scale\":-3}", "preview_scale"},
    {"{\"params\":{\"duration_s\":-0.1}}", "params.duration_s"},
    {"{\"params\":{\"duration_s\":86400.5}}", "params.duration_s"},
    {"{\"params\":{\"duration_s\":false}}", "params.duration_s"},
    {"{\"params\":{\"seed\":-1}}", "params.seed"},
    {"{\"params\":{\"seed\":1.5}}", "params.seed"},
    {"{\"seed\":\"7\"}", "seed"},
    {"{\"params\":{\"pattern\":\"stripes\"}}", "params.pattern"},
    {"{\"params\":{\"pattern\":1}}", "params.pattern"},
};


Test(job_request, each_bad_field_is_named, .timeout = 10) {
  for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
    core_job_request_t r;
    char err[256] = "";
    int rc = parse_text(bad_bodies[i].body, &r, err, sizeof(err));
    cr_assert_eq(rc, -EINVAL, "accepted %s", bad_bodies[i].body);
    cr_assert(strstr(err, bad_bodies[i].field) != NULL,
              "error for %s does not name %s: \"%s\"", bad_bodies[i].body,
              bad_bodies[i].field, err);
  }
}


Test(job_request, rejects_overlong_and_nul_paths, .timeout = 10) {
  char path[CORE_VOLUME_PATH_MAX + 1];
  memset(path, 'a', sizeof(path) - 1);
  path[sizeof(path) - 1] = '\0';
  json_t* body = json_pack("{s:s}", "volume_path", path);
  core_job_request_t r;
  char err[256];
  cr_assert_eq(core_job_request_parse(body, &r, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, "volume_path") != NULL, "%s", err);
  json_decref(body);

  /* 1023 bytes is the longest that fits with its NUL. */
  path[CORE_VOLUME_PATH_MAX - 1] = '\0';
  body = json_pack("{s:s}", "volume_path", path);
  cr_assert_eq(core_job_request_parse(body, &r, err, sizeof(err)), 0, "%s",
               err);
  cr_assert_eq(strlen(r.volume_path), CORE_VOLUME_PATH_MAX - 1);
  json_decref(body);

  body = json_pack("{s:s%}", "volume_path", "a\0b", (size_t) 3);
  cr_assert_eq(core_job_request_parse(body, &r, err, sizeof(err)), -EINVAL);
  cr_assert(strstr(err, "NUL") != NULL, "%s", err);
  json_decref(body);
}


Test(job_request, truncates_err_to_its_buffer, .timeout = 10) {
  core_job_request_t r;
  char err[8];
  memset(err, 'x', sizeof(err));
  cr_assert_eq(parse_text("{\"seed\":-1}", &r, err, sizeof(err)), -EINVAL);
  cr_assert_eq(err[7], '\0');
  cr_assert_eq(strlen(err), 7);
}


Test(job_request, reads_engine_params, .timeout = 10) {
  core_job_request_t r;
  char err[256];
  cr_assert_eq(parse_text("{\"params\":{\"engine\":\"nn-unet_2\","
                          "\"preview_downsample\":\"max\","
                          "\"engine_params\":{\"b\":1,\"a\":[true]}}}",
                          &r, err, sizeof(err)),
               0, "%s", err);
  cr_assert_str_eq(r.params.engine, "nn-unet_2");
  cr_assert_eq(r.params.preview_downsample, CORE_DOWNSAMPLE_MAX);
  cr_assert_str_eq(r.engine_params, "{\"a\":[true],\"b\":1}");
  cr_assert_eq(parse_text("{}", &r, err, sizeof(err)), 0);
  cr_assert_str_eq(r.params.engine, "");
  cr_assert_eq(r.params.preview_downsample, CORE_DOWNSAMPLE_NEAREST);
  cr_assert_str_eq(r.engine_params, "");
  static const char* const bad[] = {
      "{\"engine\":\"\"}",
      "{\"engine\":\"-x\"}",
      "{\"engine\":\"A\"}",
      "{\"engine\":7}",
      "{\"engine\":\"a b\"}",
      "{\"preview_downsample\":\"mean\"}",
      "{\"engine_params\":[]}",
      "{\"engine\":\"abcdefghijabcdefghijabcdefghijab\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_assert_eq(parse_text(bad[i], &r, err, sizeof(err)), -EINVAL, "%s",
                 bad[i]);
  }
}
