/* main.c: `cryomamba`, the command-line client of a CryoMamba server.
 * Global options (--server, --token, --json) may come before or after the
 * command; each command parses the rest. Exit codes: cli.h, docs/cli.md. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "Usage: cryomamba [--server URL] [--token TOKEN] [--json] COMMAND "
    "[ARGS]\n"
    "\n"
    "Client of the CryoMamba segmentation server (protocol v1).\n"
    "\n"
    "Commands:\n"
    "  upload FILE.mrc [--parallel N] [--chunk-mib N] [--no-resume]\n"
    "                     upload a volume (resumable: Ctrl-C, then the same "
    "command)\n"
    "  submit [FILE.mrc | --shape Z,Y,X | --server-path P] [--watch] ...\n"
    "                     create a job (FILE: uploaded first, unless the "
    "server has it)\n"
    "  volumes [list | get ID | delete ID]\n"
    "                     the server's uploaded volumes\n"
    "  watch JOB          follow a job live until it ends (progress bar, "
    "previews)\n"
    "  status JOB         show one job\n"
    "  jobs               list jobs, newest first\n"
    "  cancel JOB         cancel a queued or running job\n"
    "  download JOB [-o FILE]\n"
    "                     save the final mask (mask.mrc) of a completed job\n"
    "  health             check that the server answers\n"
    "  phantom --shape Z,Y,X -o FILE.mrc\n"
    "                     write a synthetic tomogram (no server needed)\n"
    "\n"
    "Global options:\n"
    "  --server URL   server address, http[s]://host:port[/prefix]\n"
    "                 (default $CRYOMAMBA_SERVER, else "
    "http://127.0.0.1:8000);\n"
    "                 several servers of one cluster: URL,URL,... or the "
    "option\n"
    "                 repeated (up to 16): requests and watch fail over "
    "between\n"
    "                 them; uploads use the first\n"
    "  --token TOKEN  bearer token (default $CRYOMAMBA_TOKEN)\n"
    "  --cacert FILE  https: trust the CA certificates in FILE (PEM) instead "
    "of\n"
    "                 the system's (default $CRYOMAMBA_CACERT)\n"
    "  --insecure-skip-tls-verify\n"
    "                 https: accept any certificate for any name (testing "
    "only;\n"
    "                 warns on every run)\n"
    "  --json         machine-readable output on stdout (watch: one JSON "
    "object\n"
    "                 per line)\n"
    "  -q, --quiet    no progress output on stderr\n"
    "  -h, --help     this help; `cryomamba COMMAND --help` for a command\n"
    "  --version      print the version\n"
    "\n"
    "Exit status:\n"
    "  0              success (watch: the job completed)\n"
    "  1              the job failed\n"
    "  2              the job was cancelled\n"
    "  3              connection lost for good\n"
    "  4              the server refused the request\n"
    "  5              no such job (404)\n"
    "  6              unauthorized (401)\n"
    "  7              server unreachable\n"
    "  8              protocol error\n"
    "  9              local file error\n"
    "  10             the server is out of storage\n"
    "  11             TLS: certificate refused, handshake failed\n"
    "  64             bad command line\n"
    "  130            interrupted (Ctrl-C: an upload resumes with the same "
    "command)\n";

typedef struct {
  const char* name;
  int (*run)(cli_ctx_t* ctx, int argc, char** argv);
} command_t;

static const command_t commands[] = {
    {"submit", cli_cmd_submit}, {"watch", cli_cmd_watch},
    {"status", cli_cmd_status}, {"jobs", cli_cmd_jobs},
    {"cancel", cli_cmd_cancel}, {"download", cli_cmd_download},
    {"health", cli_cmd_health}, {"phantom", cli_cmd_phantom},
    {"upload", cli_cmd_upload}, {"volumes", cli_cmd_volumes},
};


/* Takes the value of a global option given as "--opt V" or "--opt=V". */
static const char* take_value(int argc, char** argv, int* i, const char* name) {
  size_t n = strlen(name);
  if (argv[*i][n] == '=') {
    return argv[*i] + n + 1;
  }
  if (*i + 1 < argc) {
    (*i)++;
    return argv[*i];
  }
  return NULL;
}


static bool is_opt(const char* arg, const char* name) {
  size_t n = strlen(name);
  return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}


int main(int argc, char** argv) {
  /* Repeated --server options, joined with commas (the library splits
   * them again). */
  char servers[8192];
  bool has_server_opt = false;
  cli_ctx_t ctx = {
      .server = getenv("CRYOMAMBA_SERVER"),
      .token = getenv("CRYOMAMBA_TOKEN"),
      .cacert = getenv("CRYOMAMBA_CACERT"),
      .prog = "cryomamba",
  };
  /* A server that closes while we write must not kill us: the write
   * fails with EPIPE and the answer (or the retry) decides. */
  signal(SIGPIPE, SIG_IGN);
  if (ctx.server == NULL || ctx.server[0] == '\0') {
    ctx.server = "http://127.0.0.1:8000";
  }
  if (ctx.cacert != NULL && ctx.cacert[0] == '\0') {
    ctx.cacert = NULL;
  }
  /* Pull the global options out; the rest goes to the command. */
  char** rest = calloc((size_t) argc + 1, sizeof(char*));
  if (rest == NULL) {
    return CLI_EXIT_IO;
  }
  int n = 0;
  bool want_help = false;
  bool after_dashdash = false;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (after_dashdash) {
      rest[n++] = argv[i];
    } else if (strcmp(a, "--") == 0) {
      after_dashdash = true;
      rest[n++] = argv[i];
    } else if (is_opt(a, "--cacert")) {
      ctx.cacert = take_value(argc, argv, &i, "--cacert");
      if (ctx.cacert == NULL || ctx.cacert[0] == '\0') {
        free(rest);
        return cli_usage_error(&ctx, NULL, "--cacert needs a file");
      }
    } else if (strcmp(a, "--insecure-skip-tls-verify") == 0) {
      ctx.insecure_tls = true;
    } else if (is_opt(a, "--server") || is_opt(a, "--token")) {
      bool is_server = is_opt(a, "--server");
      const char* v =
          take_value(argc, argv, &i, is_server ? "--server" : "--token");
      if (v == NULL) {
        free(rest);
        return cli_usage_error(&ctx, NULL, "%s needs a value",
                               is_server ? "--server" : "--token");
      }
      if (is_server) {
        size_t used = has_server_opt ? strlen(servers) : 0;
        int len = snprintf(servers + used, sizeof(servers) - used, "%s%s",
                           has_server_opt ? "," : "", v);
        if (len < 0 || (size_t) len >= sizeof(servers) - used) {
          free(rest);
          return cli_usage_error(&ctx, NULL, "--server: too long a list");
        }
        ctx.server = servers;
        has_server_opt = true;
      } else {
        ctx.token = v;
      }
    } else if (strcmp(a, "--json") == 0) {
      ctx.json = true;
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      ctx.quiet = true;
    } else if (strcmp(a, "--version") == 0 && n == 0) {
      printf("cryomamba %s (libcryomamba %s, protocol %d)\n", CM_VERSION,
             cm_version(), CM_PROTOCOL_VERSION);
      free(rest);
      return CLI_EXIT_OK;
    } else if ((strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) && n == 0) {
      want_help = true;
    } else {
      rest[n++] = argv[i];
    }
  }
  if (ctx.insecure_tls) {
    fprintf(stderr,
            "%s: WARNING: --insecure-skip-tls-verify: the server's TLS "
            "certificate and name are NOT checked; anyone on the network "
            "path can read and change this traffic, the token included\n",
            ctx.prog);
  }
  if (n == 0) {
    fputs(usage, want_help ? stdout : stderr);
    free(rest);
    return want_help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  if (strcmp(rest[0], "help") == 0) {
    fputs(usage, stdout);
    free(rest);
    return CLI_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(rest[0], commands[i].name) == 0) {
      optind = 1;
      opterr = 0;
      int rc = commands[i].run(&ctx, n, rest);
      free(rest);
      return rc;
    }
  }
  int rc = cli_usage_error(&ctx, NULL, "unknown command \"%s\"", rest[0]);
  free(rest);
  return rc;
}
