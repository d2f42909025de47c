/* cmd_phantom.c: `cryomamba phantom`: writes a synthetic tomogram
 * (core/phantom.c) as an MRC2014 float32 file, one Z slice at a time, then
 * rewrites the header with the real statistics. No server involved. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/mrc.h"
#include "core/phantom.h"

static const char phantom_help[] =
    "Usage: cryomamba phantom --shape Z,Y,X -o FILE.mrc [options]\n"
    "Writes a synthetic tomogram (vesicle membranes, particles, Gaussian "
    "noise;\nfloat32 MRC2014, readable by mrcfile/IMOD) for demos and tests.\n"
    "  --shape Z,Y,X     size in voxels (or N for N,N,N), each 1..4096\n"
    "  -o, --output FILE where to write it\n"
    "  --voxel-size A    voxel size in Angstrom (default 10)\n"
    "  --seed N          structure and noise seed (default 0)\n"
    "  --noise SIGMA     noise standard deviation (default 0.5)\n";


int cli_cmd_phantom(cli_ctx_t* ctx, int argc, char** argv) {
  enum {
    OPT_SHAPE = 256,
    OPT_VOXEL,
    OPT_SEED,
    OPT_NOISE
  };
  static const struct option longs[] = {
      {"help", no_argument, NULL, 'h'},
      {"shape", required_argument, NULL, OPT_SHAPE},
      {"output", required_argument, NULL, 'o'},
      {"voxel-size", required_argument, NULL, OPT_VOXEL},
      {"seed", required_argument, NULL, OPT_SEED},
      {"noise", required_argument, NULL, OPT_NOISE},
      {NULL, 0, NULL, 0}};
  uint32_t shape[3] = {0, 0, 0};
  const char* out = NULL;
  double voxel = 10, noise = 0.5;
  unsigned long long seed = 0;
  int c;
  const char* cmd = argv[0];
  while ((c = getopt_long(argc, argv, "ho:", longs, NULL)) != -1) {
    char* end;
    switch (c) {
    case 'h':
      fputs(phantom_help, stdout);
      return CLI_EXIT_OK;
    case OPT_SHAPE:
      if (!cli_parse_shape(optarg, shape)) {
        return cli_usage_error(ctx, cmd,
                               "--shape wants Z,Y,X with each "
                               "1..4096, not \"%s\"",
                               optarg);
      }
      break;
    case 'o':
      out = optarg;
      break;
    case OPT_VOXEL:
      voxel = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || !(voxel > 0)) {
        return cli_usage_error(ctx, cmd, "--voxel-size wants a number > 0");
      }
      break;
    case OPT_SEED:
      seed = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0') {
        return cli_usage_error(ctx, cmd, "--seed wants an integer >= 0");
      }
      break;
    case OPT_NOISE:
      noise = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || !(noise >= 0)) {
        return cli_usage_error(ctx, cmd, "--noise wants a number >= 0");
      }
      break;
    default:
      return cli_usage_error(ctx, cmd,
                             "unknown option or missing value: "
                             "\"%s\"",
                             argv[optind - 1]);
    }
  }
  if (optind < argc) {
    return cli_usage_error(ctx, cmd, "unexpected argument \"%s\"",
                           argv[optind]);
  }
  if (shape[0] == 0 || out == NULL) {
    return cli_usage_error(ctx, cmd, "--shape and -o are required");
  }
  core_shape_t s = {{shape[0], shape[1], shape[2]}};
  core_phantom_t* ph = malloc(sizeof(*ph));
  size_t slice_len = (size_t) shape[1] * shape[2];
  float* slice = malloc(slice_len * sizeof(float));
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = ph == NULL || slice == NULL ? -ENOMEM : fd < 0 ? -errno : 0;
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  h.shape = s;
  h.mode = CORE_MRC_MODE_FLOAT32;
  h.voxel_size[0] = h.voxel_size[1] = h.voxel_size[2] = voxel;
  uint8_t header[CORE_MRC_HEADER_LEN];
  if (err == 0) {
    core_phantom_init(ph, &s, seed, (float) noise);
    core_mrc_header_write(&h, header); /* placeholder until stats known */
    err = cli_write_all(fd, header, sizeof(header));
  }
  double sum = 0, sum2 = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (uint32_t z = 0; err == 0 && z < shape[0]; z++) {
    core_phantom_slice(ph, z, slice);
    for (size_t i = 0; i < slice_len; i++) {
      float v = slice[i];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      sum += v;
      sum2 += (double) v * v;
    }
    /* MRC data is little-endian, like every machine we build for. */
    err = cli_write_all(fd, slice, slice_len * sizeof(float));
  }
  if (err == 0) {
    double n = (double) core_shape_voxels(&s);
    double mean = sum / n;
    h.dmin = lo;
    h.dmax = hi;
    h.dmean = (float) mean;
    h.rms = (float) sqrt(fmax(sum2 / n - mean * mean, 0));
    core_mrc_header_write(&h, header);
    if (pwrite(fd, header, sizeof(header), 0) != (ssize_t) sizeof(header)) {
      err = -errno;
    }
  }
  if (fd >= 0 && close(fd) != 0 && err == 0) {
    err = -errno;
  }
  free(ph);
  free(slice);
  if (err != 0) {
    fprintf(stderr, "%s phantom: cannot write %s: %s\n", ctx->prog, out,
            strerror(-err));
    if (fd >= 0) {
      unlink(out);
    }
    return CLI_EXIT_IO;
  }
  if (ctx->json) {
    printf(
        "{\"path\":\"%s\",\"shape\":[%u,%u,%u],\"voxel_size\":%g,"
        "\"seed\":%llu}\n",
        out, shape[0], shape[1], shape[2], voxel, seed);
  } else if (!ctx->quiet) {
    printf("wrote %s: %ux%ux%u float32, voxel %g A, seed %llu\n", out, shape[0],
           shape[1], shape[2], voxel, seed);
  }
  return CLI_EXIT_OK;
}
