/* cluster_files.c: the --shared-dir layout and its start-up checks. See
 * cluster_files.h. */
#include "server/cluster_files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/uuid.h"
#include "server/file_sync.h"

static int make_dir(const char* path) {
  if (mkdir(path, 0755) != 0) {
    return errno == EEXIST ? 0 : -errno;
  }
  return srv_fsync_parent(path); /* a new directory's name is durable */
}


/* Reads the gateway's node id, or makes one (written, synced, renamed):
 * it names its uploads' directory across restarts. */
static int node_id(const char* state_dir, char id[CORE_UUID_STR_LEN + 1]) {
  char path[1100], tmp[1110];
  snprintf(path, sizeof(path), "%s/node-id", state_dir);
  FILE* f = fopen(path, "re");
  if (f != NULL) {
    size_t n = fread(id, 1, CORE_UUID_STR_LEN, f);
    fclose(f);
    id[n] = '\0';
    return n == CORE_UUID_STR_LEN && core_uuid_is_valid(id, n) ? 0 : -EINVAL;
  }
  if (errno != ENOENT) {
    return -errno;
  }
  uint8_t random16[16];
  if (RAND_bytes(random16, sizeof(random16)) != 1) {
    return -ENOMEM;
  }
  core_uuid4_format(random16, id);
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return -errno;
  }
  int err = write(fd, id, CORE_UUID_STR_LEN) == CORE_UUID_STR_LEN ? 0 : -EIO;
  if (err == 0 && fsync(fd) != 0) {
    err = -errno;
  }
  close(fd);
  if (err == 0 && rename(tmp, path) != 0) {
    err = -errno;
  }
  if (err == 0) {
    err = srv_fsync_parent(path);
  }
  if (err != 0) {
    unlink(tmp);
  }
  return err;
}


/* Whether `dir` takes a new file (a read-only or full mount is found at
 * start, not at the first upload or artifact). 0 or -errno. */
static int probe_writable(const char* dir, const char* node) {
  char path[1300];
  snprintf(path, sizeof(path), "%.1200s/.probe-%s-%ld", dir, node,
           (long) getpid());
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return -errno;
  }
  int err = write(fd, "x", 1) == 1 ? 0 : -errno;
  if (err == 0 && fsync(fd) != 0) {
    err = -errno;
  }
  close(fd);
  unlink(path);
  return err;
}


int srv_cluster_files_prepare(srv_ctx_t* ctx, char* why, size_t why_len) {
  srv_config_t* cfg = &ctx->cfg;
  if (cfg->shared_dir[0] == '\0') {
    snprintf(ctx->uploads_dir, sizeof(ctx->uploads_dir), "%s/uploads",
             cfg->state_dir);
    return 0;
  }
  char real[PATH_MAX];
  if (realpath(cfg->shared_dir, real) == NULL) {
    snprintf(why, why_len,
             "--shared-dir %s: %s (it must exist: mount it first)",
             cfg->shared_dir, strerror(errno));
    return -1;
  }
  if (strlen(real) + 64 >= sizeof(cfg->shared_dir)) {
    snprintf(why, why_len, "--shared-dir %s: path too long", cfg->shared_dir);
    return -1;
  }
  memcpy(cfg->shared_dir, real, strlen(real) + 1);
  char node[CORE_UUID_STR_LEN + 1];
  int err = node_id(cfg->state_dir, node);
  if (err != 0) {
    snprintf(why, why_len, "%s/node-id: %s", cfg->state_dir, strerror(-err));
    return -1;
  }
  /* A worker reads volumes/ and writes artifacts/; a gateway writes
   * volumes/ and uploads/<node id>/ and removes from artifacts/. */
  bool worker = cfg->role == SRV_ROLE_WORKER;
  char dirs[4][1200];
  snprintf(dirs[0], sizeof(dirs[0]), "%s/volumes", real);
  snprintf(dirs[1], sizeof(dirs[1]), "%s/artifacts", real);
  snprintf(dirs[2], sizeof(dirs[2]), "%s/uploads", real);
  snprintf(dirs[3], sizeof(dirs[3]), "%s/uploads/%s", real, node);
  for (int i = 0; i < (worker ? 2 : 4); i++) {
    bool probe = i != 2 && !(worker && i == 0);
    err = make_dir(dirs[i]);
    if (err == 0 && probe) {
      err = probe_writable(dirs[i], node);
    }
    if (err != 0) {
      snprintf(why, why_len,
               "--shared-dir: cannot %s %s: %s (every gateway and worker "
               "needs it read-write)",
               probe ? "create a file in" : "create", dirs[i], strerror(-err));
      return -1;
    }
  }
  if (worker) {
    snprintf(ctx->uploads_dir, sizeof(ctx->uploads_dir), "%s/uploads",
             cfg->state_dir); /* a worker takes no upload */
    return 0;
  }
  memcpy(ctx->uploads_dir, dirs[3], strlen(dirs[3]) + 1);
  return 0;
}


int srv_cluster_job_file(const srv_ctx_t* ctx,
                         const char* id,
                         const char* suffix,
                         char* out,
                         size_t cap) {
  int n = snprintf(out, cap, "%s/artifacts/%.40s%s",
                   srv_config_files_dir(&ctx->cfg), id, suffix);
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}
