/* seg_driver.h: runs the classic segmenter (core/seg_classic.h) on a few
 * pthreads, as an engine would: statistics, then the plan's windows taken
 * from a shared counter by each thread (in plan order or shuffled), then
 * the final pass. For tests and benchmarks; the server has its own pool. */
#ifndef TESTS_SEG_DRIVER_H
#define TESTS_SEG_DRIVER_H

#include <stdint.h>

#include "core/seg_classic.h"

typedef struct {
  double stats_s, windows_s, finish_s; /* wall-clock seconds per phase */
} seg_driver_times_t;

/* Segments `in` into `mask` (shape voxels) with `threads` threads (>= 1).
 * shuffle_seed 0 visits windows in plan order, anything else in a
 * permutation drawn from it. `sum` and `times` may be NULL. Returns what
 * the first failing core_seg_* call returned, or 0. */
int seg_driver_run(const core_seg_input_t* in,
                   const core_seg_params_t* p,
                   unsigned threads,
                   uint64_t shuffle_seed,
                   uint8_t* mask,
                   core_seg_summary_t* sum,
                   seg_driver_times_t* times);

#endif
