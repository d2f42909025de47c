/* util.c: the CLI's shared helpers: client creation, error sentences and
 * exit codes, shapes, MRC output, byte counts. See cli.h. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include <uv.h>

#include "core/mrc.h"


int cli_client_new(const cli_ctx_t* ctx,
                   const cm_client_options_t* base,
                   cm_client_t** out) {
  cm_client_options_t opts;
  if (base != NULL) {
    opts = *base;
  } else {
    cm_client_options_init(&opts);
  }
  opts.server_url = ctx->server;
  opts.token = ctx->token;
  opts.tls_ca_file = ctx->cacert;
  opts.tls_insecure_skip_verify = ctx->insecure_tls;
  int err = cm_client_new(&opts, out);
  if (err != 0) {
    char what[600];
    if (err == CM_ECAFILE) {
      snprintf(what, sizeof(what), "using the CA file \"%s\"", ctx->cacert);
      return cli_fail(ctx, err, NULL, what);
    }
    snprintf(what, sizeof(what), "using server URL \"%s\"", ctx->server);
    int code = cli_fail(ctx, err, NULL, what);
    return err == CM_EBADURL || err == CM_EBADARG ? CLI_EXIT_USAGE : code;
  }
  return 0;
}


bool cli_is_network_error(int err) {
  switch (err) {
  case UV_ECONNREFUSED:
  case UV_ETIMEDOUT:
  case UV_EHOSTUNREACH:
  case UV_ENETUNREACH:
  case UV_EAI_NONAME:
  case UV_EAI_AGAIN:
  case UV_ECONNRESET:
  case UV_EOF:
  case UV_EPIPE:
  case CM_ETLS_TIMEOUT:
  case CM_ETLS_CLOSED:
    return true;
  }
  return false;
}


static int exit_code_for(int err) {
  if (cli_is_network_error(err)) {
    return CLI_EXIT_UNREACHABLE;
  }
  if (cm_is_tls_verify_error(err)) {
    return CLI_EXIT_TLS;
  }
  switch (err) {
  case 0:
    return CLI_EXIT_OK;
  case CM_ENOTFOUND:
    return CLI_EXIT_NOT_FOUND;
  case CM_EUNAUTHORIZED:
    return CLI_EXIT_UNAUTHORIZED;
  case CM_EHTTP:
  case CM_ECONFLICT:
    return CLI_EXIT_REFUSED;
  case CM_EPROTO:
    return CLI_EXIT_PROTOCOL;
  case CM_ETLS:
    return CLI_EXIT_TLS;
  case CM_ECAFILE:
    return CLI_EXIT_IO;
  case CM_EBADURL:
  case CM_EBADID:
  case CM_EBADARG:
    return CLI_EXIT_USAGE;
  case CM_EGAVEUP:
  case CM_ECLOSED:
    return CLI_EXIT_LOST;
  case CM_ENOTREG:
    return CLI_EXIT_IO;
  }
  if (err == UV_EACCES || err == UV_ENOENT || err == UV_ENOSPC ||
      err == UV_EROFS || err == UV_EISDIR || err == UV_ENOTDIR ||
      err == UV_EEXIST) {
    return CLI_EXIT_IO;
  }
  return CLI_EXIT_UNREACHABLE;
}


int cli_fail(const cli_ctx_t* ctx,
             int err,
             const cm_reply_t* reply,
             const char* what) {
  return cli_fail_then(ctx, err, reply, what, NULL);
}


/* What to do about a refused certificate (OpenSSL's X509_V_ERR_* codes:
 * client.h). */
static const char* tls_hint(int err) {
  switch (CM_ETLS_VERIFY_BASE - err) {
  case 62: /* hostname mismatch */
  case 64: /* IP address mismatch */
    return "address the server in --server by a host name or IP address "
           "its certificate lists (subjectAltName)";
  case 9:  /* not yet valid */
  case 10: /* expired */
    return "the server's certificate must be renewed (or this machine's "
           "clock is wrong)";
  default:
    return "give the CA that signed it with --cacert FILE (or "
           "CRYOMAMBA_CACERT)";
  }
}


int cli_fail_then(const cli_ctx_t* ctx,
                  int err,
                  const cm_reply_t* reply,
                  const char* what,
                  const char* then) {
  int code = exit_code_for(err);
  char sentence[2048];
  bool has_env = reply != NULL && reply->http_status >= 400;
  if (has_env && reply->http_status == 507) {
    code = CLI_EXIT_NO_ROOM; /* may pass once the server has room */
  }
  if (has_env && err == CM_EUNAUTHORIZED) {
    snprintf(sentence, sizeof(sentence),
             "%s: the server refused the request (401 %s: %s); give a valid "
             "token with --token or CRYOMAMBA_TOKEN",
             what, reply->error_code, reply->error_message);
  } else if (has_env) {
    snprintf(sentence, sizeof(sentence), "%s: %s (HTTP %d %s)%s%s", what,
             reply->error_message, reply->http_status, reply->error_code,
             reply->error_hint[0] != '\0' ? "; hint: " : "", reply->error_hint);
  } else if (cm_is_tls_verify_error(err)) {
    snprintf(sentence, sizeof(sentence),
             "%s: the TLS certificate of %s was refused: certificate verify "
             "failed: %s; %s",
             what, ctx->server, cm_strerror(err), tls_hint(err));
  } else if (err == CM_ETLS) {
    snprintf(sentence, sizeof(sentence), "%s: TLS with %s failed: %s", what,
             ctx->server, cm_strerror(err));
  } else if (code == CLI_EXIT_UNREACHABLE) {
    snprintf(sentence, sizeof(sentence),
             "%s: cannot reach the server at %s (%s); is cryomambad running? "
             "Set the address with --server or CRYOMAMBA_SERVER",
             what, ctx->server, cm_strerror(err));
  } else {
    snprintf(sentence, sizeof(sentence), "%s: %s", what, cm_strerror(err));
  }
  if (then != NULL) {
    size_t n = strlen(sentence);
    snprintf(sentence + n, sizeof(sentence) - n, "; %s", then);
  }
  fprintf(stderr, "%s: %s\n", ctx->prog, sentence);
  if (ctx->json) {
    const char* ecode = has_env ? reply->error_code : cm_strerror(err);
    if (!has_env && cm_is_tls_verify_error(err)) {
      ecode = "tls_verify_failed";
    } else if (!has_env && err == CM_ETLS) {
      ecode = "tls_handshake_failed";
    }
    json_t* e =
        json_pack("{s:{s:s,s:s,s:i,s:i}}", "error", "code", ecode, "message",
                  sentence, "http_status",
                  reply != NULL ? reply->http_status : 0, "exit_code", code);
    char* text = e != NULL ? json_dumps(e, JSON_COMPACT) : NULL;
    if (text != NULL) {
      printf("%s\n", text);
    }
    free(text);
    json_decref(e);
  }
  return code;
}


int cli_usage_error(const cli_ctx_t* ctx,
                    const char* cmd,
                    const char* fmt,
                    ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const char* sp = cmd != NULL ? " " : "";
  const char* c = cmd != NULL ? cmd : "";
  fprintf(stderr, "%s%s%s: %s\nTry '%s%s%s --help'.\n", ctx->prog, sp, c, msg,
          ctx->prog, sp, c);
  return CLI_EXIT_USAGE;
}


bool cli_parse_shape(const char* s, uint32_t out[3]) {
  unsigned long v[3];
  int n = 0;
  const char* p = s;
  while (n < 3) {
    char* end;
    if (*p < '0' || *p > '9') {
      return false;
    }
    v[n++] = strtoul(p, &end, 10);
    p = end;
    if (*p == '\0') {
      break;
    }
    if (*p != ',' && *p != 'x') {
      return false;
    }
    p++;
  }
  if (*p != '\0' || (n != 1 && n != 3)) {
    return false;
  }
  for (int i = 0; i < 3; i++) {
    unsigned long d = n == 1 ? v[0] : v[i];
    if (d < 1 || d > 4096) {
      return false;
    }
    out[i] = (uint32_t) d;
  }
  return true;
}


int cli_write_all(int fd, const void* data, size_t len) {
  const uint8_t* p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    p += n;
    len -= (size_t) n;
  }
  return 0;
}


int cli_write_mask_mrc(const char* path,
                       const uint32_t shape[3],
                       const double voxel_size[3],
                       const uint8_t* voxels) {
  core_mrc_header_t h;
  memset(&h, 0, sizeof(h));
  uint64_t n = 1;
  for (int i = 0; i < 3; i++) {
    h.shape.d[i] = shape[i];
    h.voxel_size[i] = voxel_size[i] > 0 ? voxel_size[i] : 1.0;
    n *= shape[i];
  }
  h.mode = CORE_MRC_MODE_INT8;
  uint8_t lo = 255, hi = 0;
  double sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    lo = voxels[i] < lo ? voxels[i] : lo;
    hi = voxels[i] > hi ? voxels[i] : hi;
    sum += voxels[i];
  }
  h.dmin = lo;
  h.dmax = hi;
  h.dmean = n > 0 ? (float) (sum / (double) n) : 0;
  h.rms = -1; /* not computed, as MRC2014 allows */
  uint8_t header[CORE_MRC_HEADER_LEN];
  core_mrc_header_write(&h, header);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return -errno;
  }
  int err = cli_write_all(fd, header, sizeof(header));
  if (err == 0) {
    err = cli_write_all(fd, voxels, (size_t) n);
  }
  if (close(fd) != 0 && err == 0) {
    err = -errno;
  }
  return err;
}


const char* cli_human_bytes(uint64_t n, char* buf, size_t len) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double) n;
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    u++;
  }
  snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}


void cli_print_job(const cm_job_t* j) {
  printf("job        %s\n", j->job_id);
  printf("state      %s\n", cm_job_state_name(j->state));
  printf("progress   %.1f%%\n", j->progress * 100);
  printf("volume     %u x %u x %u (Z,Y,X), voxel %.3g x %.3g x %.3g A\n",
         j->shape[0], j->shape[1], j->shape[2], j->voxel_size[0],
         j->voxel_size[1], j->voxel_size[2]);
  if (j->volume_id[0] != '\0') {
    printf("volume id  %s\n", j->volume_id);
  }
  printf("preview    %u x %u x %u at scale %u, %.3g Hz, %llu sent\n",
         j->preview_shape[0], j->preview_shape[1], j->preview_shape[2],
         j->preview_scale, j->preview_hz,
         (unsigned long long) j->previews_sent);
  printf("params     duration %.3g s, seed %lld, pattern %s\n", j->duration_s,
         (long long) j->seed, j->pattern);
  printf("created    %s\n", j->created_at);
  printf("updated    %s\n", j->updated_at);
  if (j->artifact_bytes > 0) {
    char b[32];
    printf("artifact   mask.mrc (%s)\n",
           cli_human_bytes(j->artifact_bytes, b, sizeof(b)));
  }
  if (j->error_code[0] != '\0') {
    /* The whole message; an engine's stderr brings newlines: its lines
     * go on under the value column. */
    printf("error      %s: ", j->error_code);
    for (const char* p = j->error_message; *p != '\0'; p++) {
      if (*p == '\n') {
        fputs("\n           ", stdout);
      } else {
        putchar(*p);
      }
    }
    putchar('\n');
  }
}


int cli_read_mrc_header(const cli_ctx_t* ctx,
                        const char* cmd,
                        const char* path,
                        uint32_t shape[3],
                        double voxel_size[3]) {
  /* What it is first: opening a FIFO would wait for a writer. */
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "%s %s: cannot open %s: %s\n", ctx->prog, cmd, path,
            strerror(errno));
    return CLI_EXIT_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    const char* what =
        S_ISDIR(st.st_mode) ? "a directory, not an MRC file"
        : S_ISFIFO(st.st_mode)
            ? "a named pipe (FIFO), not a regular file: an upload reads its "
              "file twice (hash, then chunks), so write it to a file first"
            : "a device or a socket, not a regular file";
    fprintf(stderr, "%s %s: %s is %s\n", ctx->prog, cmd, path, what);
    return CLI_EXIT_IO;
  }
  if (st.st_size == 0) {
    fprintf(stderr, "%s %s: %s is empty (0 bytes), not an MRC file\n",
            ctx->prog, cmd, path);
    return CLI_EXIT_IO;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  uint8_t buf[CORE_MRC_HEADER_LEN];
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "%s %s: cannot open %s: %s\n", ctx->prog, cmd, path,
            fd < 0 ? strerror(errno) : "it changed under us");
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
    fprintf(stderr, "%s %s: %s is not a valid MRC2014 file: %s\n", ctx->prog,
            cmd, path, n != (ssize_t) sizeof(buf) ? "too short" : err);
    return CLI_EXIT_IO;
  }
  for (int i = 0; i < 3; i++) {
    shape[i] = h.shape.d[i];
    voxel_size[i] = h.voxel_size[i] > 0 ? h.voxel_size[i] : 1.0;
  }
  return 0;
}


void cli_print_body(const cm_reply_t* r) {
  if (r->body != NULL) {
    fputs(r->body, stdout);
    if (r->body_len == 0 || r->body[r->body_len - 1] != '\n') {
      putchar('\n');
    }
  }
}
