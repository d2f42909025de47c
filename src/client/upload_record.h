/* upload_record.h: an upload's resume record, one small JSON file per
 * (absolute path, server) under the resume directory, naming the file by
 * size and mtime and remembering the upload's URLs and the file's sha256
 * (so a resume neither re-creates the upload nor re-hashes the file).
 * Written atomically (a temporary file, fsync, rename). Blocking file I/O:
 * the thread pool only (upload_work.c), and unit tests. No globals. */
#ifndef CLIENT_UPLOAD_RECORD_H
#define CLIENT_UPLOAD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UPLOAD_RECORD_MAX_PARTS 16
#define UPLOAD_URL_MAX 256

/* One part of a concatenation: bytes [start, start + length) of the file. */
typedef struct {
  char url[UPLOAD_URL_MAX]; /* its path on the server */
  uint64_t start;
  uint64_t length;
} upload_part_t;

typedef struct {
  /* The key: a record is for this file, as it was, on this server. */
  char path[4096];  /* absolute */
  char server[600]; /* http://host:port[/prefix] */
  uint64_t size;
  int64_t mtime_ns;
  /* What it remembers. */
  char holder[600]; /* the server the URLs below are on, when not `server`
                       (a list of servers: the upload moved); "" else */
  char sha256[65];  /* lowercase hex, "" until hashed */
  char upload_url[UPLOAD_URL_MAX]; /* the single upload, or the final of a
                                      concatenation; "" none yet */
  unsigned part_count;             /* 0: not a concatenation */
  upload_part_t parts[UPLOAD_RECORD_MAX_PARTS];
} upload_record_t;

/* The record as JSON text (malloc'd, NUL-terminated) into *out. Returns 0
 * or -ENOMEM. */
int upload_record_to_json(const upload_record_t* rec, char** out);

/* Parses a record. Returns 0, or -EINVAL for anything that is not one
 * (wrong version, a missing or mistyped field, parts that do not tile
 * [0, size)). */
int upload_record_from_json(const char* text, size_t len, upload_record_t* out);

/* Whether `a` and `b` describe the same file on the same server (path,
 * server, size, mtime). */
bool upload_record_same_key(const upload_record_t* a, const upload_record_t* b);

/* The record file of (path, server) in `dir`: dir/<sha256 hex>.json.
 * Returns 0 or -ENAMETOOLONG. */
int upload_record_file(const char* dir,
                       const char* path,
                       const char* server,
                       char* out,
                       size_t cap);

/* The default directory: $XDG_STATE_HOME/cryomamba/uploads, else
 * $HOME/.local/state/cryomamba/uploads. Returns 0, -ENOENT (neither
 * variable set) or -ENAMETOOLONG. `xdg` and `home` are the variables'
 * values (NULL when unset). */
int upload_record_default_dir(const char* xdg,
                              const char* home,
                              char* out,
                              size_t cap);

/* Reads `file`. Returns 0, -ENOENT (none), -EINVAL (not a record) or
 * another -errno. */
int upload_record_load(const char* file, upload_record_t* out);

/* Writes `rec` to `file` atomically, creating `dir` (and its parents)
 * with mode 0700 first. Returns 0 or -errno. */
int upload_record_save(const char* dir,
                       const char* file,
                       const upload_record_t* rec);

/* Removes `file`; a missing one is no error. Returns 0 or -errno. */
int upload_record_remove(const char* file);

#endif
