/* engine_cfg.h: the operator's engine settings, part of srv_config_t
 * (config.c parses the flags and environment; the values are checked
 * here): which built-ins are enabled, the exec engines (--engine
 * NAME=COMMAND, repeatable, or a JSON --engines-file), device slots and the
 * bounds every exec engine run is held to. Start-up only. */
#ifndef SRV_ENGINE_CFG_H
#define SRV_ENGINE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the installed exec shim is: relative to cryomambad's directory, or
 * absolute (src/server/meson.build sets it from sbindir and libexecdir). */
#ifndef SRV_SHIM_DIR
#define SRV_SHIM_DIR "../libexec/cryomamba"
#endif

#define SRV_EXEC_ENGINES_MAX 16
#define SRV_DEVICES_MAX 64
#define SRV_DEVICE_NAME_MAX 15

typedef struct {
  char name[32];
  char* command;      /* malloc'd; run as /bin/sh -c COMMAND */
  double wall_time_s; /* 0: the default (srv_engine_cfg_t.wall_time_s) */
  bool needs_volume;  /* refuses shape-only jobs */
  char description[256];
  char* params_json; /* malloc'd: what info says of its params, or NULL */
} srv_exec_engine_cfg_t;

typedef struct {
  char builtin[128]; /* enabled built-ins, comma-separated ("all": every) */
  srv_exec_engine_cfg_t exec[SRV_EXEC_ENGINES_MAX];
  unsigned exec_count;
  char devices[SRV_DEVICES_MAX][SRV_DEVICE_NAME_MAX + 1];
  unsigned device_count;    /* 0: exec jobs take no device slot */
  double kill_grace_s;      /* SIGTERM, then SIGKILL after this long */
  double wall_time_s;       /* a run longer than this fails; 0: no limit */
  size_t max_line_bytes;    /* one stdout line of an engine */
  unsigned max_lines_per_s; /* stdout lines per second (burst: as many) */
  uint64_t log_bytes;       /* an engine's stderr kept in the job's log */
  char shim[1024];          /* the exec shim; "": found at start-up */
  unsigned classic_workers; /* classic windows in flight server-wide; 0:
                               one per CPU (main resolves it) */
} srv_engine_cfg_t;

/* The defaults: every built-in, no exec engine, no devices, grace 10 s, no
 * wall time, lines of 16 KiB, 1000 lines/s, 1 MiB of log. */
void srv_engine_cfg_default(srv_engine_cfg_t* c);

/* Adds (or, for a name already declared, replaces) an exec engine from
 * "NAME=COMMAND". Returns 0 or -1 with a sentence in `err`. */
int srv_engine_cfg_add(srv_engine_cfg_t* c,
                       const char* spec,
                       char* err,
                       size_t err_len);

/* Reads a JSON engines file: {"engines":[{"name","command","wall_time_s",
 * "needs_volume","description","params"}...]}. Returns 0 or -1 with a
 * sentence in `err`. */
int srv_engine_cfg_load_file(srv_engine_cfg_t* c,
                             const char* path,
                             char* err,
                             size_t err_len);

/* --devices: "N" (devices 0..N-1) or a comma-separated list of names
 * ("0,2,3"). Returns 0 or -1. */
int srv_engine_cfg_set_devices(srv_engine_cfg_t* c, const char* spec);

#endif
