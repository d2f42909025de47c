/* cmd_watch_opts.c: `cryomamba watch`'s command line: its help, its
 * options (--encoding and --max-message-bytes are parsed here for submit
 * --watch too), then cli_watch_job() (cmd_watch.c) follows the job.
 * Main thread. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char watch_help[] =
    "Usage: cryomamba watch JOB [options]\n"
    "Follows a job live until it ends: state, progress, ETA, previews "
    "received,\nbytes and the latency of the last message. Reconnects on its "
    "own when the\nconnection drops (each attempt is reported); a job that "
    "was running when\nthe server restarted ends as failed (\"interrupted\").\n"
    "  --save-previews DIR  write each preview as DIR/preview-SEQ.mrc (chunks: "
    "the\n"
    "                       whole mask of its level after each complete "
    "delta)\n"
    "  --max-retries N      reconnect attempts in a row before giving up "
    "(default\n"
    "                       10; 0: never give up)\n"
    "  --no-progress        plain lines even on a terminal\n"
    "  --slice              on a terminal, draw each preview's middle XY "
    "slice\n"
    "  --encoding E         how previews travel: base64 (JSON, default), raw "
    "or\n"
    "                       zstd (binary; zstd is smallest on the wire), or "
    "chunks\n"
    "                       (only the 32^3 chunks that changed, zstd each)\n"
    "  --scale S            chunks: the level received, 1, 2, 4, 8 or 16 "
    "(default:\n"
    "                       the largest <= the job's preview scale)\n"
    "  --max-message-bytes N  largest preview message taken (K, M, G "
    "suffixes;\n"
    "                       default 1G); larger previews are skipped with a\n"
    "                       warning and the job is still followed to its end\n"
    "Ctrl-C stops watching (the job goes on on the server) with exit 130.\n"
    "Exit: 0 completed, 1 failed, 2 cancelled, 3 connection lost for good,\n"
    "5 no such job, 6 unauthorized, 7 server unreachable, 130 interrupted.\n";


int cli_parse_encoding(cli_ctx_t* ctx,
                       const char* cmd,
                       const char* value,
                       cm_encoding_t* out) {
  static const char* names[] = {"base64", "raw", "zstd", "chunks"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(value, names[i]) == 0) {
      *out = (cm_encoding_t) i;
      return 0;
    }
  }
  return cli_usage_error(ctx, cmd,
                         "--encoding wants base64, raw, zstd or chunks");
}


int cli_parse_max_message(cli_ctx_t* ctx,
                          const char* cmd,
                          const char* value,
                          uint64_t* out) {
  char* end;
  errno = 0;
  unsigned long long v = strtoull(value, &end, 10);
  unsigned shift = 0;
  if (end != value && *end != '\0' && end[1] == '\0') {
    const char* units = "KMG";
    const char* u = strchr(units, toupper((unsigned char) *end));
    shift = u != NULL ? 10 * (unsigned) (u - units + 1) : 0;
    end += u != NULL ? 1 : 0;
  }
  /* Up to 2^40 bytes: more than any preview of a 2^36-voxel job. */
  if (end == value || *end != '\0' || errno != 0 || value[0] == '-' ||
      v > ((unsigned long long) 1 << 40) >> shift || (v << shift) < 65536) {
    return cli_usage_error(ctx, cmd,
                           "--max-message-bytes wants a size from 64K to "
                           "1024G (N, or N with K, M or G), not \"%s\"",
                           value);
  }
  *out = (uint64_t) v << shift;
  return 0;
}


int cli_cmd_watch(cli_ctx_t* ctx, int argc, char** argv) {
  enum {
    OPT_SAVE = 256,
    OPT_RETRIES,
    OPT_NOPROG,
    OPT_ENCODING,
    OPT_SLICE,
    OPT_MAX_MESSAGE,
    OPT_SCALE
  };
  static const struct option longs[] = {
      {"help", no_argument, NULL, 'h'},
      {"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE},
      {"save-previews", required_argument, NULL, OPT_SAVE},
      {"max-retries", required_argument, NULL, OPT_RETRIES},
      {"no-progress", no_argument, NULL, OPT_NOPROG},
      {"encoding", required_argument, NULL, OPT_ENCODING},
      {"slice", no_argument, NULL, OPT_SLICE},
      {"scale", required_argument, NULL, OPT_SCALE},
      {NULL, 0, NULL, 0}};
  cli_watch_opts_t opts = {.max_retries = 10};
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    char* end;
    unsigned long v;
    switch (c) {
    case 'h':
      fputs(watch_help, stdout);
      return CLI_EXIT_OK;
    case OPT_SAVE:
      opts.save_dir = optarg;
      break;
    case OPT_RETRIES:
      v = strtoul(optarg, &end, 10);
      if (end == optarg || *end != '\0' || v > 1000000) {
        return cli_usage_error(ctx, argv[0],
                               "--max-retries wants an "
                               "integer >= 0, not \"%s\"",
                               optarg);
      }
      opts.max_retries = (unsigned) v;
      break;
    case OPT_ENCODING: {
      int erc = cli_parse_encoding(ctx, argv[0], optarg, &opts.encoding);
      if (erc != 0) {
        return erc;
      }
      break;
    }
    case OPT_SLICE:
      opts.show_slice = true;
      break;
    case OPT_SCALE:
      v = strtoul(optarg, &end, 10);
      if (end == optarg || *end != '\0' || v == 0 || v > 16 ||
          (v & (v - 1)) != 0) {
        return cli_usage_error(
            ctx, argv[0], "--scale wants 1, 2, 4, 8 or 16, not \"%s\"", optarg);
      }
      opts.scale = (uint32_t) v;
      break;
    case OPT_MAX_MESSAGE: {
      int mrc =
          cli_parse_max_message(ctx, argv[0], optarg, &opts.max_message_bytes);
      if (mrc != 0) {
        return mrc;
      }
      break;
    }
    case OPT_NOPROG:
      opts.no_progress = true;
      break;
    default:
      return cli_usage_error(ctx, argv[0],
                             "unknown option or missing "
                             "value: \"%s\"",
                             argv[optind - 1]);
    }
  }
  if (opts.scale != 0 && opts.encoding != CM_ENCODING_CHUNKS) {
    return cli_usage_error(ctx, argv[0],
                           "--scale is for --encoding chunks (the job's "
                           "preview scale is set when it is submitted)");
  }
  int rc;
  const char* id = cli_job_arg(ctx, argc, argv, &rc);
  if (id == NULL) {
    return rc;
  }
  return cli_watch_job(ctx, id, &opts);
}
