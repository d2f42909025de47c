/* classic_io.h: the files of a classic run, on the worker pool: the job's
 * volume opened and mapped read-only (its MRC header gives the data's
 * offset, mode and shape), the job's mask file (made by mask_run.c) mapped
 * shared and writable, the volume's statistics and the window plan. The
 * loop side is engine_classic.c; the work itself is src/core/seg_classic.h.
 *
 * Why a shared mapping of the mask and not pwrite: core_seg_window() writes
 * a window's core in place into the full-resolution mask and
 * core_seg_finish() relabels the whole mask in place, so the mask has to be
 * addressable as one array anyway; mapping the file makes that array the
 * page cache itself, which the previews' pread (mask_render.c) sees as soon
 * as a window is done, with no copy, no buffer per window, and no second
 * full-size allocation. The file is the server's own (state_dir/artifacts),
 * sized before the run and never truncated while mapped, so the mapping
 * cannot SIGBUS. The volume's mapping costs no memory of its own either
 * (clean pages of the page cache); a volume_path file truncated by someone
 * else while a job reads it would SIGBUS the server (docs/engines.md). */
#ifndef SRV_CLASSIC_IO_H
#define SRV_CLASSIC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/seg_classic.h"

typedef struct {
  /* In, set on the loop before srv_classic_io_open(). */
  int root_fd;          /* borrowed: the data root, when is_beneath */
  bool is_beneath;      /* path is relative to root_fd (volume_path) */
  char path[2200];      /* the volume: absolute, or relative to root_fd */
  char name[1100];      /* the volume as clients know it, for messages */
  char mask_path[1200]; /* the job's mask file, z*y*x bytes */
  core_shape_t shape;   /* the job's: the volume must have it */
  core_seg_params_t params;
  /* Out: what is open and mapped, and what it holds. */
  int vol_fd, mask_fd; /* -1 when closed */
  void* vol_map;       /* the whole volume file, read-only; NULL: none */
  size_t vol_len;
  uint8_t* mask; /* the whole mask file, shared writable; NULL: none */
  size_t mask_len;
  core_seg_input_t in; /* in.data points into vol_map */
  core_seg_stats_t stats;
  core_seg_plan_t plan;
  size_t scratch_bytes; /* per worker, for this plan */
  double open_s;        /* open + map + statistics, seconds */
  char why[400];        /* what failed, a sentence */
} srv_classic_io_t;

/* Sets the descriptors to -1 and the mappings to none. */
void srv_classic_io_init(srv_classic_io_t* io);

/* Worker: opens and maps the volume and the mask, checks the volume's
 * header against the job's shape, computes the statistics and the plan.
 * Returns 0, or a negative errno with `why` set (what is already open stays
 * open: srv_classic_io_close() releases it). */
int srv_classic_io_open(srv_classic_io_t* io);

/* Worker: unmaps and closes whatever is open; idempotent. */
void srv_classic_io_close(srv_classic_io_t* io);

/* Whether anything is open or mapped (loop: decides if a close is due). */
bool srv_classic_io_is_open(const srv_classic_io_t* io);

#endif
