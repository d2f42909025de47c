/* test_job.c: job states, every transition pair, patterns and defaults. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "core/job.h"

#define N_STATES 5
static const core_job_state_t states[N_STATES] = {
    CORE_JOB_QUEUED, CORE_JOB_RUNNING, CORE_JOB_COMPLETED, CORE_JOB_FAILED,
    CORE_JOB_CANCELLED};


Test(job, state_names_round_trip, .timeout = 10) {
  static const char* names[N_STATES] = {"queued", "running", "completed",
                                        "failed", "cancelled"};
  for (int i = 0; i < N_STATES; i++) {
    cr_assert_str_eq(core_job_state_name(states[i]), names[i]);
    core_job_state_t s = CORE_JOB_QUEUED;
    cr_assert_eq(core_job_state_parse(names[i], &s), 0);
    cr_assert_eq(s, states[i]);
  }
  core_job_state_t s;
  cr_assert_eq(core_job_state_parse("Running", &s), -EINVAL);
  cr_assert_eq(core_job_state_parse("", &s), -EINVAL);
  cr_assert_eq(core_job_state_parse("canceled", &s), -EINVAL);
}


Test(job, every_transition_pair_matches_the_table, .timeout = 10) {
  /* allowed[from][to], in the order of `states`. */
  static const bool allowed[N_STATES][N_STATES] = {
      /* queued */ {false, true, false, true, true},
      /* running */ {false, false, true, true, true},
      /* completed */ {false, false, false, false, false},
      /* failed */ {false, false, false, false, false},
      /* cancelled */ {false, false, false, false, false},
  };
  for (int f = 0; f < N_STATES; f++) {
    for (int t = 0; t < N_STATES; t++) {
      cr_assert_eq(core_job_transition_is_valid(states[f], states[t]),
                   allowed[f][t], "%s -> %s", core_job_state_name(states[f]),
                   core_job_state_name(states[t]));
    }
  }
}


Test(job, terminal_states_are_the_last_three, .timeout = 10) {
  cr_assert_not(core_job_state_is_terminal(CORE_JOB_QUEUED));
  cr_assert_not(core_job_state_is_terminal(CORE_JOB_RUNNING));
  cr_assert(core_job_state_is_terminal(CORE_JOB_COMPLETED));
  cr_assert(core_job_state_is_terminal(CORE_JOB_FAILED));
  cr_assert(core_job_state_is_terminal(CORE_JOB_CANCELLED));
}


Test(job, patterns_have_names_and_label_counts, .timeout = 10) {
  core_pattern_t p = CORE_PATTERN_BLOBS;
  cr_assert_str_eq(core_pattern_name(CORE_PATTERN_RANDOM), "random");
  cr_assert_str_eq(core_pattern_name(CORE_PATTERN_BLOBS), "blobs");
  cr_assert_eq(core_pattern_parse("random", &p), 0);
  cr_assert_eq(p, CORE_PATTERN_RANDOM);
  cr_assert_eq(core_pattern_parse("blobs", &p), 0);
  cr_assert_eq(p, CORE_PATTERN_BLOBS);
  cr_assert_eq(core_pattern_parse("Blobs", &p), -EINVAL);
  cr_assert_eq(core_pattern_parse("", &p), -EINVAL);
  cr_assert_eq(core_pattern_label_count(CORE_PATTERN_RANDOM), 2);
  cr_assert_eq(core_pattern_label_count(CORE_PATTERN_BLOBS), 3);
}


Test(job, params_default_to_the_documented_values, .timeout = 10) {
  core_job_params_t p;
  memset(&p, 0xab, sizeof(p));
  core_job_params_default(&p);
  cr_assert_float_eq(p.preview_hz, 1.0, 1e-12);
  cr_assert_eq(p.preview_scale, 1);
  cr_assert_float_eq(p.duration_s, 30.0, 1e-12);
  cr_assert_eq(p.seed, 0);
  cr_assert_eq(p.pattern, CORE_PATTERN_RANDOM);
}
