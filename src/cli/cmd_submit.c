/* cmd_submit.c: `cryomamba submit`: creates a job from an uploaded
 * FILE.mrc (uploaded first, or found on the server by its sha256), from a
 * shape, or from a file under the server's data root; then, with --watch,
 * follows it like `watch`. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"

static const char submit_help[] =
    "Usage: cryomamba submit [FILE.mrc | --shape Z,Y,X | --server-path P] "
    "[options]\n"
    "Creates a job and prints its id (with --json, the job object).\n"
    "  FILE.mrc            upload the file (resumable, like `cryomamba "
    "upload`;\n"
    "                      a file the server already has is not sent "
    "again)\n"
    "                      and create the job on that volume\n"
    "  --no-upload         with FILE: send only its shape and voxel size "
    "(read\n"
    "                      from the header), not the file\n"
    "  --parallel N, --chunk-mib N, --no-resume\n"
    "                      how FILE is uploaded (see `cryomamba upload "
    "--help`)\n"
    "  --shape Z,Y,X       volume shape (or N for N,N,N); default the "
    "server's\n"
    "  --voxel-size A      voxel size in Angstrom (or Z,Y,X)\n"
    "  --server-path P     an MRC file under the server's data root\n"
    "  --hz HZ             previews per second (0.1..30)\n"
    "  --scale S           preview downsampling factor (1..16)\n"
    "  --duration S        simulated inference time in seconds\n"
    "  --seed N            seed of the simulated masks\n"
    "  --pattern P         random or blobs\n"
    "                      (these three imply --engine sim)\n"
    "  --engine NAME       the engine that runs the job (GET "
    "/v1/server/info\n"
    "                      lists them; default: the server's, classic for\n"
    "                      a volume, sim for --shape)\n"
    "  --engine-params JSON  the engine's own params, a JSON object (e.g.\n"
    "                      '{\"window\":64}' for classic)\n"
    "  --downsample M      previews by nearest (default) or max (thin\n"
    "                      membranes survive a --scale)\n"
    "  --watch             then follow the job like `cryomamba watch`\n"
    "  --max-retries N     upload retries and watch reconnects in a row "
    "(10)\n"
    "  --save-previews DIR, --no-progress, --encoding E, --slice,\n"
    "  --max-message-bytes N\n"
    "                      (with --watch; see `cryomamba watch --help`)\n"
    "Exit: as `upload` while uploading (130: interrupted, resumable), then "
    "as\n`watch` with --watch.\n";


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


typedef struct {
  cm_job_spec_t spec;
  cli_watch_opts_t wopts;
  cli_upload_opts_t uopts;
  bool watch, has_shape, has_voxel, no_upload;
  bool has_sim_opts; /* --duration, --seed or --pattern: sim's own */
  double voxel[3];
} submit_t;

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
  OPT_ENGINE_PARAMS,
  OPT_DOWNSAMPLE,
  OPT_WATCH,
  OPT_SAVE,
  OPT_RETRIES,
  OPT_NOPROG,
  OPT_ENCODING,
  OPT_SLICE,
  OPT_MAX_MESSAGE,
  OPT_NO_UPLOAD
};


/* One option; returns -1 to go on, else an exit code. */
static int submit_opt(cli_ctx_t* ctx, char** argv, int c, submit_t* s) {
  const char* cmd = argv[0];
  double d;
  cm_job_spec_t* spec = &s->spec;
  switch (c) {
  case 'h':
    fputs(submit_help, stdout);
    return CLI_EXIT_OK;
  case OPT_SHAPE:
    if (!cli_parse_shape(optarg, spec->shape)) {
      return cli_usage_error(ctx, cmd,
                             "--shape wants Z,Y,X with each 1..4096, not "
                             "\"%s\"",
                             optarg);
    }
    s->has_shape = true;
    return -1;
  case OPT_VOXEL:
    if (!parse_voxel_size(optarg, s->voxel)) {
      return cli_usage_error(ctx, cmd,
                             "--voxel-size wants A or Z,Y,X (> 0), not "
                             "\"%s\"",
                             optarg);
    }
    s->has_voxel = true;
    return -1;
  case OPT_PATH:
    spec->server_path = optarg;
    return -1;
  case OPT_HZ:
    if (!parse_double(optarg, &spec->preview_hz) ||
        !(spec->preview_hz >= 0.1 && spec->preview_hz <= 30)) {
      return cli_usage_error(ctx, cmd, "--hz wants 0.1..30, not \"%s\"",
                             optarg);
    }
    return -1;
  case OPT_SCALE:
    if (!parse_double(optarg, &d) || d != (double) (uint32_t) d || d < 1 ||
        d > 16) {
      return cli_usage_error(
          ctx, cmd, "--scale wants an integer 1..16, not \"%s\"", optarg);
    }
    spec->preview_scale = (uint32_t) d;
    return -1;
  case OPT_DURATION:
    s->has_sim_opts = true;
    if (!parse_double(optarg, &spec->duration_s) || spec->duration_s < 0 ||
        spec->duration_s > 86400) {
      return cli_usage_error(
          ctx, cmd, "--duration wants seconds 0..86400, not \"%s\"", optarg);
    }
    return -1;
  case OPT_SEED:
    s->has_sim_opts = true;
    if (!parse_double(optarg, &d) || d < 0 || d != (double) (int64_t) d) {
      return cli_usage_error(
          ctx, cmd, "--seed wants an integer >= 0, not \"%s\"", optarg);
    }
    spec->seed = (int64_t) d;
    return -1;
  case OPT_PATTERN:
    s->has_sim_opts = true;
    if (strcmp(optarg, "random") != 0 && strcmp(optarg, "blobs") != 0) {
      return cli_usage_error(
          ctx, cmd, "--pattern wants random or blobs, not \"%s\"", optarg);
    }
    spec->pattern = optarg;
    return -1;
  case OPT_ENGINE:
    spec->engine = optarg; /* the server checks the name */
    return -1;
  case OPT_ENGINE_PARAMS: {
    json_t* v = json_loads(optarg, 0, NULL);
    bool ok = json_is_object(v);
    json_decref(v);
    if (!ok) {
      return cli_usage_error(ctx, cmd,
                             "--engine-params wants a JSON object, e.g. "
                             "'{\"window\":64}', not \"%s\"",
                             optarg);
    }
    spec->engine_params = optarg; /* the engine checks what is in it */
    return -1;
  }
  case OPT_DOWNSAMPLE:
    if (strcmp(optarg, "nearest") != 0 && strcmp(optarg, "max") != 0) {
      return cli_usage_error(
          ctx, cmd, "--downsample wants nearest or max, not \"%s\"", optarg);
    }
    spec->preview_downsample = optarg;
    return -1;
  case OPT_WATCH:
    s->watch = true;
    return -1;
  case OPT_SAVE:
    s->wopts.save_dir = optarg;
    return -1;
  case OPT_RETRIES:
    if (!parse_double(optarg, &d) || d < 0 || d > 1e6 ||
        d != (double) (unsigned) d) {
      return cli_usage_error(ctx, cmd,
                             "--max-retries wants an integer >= 0, not "
                             "\"%s\"",
                             optarg);
    }
    s->wopts.max_retries = (unsigned) d;
    s->uopts.max_retries = (unsigned) d;
    return -1;
  case OPT_NOPROG:
    s->wopts.no_progress = true;
    s->uopts.no_progress = true;
    return -1;
  case OPT_SLICE:
    s->wopts.show_slice = true;
    return -1;
  case OPT_NO_UPLOAD:
    s->no_upload = true;
    return -1;
  case OPT_MAX_MESSAGE: {
    int rc =
        cli_parse_max_message(ctx, cmd, optarg, &s->wopts.max_message_bytes);
    return rc != 0 ? rc : -1;
  }
  case OPT_ENCODING: {
    int rc = cli_parse_encoding(ctx, cmd, optarg, &s->wopts.encoding);
    return rc != 0 ? rc : -1;
  }
  case CLI_OPT_PARALLEL:
  case CLI_OPT_CHUNK:
  case CLI_OPT_NO_RESUME: {
    int rc = cli_parse_upload_opt(ctx, cmd, c, optarg, &s->uopts);
    return rc != 0 ? rc : -1;
  }
  default:
    return cli_usage_error(ctx, cmd, "unknown option or missing value: \"%s\"",
                           argv[optind - 1]);
  }
}


/* The job's volume: FILE uploaded (or, with --no-upload, its header
 * read), a shape or a server path. Returns -1 to go on, else an exit
 * code. */
static int submit_volume(cli_ctx_t* ctx,
                         int argc,
                         char** argv,
                         submit_t* s,
                         char volume_id[40]) {
  const char* cmd = argv[0];
  cm_job_spec_t* spec = &s->spec;
  volume_id[0] = '\0';
  if (optind < argc) {
    if (optind + 1 < argc) {
      return cli_usage_error(ctx, cmd, "unexpected argument \"%s\"",
                             argv[optind + 1]);
    }
    if (s->has_shape || spec->server_path != NULL) {
      return cli_usage_error(ctx, cmd,
                             "give a FILE, --shape or --server-path, not "
                             "several");
    }
    const char* path = argv[optind];
    if (s->no_upload) {
      int rc =
          cli_read_mrc_header(ctx, cmd, path, spec->shape, spec->voxel_size);
      return rc != 0 ? rc : -1;
    }
    cm_volume_t vol;
    int rc = cli_upload_file(ctx, path, &s->uopts, &vol, NULL);
    if (rc != 0) {
      return rc;
    }
    if (!ctx->quiet) {
      fprintf(stderr, "%s: %s is volume %s (sha256 %.12s...)\n", ctx->prog,
              path, vol.volume_id, vol.sha256);
    }
    memcpy(volume_id, vol.volume_id, 40);
    spec->volume_id = volume_id;
  } else if (s->has_shape && spec->server_path != NULL) {
    return cli_usage_error(ctx, cmd,
                           "--shape and --server-path exclude each other");
  } else if (s->no_upload) {
    return cli_usage_error(ctx, cmd, "--no-upload needs a FILE");
  }
  if (s->has_voxel) {
    memcpy(spec->voxel_size, s->voxel, sizeof(s->voxel));
    if (spec->shape[0] == 0 && spec->server_path == NULL &&
        spec->volume_id == NULL) {
      return cli_usage_error(ctx, cmd, "--voxel-size needs --shape or a FILE");
    }
  }
  return -1;
}


int cli_cmd_submit(cli_ctx_t* ctx, int argc, char** argv) {
  static const struct option longs[] = {
      {"help", no_argument, NULL, 'h'},
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
      {"engine-params", required_argument, NULL, OPT_ENGINE_PARAMS},
      {"downsample", required_argument, NULL, OPT_DOWNSAMPLE},
      {"watch", no_argument, NULL, OPT_WATCH},
      {"save-previews", required_argument, NULL, OPT_SAVE},
      {"max-retries", required_argument, NULL, OPT_RETRIES},
      {"no-progress", no_argument, NULL, OPT_NOPROG},
      {"encoding", required_argument, NULL, OPT_ENCODING},
      {"slice", no_argument, NULL, OPT_SLICE},
      {"no-upload", no_argument, NULL, OPT_NO_UPLOAD},
      {"parallel", required_argument, NULL, CLI_OPT_PARALLEL},
      {"chunk-mib", required_argument, NULL, CLI_OPT_CHUNK},
      {"no-resume", no_argument, NULL, CLI_OPT_NO_RESUME},
      {NULL, 0, NULL, 0}};
  submit_t s;
  memset(&s, 0, sizeof(s));
  cm_job_spec_init(&s.spec);
  s.wopts.max_retries = 10;
  cli_upload_opts_init(&s.uopts);
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    int rc = submit_opt(ctx, argv, c, &s);
    if (rc >= 0) {
      return rc;
    }
  }
  if (s.spec.engine == NULL && s.has_sim_opts) {
    /* Those options mean something to the simulator only: without them a
     * volume would go to the server's default for volumes (classic). */
    s.spec.engine = "sim";
  }
  char volume_id[40];
  int rc = submit_volume(ctx, argc, argv, &s, volume_id);
  if (rc >= 0) {
    return rc;
  }
  cm_client_t* client;
  if ((rc = cli_client_new(ctx, NULL, &client)) != 0) {
    return rc;
  }
  cm_reply_t r;
  int err = cm_job_create_sync(client, &s.spec, &r);
  cm_client_free(client);
  if (err != 0) {
    /* Lost once the request may have gone out: the library did not send
     * it again (protocol.md 5.8), so the job may exist. */
    bool may_exist = err == UV_ECONNRESET || err == UV_EPROTO ||
                     err == UV_EOF || err == UV_EPIPE || err == UV_ETIMEDOUT;
    rc = cli_fail_then(ctx, err, &r, "creating the job",
                       may_exist ? "the job may have been created before the "
                                   "connection was lost: look with `cryomamba "
                                   "jobs` before submitting again"
                                 : NULL);
    cm_reply_clear(&r);
    return rc;
  }
  char id[40];
  snprintf(id, sizeof(id), "%s", r.job.job_id);
  if (ctx->json) {
    cli_print_body(&r);
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
  return s.watch ? cli_watch_job(ctx, id, &s.wopts) : CLI_EXIT_OK;
}
