/* cmd_rest.c: the CLI's one-shot commands over libcryomamba's blocking
 * REST helpers: health, status, jobs, cancel, download, submit. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/mrc.h"

#define HELP_OPT                                                               \
  { "help", no_argument, NULL, 'h' }

static const char health_help[] =
    "Usage: cryomamba health\n"
    "Checks GET /v1/healthz and prints the server's name, version and "
    "protocol.\n"
    "Exit 0 when the server answers, 7 when it cannot be reached.\n";
static const char status_help[] =
    "Usage: cryomamba status JOB\n"
    "Shows a job: state, progress, volume, preview parameters, artifact, "
    "errors.\n"
    "With --json, prints the server's job object.\n";
static const char jobs_help[] =
    "Usage: cryomamba jobs\n"
    "Lists the server's jobs, newest first. With --json, prints the "
    "server's list.\n";
static const char cancel_help[] =
    "Usage: cryomamba cancel JOB\n"
    "Cancels a queued or running job. Exit 4 when the job already ended "
    "(409),\n5 when there is no such job.\n";
static const char download_help[] =
    "Usage: cryomamba download JOB [-o FILE]\n"
    "Saves the final mask (MRC, uint8 labels) of a completed job, streamed "
    "to\nFILE (default mask-JOB.mrc; written as FILE.part, then renamed).\n"
    "Exit 4 when the job has not completed (409).\n"
    "  -o, --output FILE  where to write the mask\n";
static const char submit_help[] =
    "Usage: cryomamba submit [FILE.mrc | --shape Z,Y,X | --server-path P] "
    "[options]\n"
    "Creates a job and prints its id (with --json, the job object).\n"
    "  FILE.mrc            read the shape and voxel size from this file's "
    "header\n"
    "                      (the volume itself is not uploaded yet; the job "
    "refers\n"
    "                      to it by shape)\n"
    "  --shape Z,Y,X       volume shape (or N for N,N,N); default the "
    "server's\n"
    "  --voxel-size A      voxel size in Angstrom (or Z,Y,X)\n"
    "  --server-path P     an MRC file under the server's data root\n"
    "  --hz HZ             previews per second (0.1..30)\n"
    "  --scale S           preview downsampling factor (1..16)\n"
    "  --duration S        simulated inference time in seconds\n"
    "  --seed N            seed of the simulated masks\n"
    "  --pattern P         random or blobs\n"
    "  --engine NAME       the engine that runs the job (GET "
    "/v1/server/info\n"
    "                      lists them; default sim)\n"
    "  --watch             then follow the job like `cryomamba watch`\n"
    "  --save-previews DIR, --max-retries N, --no-progress, --encoding E,\n"
    "  --slice, --max-message-bytes N\n"
    "                      (with --watch; see `cryomamba watch --help`)\n";


static int want_help(cli_ctx_t* ctx, const char* text) {
  (void) ctx;
  fputs(text, stdout);
  return CLI_EXIT_OK;
}


/* Parses the options of a command that takes none but --help; returns
 * -1 to go on, else an exit code. */
static int parse_simple(cli_ctx_t* ctx,
                        int argc,
                        char** argv,
                        const char* help) {
  static const struct option longs[] = {HELP_OPT, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    if (c == 'h') {
      return want_help(ctx, help);
    }
    return cli_usage_error(ctx, argv[0], "unknown option \"%s\"",
                           argv[optind - 1]);
  }
  return -1;
}


const char* cli_job_arg(cli_ctx_t* ctx, int argc, char** argv, int* rc) {
  if (optind >= argc) {
    *rc = cli_usage_error(ctx, argv[0], "missing JOB (a job id)");
    return NULL;
  }
  if (optind + 1 < argc) {
    *rc = cli_usage_error(ctx, argv[0], "unexpected argument \"%s\"",
                          argv[optind + 1]);
    return NULL;
  }
  const char* id = argv[optind];
  if (strlen(id) != 36 || strspn(id, "0123456789abcdefABCDEF-") != 36) {
    *rc = cli_usage_error(ctx, argv[0],
                          "\"%s\" is not a job id (a UUID like "
                          "0f8b6c7e-6a43-4c1e-9a8e-2d3b5f1c9e10)",
                          id);
    return NULL;
  }
  return id;
}


static void print_body(const cm_reply_t* r) {
  if (r->body != NULL) {
    fputs(r->body, stdout);
    if (r->body_len == 0 || r->body[r->body_len - 1] != '\n') {
      putchar('\n');
    }
  }
}


int cli_cmd_health(cli_ctx_t* ctx, int argc, char** argv) {
  int rc = parse_simple(ctx, argc, argv, health_help);
  if (rc >= 0) {
    return rc;
  }
  if (optind < argc) {
    return cli_usage_error(ctx, argv[0], "unexpected argument \"%s\"",
                           argv[optind]);
  }
  cm_client_t* client;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    return rc;
  }
  cm_reply_t health, info;
  int err = cm_health_sync(client, &health);
  if (err != 0) {
    rc = cli_fail(ctx, err, &health, "checking the server's health");
  } else {
    int ierr = cm_server_info_sync(client, &info);
    if (ctx->json) {
      printf("{\"server\":\"%s\",\"health\":%s,\"info\":%s}\n", ctx->server,
             health.body, ierr == 0 ? info.body : "null");
    } else {
      json_error_t jerr;
      json_t* root = ierr == 0 ? json_loads(info.body, 0, &jerr) : NULL;
      const char* name = json_string_value(json_object_get(root, "name"));
      const char* version = json_string_value(json_object_get(root, "version"));
      printf("ok: %s is %s %s, protocol %lld\n", ctx->server,
             name != NULL ? name : "a server",
             version != NULL ? version : "(version unknown)",
             (long long) json_integer_value(
                 json_object_get(root, "protocol_version")));
      json_decref(root);
    }
    cm_reply_clear(&info);
  }
  cm_reply_clear(&health);
  cm_client_free(client);
  return rc;
}


/* The start of every `COMMAND JOB` command: options (only --help), the
 * job id, a client. Returns -1 with *id and *client set, or the exit code
 * to return at once. */
static int open_job_command(cli_ctx_t* ctx,
                            int argc,
                            char** argv,
                            const char* help,
                            const char** id,
                            cm_client_t** client) {
  int rc = parse_simple(ctx, argc, argv, help);
  if (rc >= 0) {
    return rc;
  }
  *id = cli_job_arg(ctx, argc, argv, &rc);
  if (*id == NULL) {
    return rc;
  }
  if ((rc = cli_client_new(ctx, NULL, client)) != 0) {
    return rc;
  }
  return -1;
}


/* `status JOB` and `cancel JOB`: one request about one job, then its
 * answer as JSON (--json) or a line for people. */
static int job_request(cli_ctx_t* ctx, int argc, char** argv, bool cancel) {
  const char* id;
  cm_client_t* client;
  int rc = open_job_command(ctx, argc, argv, cancel ? cancel_help : status_help,
                            &id, &client);
  if (rc >= 0) {
    return rc;
  }
  rc = CLI_EXIT_OK;
  cm_reply_t r;
  int err = cancel ? cm_job_cancel_sync(client, id, &r)
                   : cm_job_get_sync(client, id, &r);
  char what[80];
  snprintf(what, sizeof(what), "%s job %s", cancel ? "cancelling" : "getting",
           id);
  if (err != 0) {
    rc = cli_fail(ctx, err, &r, what);
  } else if (ctx->json) {
    print_body(&r);
  } else if (cancel) {
    printf("job %s cancelled\n", id);
  } else {
    cli_print_job(&r.job);
  }
  cm_reply_clear(&r);
  cm_client_free(client);
  return rc;
}


int cli_cmd_status(cli_ctx_t* ctx, int argc, char** argv) {
  return job_request(ctx, argc, argv, false);
}


int cli_cmd_jobs(cli_ctx_t* ctx, int argc, char** argv) {
  int rc = parse_simple(ctx, argc, argv, jobs_help);
  if (rc >= 0) {
    return rc;
  }
  if (optind < argc) {
    return cli_usage_error(ctx, argv[0], "unexpected argument \"%s\"",
                           argv[optind]);
  }
  cm_client_t* client;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    return rc;
  }
  cm_reply_t r;
  int err = cm_job_list_sync(client, &r);
  if (err != 0) {
    rc = cli_fail(ctx, err, &r, "listing jobs");
  } else if (ctx->json) {
    print_body(&r);
  } else if (r.job_count == 0) {
    printf("no jobs\n");
  } else {
    printf("%-36s  %-9s  %6s  %-16s  %s\n", "JOB", "STATE", "DONE", "SHAPE",
           "CREATED");
    for (size_t i = 0; i < r.job_count; i++) {
      const cm_job_t* j = &r.jobs[i];
      char shape[48];
      snprintf(shape, sizeof(shape), "%ux%ux%u", j->shape[0], j->shape[1],
               j->shape[2]);
      printf("%-36s  %-9s  %5.1f%%  %-16s  %s\n", j->job_id,
             cm_job_state_name(j->state), j->progress * 100, shape,
             j->created_at);
    }
  }
  cm_reply_clear(&r);
  cm_client_free(client);
  return rc;
}


int cli_cmd_cancel(cli_ctx_t* ctx, int argc, char** argv) {
  return job_request(ctx, argc, argv, true);
}


int cli_cmd_download(cli_ctx_t* ctx, int argc, char** argv) {
  static const struct option longs[] = {
      HELP_OPT, {"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
  const char* out = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "ho:", longs, NULL)) != -1) {
    if (c == 'h') {
      return want_help(ctx, download_help);
    } else if (c == 'o') {
      out = optarg;
    } else {
      return cli_usage_error(ctx, argv[0],
                             "unknown option or missing "
                             "value: \"%s\"",
                             argv[optind - 1]);
    }
  }
  int rc;
  const char* id = cli_job_arg(ctx, argc, argv, &rc);
  if (id == NULL) {
    return rc;
  }
  char def[64];
  if (out == NULL) {
    snprintf(def, sizeof(def), "mask-%s.mrc", id);
    out = def;
  }
  cm_client_t* client;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    return rc;
  }
  cm_reply_t r;
  int err = cm_artifact_download_sync(client, id, "mask.mrc", out, &r);
  char what[600];
  snprintf(what, sizeof(what), "downloading the mask of job %s to %s", id, out);
  if (err != 0) {
    rc = cli_fail(ctx, err, &r, what);
  } else if (ctx->json) {
    printf("{\"job_id\":\"%s\",\"path\":\"%s\",\"bytes\":%llu}\n", id, out,
           (unsigned long long) r.bytes);
  } else {
    char b[32];
    printf("saved %s (%s)\n", out, cli_human_bytes(r.bytes, b, sizeof(b)));
  }
  cm_reply_clear(&r);
  cm_client_free(client);
  return rc;
}


/* Reads an MRC header for its shape and voxel size. */
static int read_mrc_header(cli_ctx_t* ctx,
                           const char* path,
                           cm_job_spec_t* spec) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  uint8_t buf[CORE_MRC_HEADER_LEN];
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "%s submit: cannot open %s: %s\n", ctx->prog, path,
            strerror(errno));
    if (fd >= 0) {
      close(fd);
    }
    return CLI_EXIT_IO;
  }
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  core_mrc_header_t h;
  char err[256];
  if (n != (ssize_t) sizeof(buf) ||
      core_mrc_header_parse(buf, sizeof(buf), (uint64_t) st.st_size, &h, err,
                            sizeof(err)) != 0) {
    fprintf(stderr, "%s submit: %s is not a valid MRC2014 file: %s\n",
            ctx->prog, path, n != (ssize_t) sizeof(buf) ? "too short" : err);
    return CLI_EXIT_IO;
  }
  for (int i = 0; i < 3; i++) {
    spec->shape[i] = h.shape.d[i];
    spec->voxel_size[i] = h.voxel_size[i] > 0 ? h.voxel_size[i] : 1.0;
  }
  return 0;
}


static bool parse_double(const char* s, double* out) {
  char* end;
  errno = 0;
  *out = strtod(s, &end);
  return end != s && *end == '\0' && errno == 0;
}


static bool parse_voxel_size(const char* s, double out[3]) {
  double v[3];
  int n = sscanf(s, "%lf,%lf,%lf", &v[0], &v[1], &v[2]);
  if (n == 1 && parse_double(s, &v[0])) {
    v[1] = v[2] = v[0];
  } else if (n != 3) {
    return false;
  }
  for (int i = 0; i < 3; i++) {
    if (!(v[i] > 0)) {
      return false;
    }
    out[i] = v[i];
  }
  return true;
}


int cli_cmd_submit(cli_ctx_t* ctx, int argc, char** argv) {
  enum {
    OPT_SHAPE = 256,
    OPT_VOXEL,
    OPT_PATH,
    OPT_HZ,
    OPT_SCALE,
    OPT_DURATION,
    OPT_SEED,
    OPT_PATTERN,
    OPT_ENGINE,
    OPT_WATCH,
    OPT_SAVE,
    OPT_RETRIES,
    OPT_NOPROG,
    OPT_ENCODING,
    OPT_SLICE,
    OPT_MAX_MESSAGE
  };
  static const struct option longs[] = {
      HELP_OPT,
      {"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE},
      {"shape", required_argument, NULL, OPT_SHAPE},
      {"voxel-size", required_argument, NULL, OPT_VOXEL},
      {"server-path", required_argument, NULL, OPT_PATH},
      {"hz", required_argument, NULL, OPT_HZ},
      {"scale", required_argument, NULL, OPT_SCALE},
      {"duration", required_argument, NULL, OPT_DURATION},
      {"seed", required_argument, NULL, OPT_SEED},
      {"pattern", required_argument, NULL, OPT_PATTERN},
      {"engine", required_argument, NULL, OPT_ENGINE},
      {"watch", no_argument, NULL, OPT_WATCH},
      {"save-previews", required_argument, NULL, OPT_SAVE},
      {"max-retries", required_argument, NULL, OPT_RETRIES},
      {"no-progress", no_argument, NULL, OPT_NOPROG},
      {"encoding", required_argument, NULL, OPT_ENCODING},
      {"slice", no_argument, NULL, OPT_SLICE},
      {NULL, 0, NULL, 0}};
  cm_job_spec_t spec;
  cm_job_spec_init(&spec);
  cli_watch_opts_t wopts = {.max_retries = 10};
  bool watch = false, has_shape = false, has_voxel = false;
  double voxel[3];
  int c;
  const char* cmd = argv[0];
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    double d;
    switch (c) {
    case 'h':
      return want_help(ctx, submit_help);
    case OPT_SHAPE:
      if (!cli_parse_shape(optarg, spec.shape)) {
        return cli_usage_error(ctx, cmd,
                               "--shape wants Z,Y,X with each "
                               "1..4096, not \"%s\"",
                               optarg);
      }
      has_shape = true;
      break;
    case OPT_VOXEL:
      if (!parse_voxel_size(optarg, voxel)) {
        return cli_usage_error(ctx, cmd,
                               "--voxel-size wants A or Z,Y,X "
                               "(> 0), not \"%s\"",
                               optarg);
      }
      has_voxel = true;
      break;
    case OPT_PATH:
      spec.server_path = optarg;
      break;
    case OPT_HZ:
      if (!parse_double(optarg, &spec.preview_hz) ||
          !(spec.preview_hz >= 0.1 && spec.preview_hz <= 30)) {
        return cli_usage_error(ctx, cmd, "--hz wants 0.1..30, not \"%s\"",
                               optarg);
      }
      break;
    case OPT_SCALE:
      if (!parse_double(optarg, &d) || d != (double) (uint32_t) d || d < 1 ||
          d > 16) {
        return cli_usage_error(ctx, cmd,
                               "--scale wants an integer 1..16, "
                               "not \"%s\"",
                               optarg);
      }
      spec.preview_scale = (uint32_t) d;
      break;
    case OPT_DURATION:
      if (!parse_double(optarg, &spec.duration_s) || spec.duration_s < 0 ||
          spec.duration_s > 86400) {
        return cli_usage_error(ctx, cmd,
                               "--duration wants seconds "
                               "0..86400, not \"%s\"",
                               optarg);
      }
      break;
    case OPT_SEED:
      if (!parse_double(optarg, &d) || d < 0 || d != (double) (int64_t) d) {
        return cli_usage_error(ctx, cmd,
                               "--seed wants an integer >= 0, not "
                               "\"%s\"",
                               optarg);
      }
      spec.seed = (int64_t) d;
      break;
    case OPT_PATTERN:
      if (strcmp(optarg, "random") != 0 && strcmp(optarg, "blobs") != 0) {
        return cli_usage_error(ctx, cmd,
                               "--pattern wants random or blobs, "
                               "not \"%s\"",
                               optarg);
      }
      spec.pattern = optarg;
      break;
    case OPT_ENGINE:
      spec.engine = optarg; /* the server checks the name */
      break;
    case OPT_WATCH:
      watch = true;
      break;
    case OPT_SAVE:
      wopts.save_dir = optarg;
      break;
    case OPT_RETRIES:
      if (!parse_double(optarg, &d) || d < 0 || d > 1e6 ||
          d != (double) (unsigned) d) {
        return cli_usage_error(ctx, cmd,
                               "--max-retries wants an integer >= "
                               "0, not \"%s\"",
                               optarg);
      }
      wopts.max_retries = (unsigned) d;
      break;
    case OPT_NOPROG:
      wopts.no_progress = true;
      break;
    case OPT_SLICE:
      wopts.show_slice = true;
      break;
    case OPT_MAX_MESSAGE: {
      int rc =
          cli_parse_max_message(ctx, cmd, optarg, &wopts.max_message_bytes);
      if (rc != 0) {
        return rc;
      }
      break;
    }
    case OPT_ENCODING: {
      int rc = cli_parse_encoding(ctx, cmd, optarg, &wopts.encoding);
      if (rc != 0) {
        return rc;
      }
      break;
    }
    default:
      return cli_usage_error(ctx, cmd,
                             "unknown option or missing value: "
                             "\"%s\"",
                             argv[optind - 1]);
    }
  }
  if (optind < argc) {
    if (optind + 1 < argc) {
      return cli_usage_error(ctx, cmd, "unexpected argument \"%s\"",
                             argv[optind + 1]);
    }
    if (has_shape || spec.server_path != NULL) {
      return cli_usage_error(ctx, cmd,
                             "give a FILE, --shape or "
                             "--server-path, not several");
    }
    int rc = read_mrc_header(ctx, argv[optind], &spec);
    if (rc != 0) {
      return rc;
    }
  } else if (has_shape && spec.server_path != NULL) {
    return cli_usage_error(ctx, cmd,
                           "--shape and --server-path exclude "
                           "each other");
  }
  if (has_voxel) {
    memcpy(spec.voxel_size, voxel, sizeof(voxel));
    if (spec.shape[0] == 0 && spec.server_path == NULL) {
      return cli_usage_error(ctx, cmd,
                             "--voxel-size needs --shape or a "
                             "FILE");
    }
  }
  cm_client_t* client;
  int rc;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    return rc;
  }
  cm_reply_t r;
  int err = cm_job_create_sync(client, &spec, &r);
  cm_client_free(client);
  if (err != 0) {
    rc = cli_fail(ctx, err, &r, "creating the job");
    cm_reply_clear(&r);
    return rc;
  }
  char id[40];
  snprintf(id, sizeof(id), "%s", r.job.job_id);
  if (ctx->json) {
    print_body(&r);
  } else {
    printf("%s\n", id);
    if (!ctx->quiet) {
      fprintf(stderr,
              "job %s created (%s), volume %ux%ux%u, preview scale %u\n", id,
              cm_job_state_name(r.job.state), r.job.shape[0], r.job.shape[1],
              r.job.shape[2], r.job.preview_scale);
    }
  }
  fflush(stdout);
  cm_reply_clear(&r);
  return watch ? cli_watch_job(ctx, id, &wopts) : CLI_EXIT_OK;
}
