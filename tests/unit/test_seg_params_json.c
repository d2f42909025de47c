/* test_seg_params_json.c: classic's parameters as JSON
 * (src/core/seg_params_json.h): engine_params read onto core_seg_params_t,
 * strictly; the description's ranges are the library's; the report reads
 * back as the same parameters. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/seg_params_json.h"


static int parse(const char* text, core_seg_params_t* p, char* err) {
  return core_seg_params_from_text(text, p, err, 256);
}


Test(seg_params_json, none_or_empty_gives_the_defaults, .timeout = 10) {
  core_seg_params_t def, p;
  /* memcmp compares the padding too: zero it in both first. */
  memset(&def, 0, sizeof(def));
  memset(&p, 0, sizeof(p));
  core_seg_params_default(&def);
  char err[256];
  cr_assert_eq(parse(NULL, &p, err), 0);
  cr_assert_eq(memcmp(&p, &def, sizeof(p)), 0);
  cr_assert_eq(parse("", &p, err), 0);
  cr_assert_eq(parse("{}", &p, err), 0);
  cr_assert_eq(memcmp(&p, &def, sizeof(p)), 0);
}


Test(seg_params_json, each_kind_of_field_is_applied, .timeout = 10) {
  core_seg_params_t p;
  char err[256];
  cr_assert_eq(parse("{\"sigma\":2,\"window\":64,\"dense_is_bright\":true,"
                     "\"min_voxels\":0,\"edge_fraction\":0.5}",
                     &p, err),
               0, "%s", err);
  cr_assert_float_eq(p.sigma, 2.0f, 1e-6);
  cr_assert_eq(p.window, 64);
  cr_assert(p.dense_is_bright);
  cr_assert_eq(p.min_voxels, 0);
  cr_assert_float_eq(p.edge_fraction, 0.5f, 1e-6);
  cr_assert_eq(p.sheet_radius, 5, "untouched fields keep their defaults");
}


Test(seg_params_json, bad_keys_types_and_ranges_name_the_key, .timeout = 10) {
  static const struct {
    const char* text;
    const char* name;
  } bad[] = {
      {"{\"sigma\":9}", "sigma"},
      {"{\"sigma\":\"1\"}", "sigma"},
      {"{\"sigma\":true}", "sigma"},
      {"{\"window\":3}", "window"},
      {"{\"window\":600}", "window"},
      {"{\"window\":64.5}", "window"},
      {"{\"window\":-1}", "window"},
      {"{\"min_voxels\":4294967296}", "min_voxels"},
      {"{\"dense_is_bright\":0}", "dense_is_bright"},
      {"{\"edge_fraction\":-0.1}", "edge_fraction"},
      {"{\"sheet_radius\":0}", "sheet_radius"},
      {"{\"grow_steps\":65}", "grow_steps"},
      {"{\"peak_radius\":17}", "peak_radius"},
      {"{\"Sigma\":1}", "Sigma"},
      {"{\"windows\":64}", "windows"},
      {"[1]", "object"},
      {"{\"sigma\":1,\"sigma\":2}", "JSON"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    core_seg_params_t p;
    char err[256] = "";
    cr_assert_eq(parse(bad[i].text, &p, err), -EINVAL, "%s", bad[i].text);
    cr_assert(strstr(err, bad[i].name) != NULL, "%s: %s", bad[i].text, err);
  }
}


/* The description's minimum and maximum pass core_seg_params_check, one
 * step beyond fails: the table and the library agree. */
Test(seg_params_json, described_ranges_are_the_librarys, .timeout = 10) {
  json_t* d = core_seg_params_describe();
  cr_assert_not_null(d);
  const char* name;
  json_t* f;
  int checked = 0;
  json_object_foreach(d, name, f) {
    const char* type = json_string_value(json_object_get(f, "type"));
    cr_assert_not_null(json_object_get(f, "default"), "%s", name);
    cr_assert_not_null(json_object_get(f, "description"), "%s", name);
    if (strcmp(type, "boolean") == 0) {
      continue;
    }
    double lo = json_number_value(json_object_get(f, "minimum"));
    double hi = json_number_value(json_object_get(f, "maximum"));
    bool is_int = strcmp(type, "integer") == 0;
    double step = is_int ? 1 : 0.01;
    double tries[4] = {lo, hi, lo - step, hi + step};
    for (int t = 0; t < 4; t++) {
      if (is_int && (tries[t] < 0 || tries[t] > 4294967295.0)) {
        continue; /* not a uint32 at all: the JSON type check's */
      }
      char text[128];
      if (is_int) {
        snprintf(text, sizeof(text), "{\"%s\":%.0f}", name, tries[t]);
      } else {
        snprintf(text, sizeof(text), "{\"%s\":%.4f}", name, tries[t]);
      }
      core_seg_params_t p;
      char err[256] = "";
      int rc = parse(text, &p, err);
      if (t < 2) {
        cr_assert_eq(rc, 0, "%s: %s", text, err);
        char why[160];
        cr_assert_eq(core_seg_params_check(&p, why, sizeof(why)), 0, "%s",
                     text);
      } else {
        cr_assert_eq(rc, -EINVAL, "%s passed", text);
      }
      checked++;
    }
  }
  cr_assert_gt(checked, 30);
  json_decref(d);
}


Test(seg_params_json, the_report_reads_back_as_the_same_params, .timeout = 10) {
  core_seg_params_t p, q;
  char err[256];
  cr_assert_eq(parse("{\"sigma\":1.3,\"k_detect\":2.75,\"window\":96,"
                     "\"dense_is_bright\":true}",
                     &p, err),
               0);
  json_t* j = core_seg_params_to_json(&p);
  cr_assert_not_null(j);
  cr_assert_float_eq(json_real_value(json_object_get(j, "sigma")), 1.3, 1e-9,
                     "the shortest decimal, not 1.29999995");
  cr_assert_eq(core_seg_params_from_json(j, &q, err, sizeof(err)), 0, "%s",
               err);
  cr_assert_eq(memcmp(&p, &q, sizeof(p)), 0);
  json_decref(j);
}
