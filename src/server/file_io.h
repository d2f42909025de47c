/* file_io.h: whole reads at an offset, as the engines, the chunk tables and
 * the mask renderer need them (pread(2) may return fewer bytes than asked
 * or be interrupted). Blocking: worker pool threads. */
#ifndef SRV_FILE_IO_H
#define SRV_FILE_IO_H

#include <stddef.h>
#include <stdint.h>

/* srv_pread_full's answer when the file ends before `len` bytes. */
#define SRV_PREAD_SHORT 1

/* Reads exactly `len` bytes at `off` of `fd` into `buf`, retrying short
 * reads and EINTR. 0; SRV_PREAD_SHORT when the file ends first (`*got`,
 * unless NULL, is how many bytes were read); or -errno. */
int srv_pread_full(int fd, void* buf, size_t len, uint64_t off, size_t* got);

#endif
