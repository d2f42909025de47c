/* cmd_rest.c: the CLI's one-shot commands over libcryomamba's blocking
 * REST helpers: health, status, jobs, cancel, download. submit:
 * cmd_submit.c; volumes: cmd_volumes.c. */
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
    cli_print_body(&r);
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
    cli_print_body(&r);
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
