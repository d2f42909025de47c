/* lg_report.c: the load generator's options and set-up (jobs created over
 * REST before the loop runs), the measurement window and the results, as a
 * summary on stdout and a JSON object in --json. See lg.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"
#include "lg_http.h"

static const char usage[] =
    "usage: loadgen (--url ws://HOST:PORT/ws/jobs/ID | --server "
    "http://HOST:PORT)\n"
    "  -n N               subscribers (default 1)\n"
    "  --jobs J           with --server: create J jobs, subscribers spread "
    "round-robin (1)\n"
    "  --shape Z,Y,X      with --server: job volume shape (64,128,128)\n"
    "  --hz HZ            preview rate of created jobs, and the expected "
    "rate (1)\n"
    "  --scale S          preview_scale of created jobs (1)\n"
    "  --pattern P        random | blobs (random)\n"
    "  --job-duration-s S simulated inference time of created jobs "
    "(ramp + warmup + duration + 60)\n"
    "  --ramp-per-s R     connections opened per second, 0 = at once (1000)\n"
    "  --warmup-s S       wait after the last connection before measuring "
    "(2)\n"
    "  --duration-s S     measurement window (10)\n"
    "  --stall K          the first K subscribers stop reading after their "
    "first preview\n"
    "  --server-pid PID   read the server's CPU and memory from /proc\n"
    "  --label TEXT       name for the JSON record\n"
    "  --json PATH        write the results as JSON\n"
    "  --encoding E       base64 | zstd | raw | chunks: the ?encoding= query "
    "(base64)\n"
    "  --chunk-scale S    with chunks: the ?scale= query (the server's "
    "default)\n"
    "  --until-end        measure from the first connection until every "
    "connection\n"
    "                     has the job's terminal message (--duration-s: "
    "the limit)\n";


static int parse_shape(const char* s, core_shape_t* out) {
  unsigned z = 0;
  unsigned y = 0;
  unsigned x = 0;
  if (sscanf(s, "%u,%u,%u", &z, &y, &x) != 3) {
    return -EINVAL;
  }
  out->d[0] = z;
  out->d[1] = y;
  out->d[2] = x;
  return core_shape_is_valid(out) ? 0 : -EINVAL;
}


static int parse_opts(lg_t* g, int argc, char** argv) {
  lg_opt_t* o = &g->opt;
  *o = (lg_opt_t){.n = 1,
                  .jobs = 1,
                  .ramp_per_s = 1000,
                  .duration_s = 10,
                  .warmup_s = 2,
                  .hz = 1,
                  .scale = 1,
                  .pattern = "random",
                  .label = ""};
  g->shape = (core_shape_t){{64, 128, 128}};
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 1;
    }
    if (strcmp(a, "--until-end") == 0) {
      o->until_end = true;
      continue;
    }
    if (v == NULL) {
      fprintf(stderr, "loadgen: %s needs a value\n%s", a, usage);
      return 2;
    }
    i++;
    if (strcmp(a, "--url") == 0) {
      o->url = v;
    } else if (strcmp(a, "--server") == 0) {
      o->server = v;
    } else if (strcmp(a, "-n") == 0) {
      o->n = (uint32_t) strtoul(v, NULL, 10);
    } else if (strcmp(a, "--jobs") == 0) {
      o->jobs = (uint32_t) strtoul(v, NULL, 10);
    } else if (strcmp(a, "--shape") == 0) {
      if (parse_shape(v, &g->shape) != 0) {
        fprintf(stderr, "loadgen: bad --shape %s\n", v);
        return 2;
      }
    } else if (strcmp(a, "--hz") == 0) {
      o->hz = strtod(v, NULL);
    } else if (strcmp(a, "--scale") == 0) {
      o->scale = (uint32_t) strtoul(v, NULL, 10);
    } else if (strcmp(a, "--pattern") == 0) {
      o->pattern = v;
    } else if (strcmp(a, "--job-duration-s") == 0) {
      o->job_duration_s = strtod(v, NULL);
    } else if (strcmp(a, "--ramp-per-s") == 0) {
      o->ramp_per_s = strtod(v, NULL);
    } else if (strcmp(a, "--warmup-s") == 0) {
      o->warmup_s = strtod(v, NULL);
    } else if (strcmp(a, "--duration-s") == 0) {
      o->duration_s = strtod(v, NULL);
    } else if (strcmp(a, "--stall") == 0) {
      o->stall = (uint32_t) strtoul(v, NULL, 10);
    } else if (strcmp(a, "--server-pid") == 0) {
      o->server_pid = atoi(v);
    } else if (strcmp(a, "--label") == 0) {
      o->label = v;
    } else if (strcmp(a, "--json") == 0) {
      o->json_path = v;
    } else if (strcmp(a, "--encoding") == 0) {
      o->encoding = v;
    } else if (strcmp(a, "--chunk-scale") == 0) {
      o->chunk_scale = (uint32_t) strtoul(v, NULL, 10);
    } else {
      fprintf(stderr, "loadgen: unknown option %s\n%s", a, usage);
      return 2;
    }
  }
  if ((o->url == NULL) == (o->server == NULL) || o->n == 0 || o->jobs == 0 ||
      o->hz <= 0 || o->scale == 0 || o->duration_s <= 0 ||
      (o->encoding != NULL &&
       strspn(o->encoding, "abcdefghijklmnopqrstuvwxyz0123456789") !=
           strlen(o->encoding))) {
    fprintf(stderr, "loadgen: invalid options\n%s", usage);
    return 2;
  }
  return 0;
}


bool lg_is_base64(const lg_opt_t* o) {
  return o->encoding == NULL || strcmp(o->encoding, "base64") == 0 ||
         strcmp(o->encoding, "json") == 0;
}


/* Appends the encoding's query to every subscription path. */
static int add_queries(lg_t* g) {
  const lg_opt_t* o = &g->opt;
  if (o->encoding == NULL) {
    return 0;
  }
  for (uint32_t j = 0; j < g->job_count; j++) {
    char q[96];
    int n = snprintf(q, sizeof(q), "%cencoding=%s",
                     strchr(g->paths[j], '?') != NULL ? '&' : '?', o->encoding);
    if (o->chunk_scale > 0 && strcmp(o->encoding, "chunks") == 0) {
      snprintf(q + n, sizeof(q) - (size_t) n, "&scale=%u", o->chunk_scale);
    }
    char* p = malloc(strlen(g->paths[j]) + strlen(q) + 1);
    if (p == NULL) {
      return -ENOMEM;
    }
    sprintf(p, "%s%s", g->paths[j], q);
    free(g->paths[j]);
    g->paths[j] = p;
  }
  return 0;
}


static int create_jobs(lg_t* g) {
  lg_opt_t* o = &g->opt;
  double ramp = o->ramp_per_s > 0 ? o->n / o->ramp_per_s : 0;
  double dur = o->job_duration_s > 0 ? o->job_duration_s
                                     : ramp + o->warmup_s + o->duration_s + 60;
  char body[512];
  snprintf(body, sizeof(body),
           "{\"volume\":{\"shape\":[%u,%u,%u]},\"params\":{\"preview_hz\":%g,"
           "\"preview_scale\":%u,\"duration_s\":%.1f,\"pattern\":\"%s\"}}",
           g->shape.d[0], g->shape.d[1], g->shape.d[2], o->hz, o->scale, dur,
           o->pattern);
  g->job_count = o->jobs;
  g->paths = calloc(o->jobs, sizeof(*g->paths));
  if (g->paths == NULL) {
    return -ENOMEM;
  }
  for (uint32_t j = 0; j < o->jobs; j++) {
    char id[64];
    int rc = lg_http_create_job(g->host, g->port, body, id);
    if (rc != 0) {
      fprintf(stderr, "loadgen: creating job %u: %s\n", j, strerror(-rc));
      return rc;
    }
    g->paths[j] = malloc(strlen(id) + 10);
    if (g->paths[j] == NULL) {
      return -ENOMEM;
    }
    sprintf(g->paths[j], "/ws/jobs/%s", id);
  }
  g->has_shape = true;
  return 0;
}


int lg_setup(lg_t* g, int argc, char** argv) {
  int rc = parse_opts(g, argc, argv);
  if (rc != 0) {
    return rc;
  }
  lg_opt_t* o = &g->opt;
  lg_url_t url;
  if (lg_url_parse(o->url != NULL ? o->url : o->server, &url) != 0) {
    fprintf(stderr, "loadgen: bad URL\n");
    return 2;
  }
  strcpy(g->host, url.host);
  g->port = url.port;
  if (uv_ip4_addr(strcmp(url.host, "localhost") == 0 ? "127.0.0.1" : url.host,
                  url.port, &g->addr) != 0) {
    fprintf(stderr, "loadgen: the host must be an IPv4 address\n");
    return 2;
  }
  if (o->url != NULL) {
    g->job_count = 1;
    g->paths = calloc(1, sizeof(*g->paths));
    if (g->paths == NULL || (g->paths[0] = strdup(url.path)) == NULL) {
      return 2;
    }
  } else if (create_jobs(g) != 0) {
    return 2;
  }
  if (add_queries(g) != 0) {
    return 2;
  }
  /* After the jobs exist: the baseline of per-connection memory. */
  if (o->server_pid > 0) {
    g->has_srv = lg_proc_read(o->server_pid, &g->srv_baseline) == 0;
  }
  g->n = o->n;
  g->period_us = llround(1e6 / o->hz);
  g->conns = calloc(g->n, sizeof(*g->conns));
  return g->conns == NULL ? 2 : 0;
}


void lg_window_open(lg_t* g) {
  g->is_window_open = true;
  g->window_start_us = lg_mono_us();
  g->self_cpu0 = lg_self_cpu_s();
  if (g->has_srv) {
    g->has_srv = lg_proc_read(g->opt.server_pid, &g->srv0) == 0;
  }
}


void lg_window_close(lg_t* g) {
  g->is_window_open = false;
  g->window_s = (double) (lg_mono_us() - g->window_start_us) / 1e6;
  g->self_cpu_s = lg_self_cpu_s() - g->self_cpu0;
  if (g->has_srv) {
    g->has_srv = lg_proc_read(g->opt.server_pid, &g->srv1) == 0;
  }
}


typedef struct {
  uint32_t active; /* established, not stalling on purpose */
  double rate_mean;
  double rate_min;
  double drift_max_ms;
  double ts_drift_max_ms;
} lg_rates_t;


static lg_rates_t client_rates(const lg_t* g) {
  lg_rates_t r = {.rate_min = INFINITY};
  double sum = 0;
  for (uint32_t i = 0; i < g->n; i++) {
    const lg_conn_t* c = &g->conns[i];
    if (c->is_stall_client || !c->was_open) {
      continue;
    }
    /* Previews per second of the server's clock, between the first and
     * the last preview this client got in the window: counting arrivals in
     * the window instead is off by one whenever the window edge falls
     * inside a tick's spread of arrival times. A missed preview in between
     * still lowers the rate. */
    double span_s = (double) (c->last_ts_us - c->first_ts_us) / 1e6;
    double rate =
        c->previews >= 2 && span_s > 0
            ? (double) (c->previews - 1) / span_s
            : (g->window_s > 0 ? (double) c->previews / g->window_s : 0);
    r.active++;
    sum += rate;
    r.rate_min = rate < r.rate_min ? rate : r.rate_min;
    double d = fabs((double) c->drift_us) / 1e3;
    double t = fabs((double) c->ts_drift_us) / 1e3;
    r.drift_max_ms = d > r.drift_max_ms ? d : r.drift_max_ms;
    r.ts_drift_max_ms = t > r.ts_drift_max_ms ? t : r.ts_drift_max_ms;
  }
  r.rate_mean = r.active > 0 ? sum / r.active : 0;
  if (r.active == 0) {
    r.rate_min = 0;
  }
  return r;
}


int lg_report(lg_t* g) {
  lg_rates_t r = client_rates(g);
  double mb_s =
      g->window_s > 0 ? (double) g->window_bytes / 1e6 / g->window_s : 0;
  double gb = (double) g->window_bytes / 1e9;
  double srv_cpu = g->has_srv ? g->srv1.cpu_s - g->srv0.cpu_s : -1;
  double per_conn_kib =
      g->has_srv && g->established > 0
          ? (double) (g->srv0.rss_kib - g->srv_baseline.rss_kib) /
                g->established
          : -1;
  printf(
      "%s: %u/%u connected (%u failed, %u dropped, %u closed by server)"
      " in %.1f s; connect p50 %.2f p99 %.2f max %.2f ms\n",
      g->opt.label, g->established, g->n, g->failed, g->dropped,
      g->closed_by_server, g->ramp_s, lg_samples_pct_ms(&g->connect, 50),
      lg_samples_pct_ms(&g->connect, 99), lg_samples_max_ms(&g->connect));
  printf(
      "  window %.1f s: previews/s per client %.3f (min %.3f, expected "
      "%.3f), %.1f MB/s\n",
      g->window_s, r.rate_mean, r.rate_min, g->opt.hz, mb_s);
  printf(
      "  latency p50 %.1f p99 %.1f max %.1f ms; jitter p50 %.3f p99 %.3f "
      "max %.3f ms; drift max %.3f ms (server timestamps %.3f ms)\n",
      lg_samples_pct_ms(&g->latency, 50), lg_samples_pct_ms(&g->latency, 99),
      lg_samples_max_ms(&g->latency), lg_samples_pct_ms(&g->jitter, 50),
      lg_samples_pct_ms(&g->jitter, 99), lg_samples_max_ms(&g->jitter),
      r.drift_max_ms, r.ts_drift_max_ms);
  printf(
      "  loadgen CPU %.2f s (%.0f%% of a core); validated %u previews, "
      "%u invalid\n",
      g->self_cpu_s, 100 * g->self_cpu_s / (g->window_s > 0 ? g->window_s : 1),
      g->validated, g->invalid);
  printf(
      "  %s: %u of %u got the terminal message; %llu binary previews, "
      "%llu deltas (%llu complete), %llu chunk messages (%llu bytes)\n",
      g->opt.encoding != NULL ? g->opt.encoding : "base64", g->ended, g->n,
      (unsigned long long) g->bin_previews, (unsigned long long) g->deltas,
      (unsigned long long) g->deltas_complete,
      (unsigned long long) g->chunk_msgs, (unsigned long long) g->chunk_bytes);
  if (g->has_srv) {
    printf(
        "  server CPU %.2f s (%.3f s/GB), RSS %ld -> %ld KiB (peak %ld, "
        "%.2f KiB per connection)\n",
        srv_cpu, gb > 0 ? srv_cpu / gb : 0, g->srv0.rss_kib, g->srv1.rss_kib,
        g->srv1.hwm_kib, per_conn_kib);
  }
  if (g->opt.json_path != NULL) {
    FILE* f = fopen(g->opt.json_path, "w");
    if (f == NULL) {
      fprintf(stderr, "loadgen: %s: %s\n", g->opt.json_path, strerror(errno));
      return 2;
    }
    fprintf(f,
            "{\"label\":\"%s\",\"n\":%u,\"jobs\":%u,\"stall\":%u,\"hz\":%g,"
            "\"shape\":[%u,%u,%u],\"window_s\":%.3f,\"ramp_s\":%.3f,\n"
            " \"established\":%u,\"failed\":%u,\"dropped\":%u,"
            "\"closed_by_server\":%u,\"last_close_code\":%d,"
            "\"protocol_errors\":%u,\n"
            " \"connect_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},\n"
            " \"previews_per_s\":{\"mean\":%.4f,\"min\":%.4f,"
            "\"expected\":%g,\"clients\":%u},\"mb_per_s\":%.2f,"
            "\"bytes\":%llu,\n"
            " \"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f,"
            "\"samples\":%zu},\n"
            " \"jitter_ms\":{\"p50\":%.4f,\"p99\":%.4f,\"max\":%.4f},"
            "\"drift_ms\":%.4f,\"ts_drift_ms\":%.4f,\n"
            " \"loadgen_cpu_s\":%.3f,\"validated\":%u,\"invalid\":%u,"
            "\"unparsed\":%llu",
            g->opt.label, g->n, g->job_count, g->opt.stall, g->opt.hz,
            g->shape.d[0], g->shape.d[1], g->shape.d[2], g->window_s, g->ramp_s,
            g->established, g->failed, g->dropped, g->closed_by_server,
            g->last_close_code, g->protocol_errors,
            lg_samples_pct_ms(&g->connect, 50),
            lg_samples_pct_ms(&g->connect, 99), lg_samples_max_ms(&g->connect),
            r.rate_mean, r.rate_min, g->opt.hz, r.active, mb_s,
            (unsigned long long) g->window_bytes,
            lg_samples_pct_ms(&g->latency, 50),
            lg_samples_pct_ms(&g->latency, 99), lg_samples_max_ms(&g->latency),
            g->latency.len, lg_samples_pct_ms(&g->jitter, 50),
            lg_samples_pct_ms(&g->jitter, 99), lg_samples_max_ms(&g->jitter),
            r.drift_max_ms, r.ts_drift_max_ms, g->self_cpu_s, g->validated,
            g->invalid, (unsigned long long) g->unparsed);
    fprintf(
        f,
        ",\n \"encoding\":\"%s\",\"chunk_scale\":%u,\"until_end\":%s,"
        "\"ended\":%u,\"bin_previews\":%llu,\"deltas\":%llu,"
        "\"deltas_complete\":%llu,\"chunk_msgs\":%llu,"
        "\"chunk_bytes\":%llu,\"raw_previews\":%llu,\"raw_bytes\":%llu",
        g->opt.encoding != NULL ? g->opt.encoding : "base64",
        g->opt.chunk_scale, g->opt.until_end ? "true" : "false", g->ended,
        (unsigned long long) g->bin_previews, (unsigned long long) g->deltas,
        (unsigned long long) g->deltas_complete,
        (unsigned long long) g->chunk_msgs, (unsigned long long) g->chunk_bytes,
        (unsigned long long) g->raw_previews,
        (unsigned long long) g->raw_bytes);
    if (g->has_srv) {
      fprintf(f,
              ",\n \"server\":{\"cpu_s\":%.3f,\"cpu_s_per_gb\":%.4f,"
              "\"rss_kib_baseline\":%ld,\"rss_kib_start\":%ld,"
              "\"rss_kib_end\":%ld,\"hwm_kib\":%ld,"
              "\"rss_kib_per_conn\":%.3f}",
              srv_cpu, gb > 0 ? srv_cpu / gb : 0, g->srv_baseline.rss_kib,
              g->srv0.rss_kib, g->srv1.rss_kib, g->srv1.hwm_kib, per_conn_kib);
    }
    fprintf(f, "}\n");
    fclose(f);
  }
  return g->invalid > 0 ? 3 : 0;
}
