/* job_json.h: a job as JSON: the REST job object, the stored record (the
 * job object plus internal fields) and back, and the messages built from a
 * job's fields alone -- the terminal message (one builder, so a late joiner
 * after a restart gets the very bytes the first subscribers got) and the
 * WebSocket `connected` data. Loop thread only. */
#ifndef SRV_JOB_JSON_H
#define SRV_JOB_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "net/frame.h"
#include "server/job.h"

/* The job object of the REST API: what is durable (while the terminal
 * record commits, the state before it). New reference, NULL on ENOMEM. */
json_t* srv_job_to_json(const srv_job_t* job);

/* The persisted record: the job object plus "internal" (new reference). */
json_t* srv_job_to_record(const srv_job_t* job);

/* Fills `job` (zeroed, id unset) from a stored record. Returns 0, or -1
 * with a sentence in `why` (unknown state, bad shape or params...). */
int srv_job_from_record(srv_job_t* job,
                        const json_t* rec,
                        char* why,
                        size_t why_len);

/* The terminal message of a finished job (completed, cancelled or error)
 * with seq job->seq and time job->finished_us, as a sealed text frame
 * (refs 1, the caller's). NULL on ENOMEM or when the job has not ended. */
net_frame_t* srv_job_terminal_frame(const srv_job_t* job);

/* The data of the WebSocket `connected` message (new reference). */
json_t* srv_job_connected_data(const srv_job_t* job);

#endif
