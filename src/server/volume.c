/* volume.c: volume_path resolution and MRC header reading. See volume.h. */
#include "server/volume.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mrc.h"


int srv_volume_resolve(srv_ctx_t* ctx,
                       const char* rel,
                       core_shape_t* shape,
                       double voxel_size[3],
                       char* why,
                       size_t why_len) {
  const char* root = ctx->cfg.data_root;
  if (root[0] == '\0') {
    snprintf(why, why_len,
             "this server has no data root; start it with --data-root to use "
             "volume_path");
    return -1;
  }
  char joined[PATH_MAX * 2];
  snprintf(joined, sizeof(joined), "%s/%s", root, rel);
  char real[PATH_MAX];
  if (realpath(joined, real) == NULL) {
    snprintf(why, why_len,
             "volume_path '%s' does not exist under the data root", rel);
    return -1;
  }
  size_t root_len = strlen(root);
  if (strncmp(real, root, root_len) != 0 ||
      (real[root_len] != '/' && real[root_len] != '\0')) {
    snprintf(why, why_len, "volume_path '%s' leads outside the data root", rel);
    return -1;
  }
  int fd = open(real, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) {
      close(fd);
    }
    snprintf(why, why_len, "volume_path '%s' is not a readable file", rel);
    return -1;
  }
  uint8_t header[CORE_MRC_HEADER_LEN];
  ssize_t n = pread(fd, header, sizeof(header), 0);
  close(fd);
  if (n != (ssize_t) sizeof(header)) {
    snprintf(why, why_len,
             "volume_path '%s' is not an MRC file: shorter than a header", rel);
    return -1;
  }
  core_mrc_header_t h;
  char err[200];
  if (core_mrc_header_parse(header, sizeof(header), (uint64_t) st.st_size, &h,
                            err, sizeof(err)) != 0) {
    snprintf(why, why_len, "volume_path '%s' is not a valid MRC file: %s", rel,
             err);
    return -1;
  }
  *shape = h.shape;
  memcpy(voxel_size, h.voxel_size, 3 * sizeof(double));
  return 0;
}
