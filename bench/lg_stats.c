/* lg_stats.c: see lg_stats.h. */
#include "lg_stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>


void lg_samples_add(lg_samples_t* s, int64_t us) {
  if (s->len == s->cap) {
    size_t cap = s->cap == 0 ? 1024 : s->cap * 2;
    int64_t* v = realloc(s->v, cap * sizeof(*v));
    if (v == NULL) {
      return;
    }
    s->v = v;
    s->cap = cap;
  }
  s->v[s->len++] = us;
  s->is_sorted = false;
}


static int cmp_i64(const void* a, const void* b) {
  int64_t x = *(const int64_t*) a;
  int64_t y = *(const int64_t*) b;
  return (x > y) - (x < y);
}


double lg_samples_pct_ms(lg_samples_t* s, double p) {
  if (s->len == 0) {
    return 0;
  }
  if (!s->is_sorted) {
    qsort(s->v, s->len, sizeof(*s->v), cmp_i64);
    s->is_sorted = true;
  }
  /* Nearest rank: the smallest sample with at least p% at or below it. */
  double rank = p / 100.0 * (double) s->len;
  size_t i = (size_t) rank;
  if ((double) i < rank) {
    i++;
  }
  i = i == 0 ? 0 : i - 1;
  if (i >= s->len) {
    i = s->len - 1;
  }
  return (double) s->v[i] / 1e3;
}


double lg_samples_max_ms(lg_samples_t* s) {
  return lg_samples_pct_ms(s, 100);
}


void lg_samples_free(lg_samples_t* s) {
  free(s->v);
  memset(s, 0, sizeof(*s));
}


int lg_proc_read(int pid, lg_proc_t* out) {
  char path[64];
  char buf[2048];
  memset(out, 0, sizeof(*out));
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (f == NULL) {
    return -errno;
  }
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Fields after the command name, which may hold spaces: state is field
   * 3, utime 14, stime 15. */
  char* p = strrchr(buf, ')');
  if (p == NULL) {
    return -EINVAL;
  }
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &utime, &stime) != 2) {
    return -EINVAL;
  }
  out->cpu_s = (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);

  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (f == NULL) {
    return -errno;
  }
  while (fgets(buf, sizeof(buf), f) != NULL) {
    if (strncmp(buf, "VmRSS:", 6) == 0) {
      out->rss_kib = strtol(buf + 6, NULL, 10);
    } else if (strncmp(buf, "VmHWM:", 6) == 0) {
      out->hwm_kib = strtol(buf + 6, NULL, 10);
    }
  }
  fclose(f);
  return 0;
}


double lg_self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
         (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}


static int64_t clock_us(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


int64_t lg_mono_us(void) {
  return clock_us(CLOCK_MONOTONIC);
}


int64_t lg_real_us(void) {
  return clock_us(CLOCK_REALTIME);
}
