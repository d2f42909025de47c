/* classic_io.h: the files of a classic run, on the worker pool: the job's
 * volume opened (its MRC header gives the data's offset, mode and shape)
 * and read with pread, box by box, as the segmenter asks
 * (core_seg_input_t.read); the job's mask file (made by mask_run.c)
 * allocated and mapped shared and writable; the volume's statistics and
 * the window plan. The loop side is engine_classic.c; the work itself is
 * src/core/seg_classic.h.
 *
 * Why pread for the volume, not a mapping: a volume_path file is the
 * operator's (under --data-root), and a mapped file that someone truncates
 * kills the reader with SIGBUS; a pread past the new end is only short,
 * which fails the job volume_changed. A window reads its box (window +
 * halo) one plane at a time into its scratch, so the cost is a copy from
 * the page cache (docs/performance.md) and no memory beyond one plane.
 *
 * Why a shared mapping of the mask and not pwrite: core_seg_window() writes
 * a window's core in place into the full-resolution mask and
 * core_seg_finish() relabels the whole mask in place, so the mask has to be
 * addressable as one array anyway; mapping the file makes that array the
 * page cache itself, which the previews' pread (mask_render.c) sees as soon
 * as a window is done, with no copy, no buffer per window, and no second
 * full-size allocation. The file is the server's own (state_dir/artifacts),
 * sized before the run and never truncated while mapped, and its blocks are
 * allocated before it is mapped (a write into a hole of a full disk would
 * SIGBUS), so the mapping cannot fault. */
#ifndef SRV_CLASSIC_IO_H
#define SRV_CLASSIC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "core/seg_classic.h"

/* What the volume's stat said when it was opened: a change since means
 * someone wrote or truncated it while the job read it. Not its ctime: an
 * unlink (DELETE of an uploaded volume) or a chmod changes that, and
 * neither changes what the descriptor reads. */
typedef struct {
  int64_t size;
  struct timespec mtime;
} srv_classic_stamp_t;

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
  int vol_fd, mask_fd;  /* -1 when closed */
  uint64_t data_offset; /* of the voxels in the volume file */
  size_t itemsize;      /* bytes per voxel */
  srv_classic_stamp_t stamp;
  uint8_t* mask; /* the whole mask file, shared writable; NULL: none */
  size_t mask_len;
  core_seg_input_t in; /* reads through vol_fd (in.user is this) */
  core_seg_stats_t stats;
  core_seg_plan_t plan;
  size_t scratch_bytes; /* per worker, for this plan */
  double open_s;        /* open + statistics, seconds */
  char why[400];        /* what failed, a sentence */
} srv_classic_io_t;

/* The errors of a classic run's files besides -ENOMEM, -EINVAL and a read's
 * -errno: the volume is shorter than its header says (truncated while the
 * job read it), or it is not what it was (changed since the job was
 * created, or while it ran). Both fail the job volume_changed. */
#define SRV_CLASSIC_ESHORT (-ENODATA)
#define SRV_CLASSIC_ECHANGED (-ESTALE)

/* Sets the descriptors to -1 and the mappings to none. */
void srv_classic_io_init(srv_classic_io_t* io);

/* Worker: opens the volume and checks its header against the job's shape,
 * allocates and maps the mask, computes the statistics and the plan.
 * Returns 0, or a negative errno with `why` set (what is already open stays
 * open: srv_classic_io_close() releases it). */
int srv_classic_io_open(srv_classic_io_t* io);

/* Worker, once no window reads any more: SRV_CLASSIC_ECHANGED when the
 * volume's size or mtime are not what they were at the open, else 0. */
int srv_classic_io_check_unchanged(const srv_classic_io_t* io);

/* How a run's error fails its job. */
typedef struct {
  const char* code; /* volume_changed, insufficient_memory,
                       insufficient_storage, engine_failed or internal */
  bool retryable;
  const char* hint;
} srv_classic_failure_t;

/* The failure for `err`, a negative errno from the open, a window, the
 * statistics, the final pass or the check. Any thread. */
srv_classic_failure_t srv_classic_io_failure(int err);

/* A sentence for `err` from reading the volume after it was opened (a
 * window, the final pass, the check), naming the volume as clients know
 * it. Any thread. */
void srv_classic_io_describe(const srv_classic_io_t* io,
                             int err,
                             char* msg,
                             size_t msg_len);

/* Worker: unmaps and closes whatever is open; idempotent. */
void srv_classic_io_close(srv_classic_io_t* io);

/* Whether anything is open or mapped (loop: decides if a close is due). */
bool srv_classic_io_is_open(const srv_classic_io_t* io);

#endif
