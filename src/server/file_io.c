/* file_io.c: see file_io.h. */
#include "server/file_io.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

int srv_pread_full(int fd, void* buf, size_t len, uint64_t off, size_t* got) {
  uint8_t* p = buf;
  size_t done = 0;
  int rc = 0;
  while (done < len) {
    ssize_t n = pread(fd, p + done, len - done, (off_t) (off + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      rc = n < 0 ? -errno : SRV_PREAD_SHORT;
      break;
    }
    done += (size_t) n;
  }
  if (got != NULL) {
    *got = done;
  }
  return rc;
}
