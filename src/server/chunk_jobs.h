/* chunk_jobs.h: a job's chunk table as its subscribers need it: made on
 * demand, brought to the job's mask (a running job's engine includes a pass
 * in its next preview; an ended job's table is built from its artifact on
 * the pool, or is empty), and the readers passes use (a file: the mask
 * engines' mask, an artifact; or memory: the simulator's full mask). Loop
 * thread only, except the readers. */
#ifndef SRV_CHUNK_JOBS_H
#define SRV_CHUNK_JOBS_H

#include <stdint.h>

#include "server/chunks.h"
#include "server/job.h"

/* The job's table, made if it has none, and asked to catch up with the
 * job's mask (see above). Returns NULL on ENOMEM. */
srv_chunks_t* srv_chunks_for_job(srv_job_t* job);

/* Reads a full-resolution box from a raw uint8 volume in a file (the mask
 * engines' mask at offset 0, an MRC artifact at its data offset) with
 * pread, one call per plane when the box spans whole rows. */
typedef struct {
  int fd;
  uint64_t offset;
  core_shape_t vol;
} srv_chunk_file_t;
int srv_chunk_read_file(void* ctx, const core_box_t* b, uint8_t* out);

/* Reads a full-resolution box from the whole mask in memory. */
typedef struct {
  const uint8_t* mask;
  core_shape_t vol;
} srv_chunk_mem_t;
int srv_chunk_read_mem(void* ctx, const core_box_t* b, uint8_t* out);

#endif
