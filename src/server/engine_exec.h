/* engine_exec.h: exec engines, the operator's programs (--engine
 * NAME=COMMAND): one process per job, started through the exec shim
 * (engine_shim.c) in its own process group, fed the job's request as JSON
 * on stdin, read as JSON lines on stdout (engine_proto.h), its stderr kept
 * in the job's log. It writes the job's mask file (mask_run.h). Cancel:
 * SIGTERM to the group, SIGKILL after --engine-kill-grace. Device slots
 * (--devices): a running job holds one until its process has exited.
 * docs/engines.md is the protocol. Loop thread only. */
#ifndef SRV_ENGINE_EXEC_H
#define SRV_ENGINE_EXEC_H

#include <stdbool.h>

#include "server/engine_cfg.h"
#include "server/job.h"

/* The ops of every exec engine (srv_engine_t.data: its
 * srv_exec_engine_cfg_t). */
extern const srv_engine_ops_t srv_exec_engine;

/* Device slots: one exec job per device. */
struct srv_devices_s {
  unsigned count; /* 0: exec jobs take no slot */
  bool busy[SRV_DEVICES_MAX];
  const srv_engine_cfg_t* cfg; /* the names */
};
typedef struct srv_devices_s srv_devices_t;

/* Slots for cfg's devices, all free. */
void srv_devices_init(srv_devices_t* d, const srv_engine_cfg_t* cfg);

/* Start-up: fills cfg->shim when empty (cryomamba-engine-shim beside the
 * running binary, else in the installed layout's SRV_SHIM_DIR, relative to
 * it) and checks it can be executed, when any exec engine is declared.
 * Returns 0 or -1 with a sentence in `err`. */
int srv_exec_find_shim(srv_engine_cfg_t* cfg, char* err, size_t err_len);

#endif
