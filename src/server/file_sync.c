/* file_sync.c: directory syncs for new names. See file_sync.h. No state;
 * any thread. */
#include "server/file_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>


int srv_fsync_parent(const char* path) {
  char dir[1200];
  const char* slash = strrchr(path, '/');
  size_t n = slash == NULL ? 0 : (size_t) (slash - path);
  if (n >= sizeof(dir)) {
    return -ENAMETOOLONG;
  }
  if (slash == NULL || n == 0) {
    snprintf(dir, sizeof(dir), "%s", slash == NULL ? "." : "/");
  } else {
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return -errno;
  }
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}


int srv_open_or_create(const char* path) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) {
    return fd >= 0 ? fd : -errno;
  }
  fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return errno == EEXIST ? srv_open_or_create(path) : -errno;
  }
  int rc = srv_fsync_parent(path);
  if (rc != 0) {
    close(fd);
    unlink(path);
    return rc;
  }
  return fd;
}
