/* lg_stats.h: the load generator's measurements: growable sample arrays
 * with percentiles, and readings of another process's CPU time and memory
 * from /proc. Plain C, no I/O but /proc; single-threaded. */
#ifndef BENCH_LG_STATS_H
#define BENCH_LG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Microsecond samples (latency, jitter, connect times). */
typedef struct {
  int64_t* v;
  size_t len;
  size_t cap;
  bool is_sorted;
} lg_samples_t;

/* Appends `us`; silently drops the sample on ENOMEM (counted in `dropped`
 * by no one: a benchmark that runs out of memory has other problems). */
void lg_samples_add(lg_samples_t* s, int64_t us);

/* The p-th percentile (0..100, nearest rank) in milliseconds; 0 when
 * empty. Sorts in place on first use after an add. */
double lg_samples_pct_ms(lg_samples_t* s, double p);

/* The largest sample in milliseconds; 0 when empty. */
double lg_samples_max_ms(lg_samples_t* s);

void lg_samples_free(lg_samples_t* s);

/* A reading of /proc/PID: CPU seconds (utime + stime), resident and peak
 * resident memory in KiB. */
typedef struct {
  double cpu_s;
  long rss_kib;
  long hwm_kib;
} lg_proc_t;

/* Reads /proc/`pid`/stat and /proc/`pid`/status. Returns 0 or -errno. */
int lg_proc_read(int pid, lg_proc_t* out);

/* This process's user + system CPU seconds (getrusage). */
double lg_self_cpu_s(void);

/* Monotonic and real-time clocks in microseconds. */
int64_t lg_mono_us(void);
int64_t lg_real_us(void);

#endif
