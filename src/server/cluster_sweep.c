/* cluster_sweep.c: a gateway's sweep of orphans on the shared directory
 * (cluster_files.h). What becomes an orphan: a volume file linked whose
 * Redis record then failed (Redis lost between the link and the script),
 * a worker's artifact temporary (<job>-mask.mrc.tmp) when it was killed
 * mid-write, an artifact whose purge lost its gateway between the script
 * and the unlink. Every --shared-sweep-interval-s, once Redis is
 * reachable (the first soon after start-up), one sweep:
 *   1. the worker pool lists volumes/ and artifacts/ and examines at most
 *      --shared-sweep-max-files entries, after those the previous sweeps
 *      examined (a cursor that wraps at the end, so every entry gets its
 *      turn): volume files older (ctime: a link sets it) than
 *      --shared-sweep-grace-s, every artifact and temporary;
 *   2. one script asks Redis which are orphans: a volume with no record
 *      (the grace covers a completion between its link and its record,
 *      which takes well under a second), an artifact or temporary whose job
 *      is gone, a temporary whose job ended (no worker writes it any more;
 *      a running job's temporary is its worker's, left alone);
 *   3. the pool unlinks those.
 * Nothing is removed when Redis does not answer. Any gateway may sweep:
 * two sweeping at once unlink the same orphans (ENOENT is fine). Loop
 * thread but for the two work functions. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "server/cluster.h"
#include "server/cluster_files.h"
#include "server/cluster_rest.h"

/* A file the sweep considers: kind 'v' volumes/<id>.mrc, 'a'
 * artifacts/<id>-mask.mrc, 't' artifacts/<id>-mask.mrc.tmp. */
typedef struct {
  char kind[2];
  char id[CORE_UUID_STR_LEN + 1];
} cand_t;

typedef struct {
  uv_work_t work;
  srv_ctx_t* ctx;
  char dir[1100]; /* the shared directory */
  unsigned max_files;
  uint64_t skip;  /* entries the previous sweeps examined: resumed after */
  uint64_t index; /* entries seen (volumes/ then artifacts/) */
  bool stopped;   /* max_files reached: the next sweep resumes at index */
  int64_t grace_s;
  cand_t* cands;
  size_t n, cap;
  unsigned examined;
  unsigned removed;
} sweep_t;

/* ARGV: kind, id pairs. The indexes (1-based pairs) of the orphans. */
static const char k_orphans_script[] =
    "local out = {}\n"
    "for i = 1, #ARGV, 2 do\n"
    "  local k, id = ARGV[i], ARGV[i + 1]\n"
    "  if k == 'v' then\n"
    "    if redis.call('EXISTS', 'cm:vol:' .. id) == 0 then\n"
    "      out[#out + 1] = (i + 1) / 2\n"
    "    end\n"
    "  else\n"
    "    local pub = redis.call('HGET', 'cm:job:' .. id, 'public')\n"
    "    if not pub then\n"
    "      out[#out + 1] = (i + 1) / 2\n"
    "    elseif k == 't' then\n"
    "      local st = cjson.decode(pub).state\n"
    "      if st == 'completed' or st == 'failed' or st == 'cancelled' then\n"
    "        out[#out + 1] = (i + 1) / 2\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";


static void sweep_free(sweep_t* s) {
  free(s->cands);
  free(s);
}


static int add(sweep_t* s, char kind, const char* id) {
  if (s->n == s->cap) {
    size_t cap = s->cap != 0 ? s->cap * 2 : 64;
    cand_t* more = realloc(s->cands, cap * sizeof(*more));
    if (more == NULL) {
      return -ENOMEM;
    }
    s->cands = more;
    s->cap = cap;
  }
  cand_t* c = &s->cands[s->n++];
  c->kind[0] = kind;
  c->kind[1] = '\0';
  memcpy(c->id, id, CORE_UUID_STR_LEN);
  c->id[CORE_UUID_STR_LEN] = '\0';
  return 0;
}


/* Worker: the candidates of one subdirectory. */
static void scan_dir(sweep_t* s, const char* sub, bool volumes) {
  char path[1200];
  snprintf(path, sizeof(path), "%s/%s", s->dir, sub);
  DIR* dir = opendir(path);
  if (dir == NULL) {
    return;
  }
  int64_t now = (int64_t) time(NULL);
  struct dirent* e;
  while (!s->stopped && (e = readdir(dir)) != NULL) {
    const char* name = e->d_name;
    if (name[0] == '.' || s->index++ < s->skip) {
      continue; /* examined by an earlier sweep: only read past */
    }
    if (s->examined == s->max_files) {
      s->stopped = true;
      s->index--; /* this one is the next sweep's first */
      break;
    }
    s->examined++;
    const char* rest = name + CORE_UUID_STR_LEN;
    if (strlen(name) <= CORE_UUID_STR_LEN ||
        !core_uuid_is_valid(name, CORE_UUID_STR_LEN)) {
      continue; /* not ours: left alone */
    }
    char kind = volumes && strcmp(rest, ".mrc") == 0             ? 'v'
                : !volumes && strcmp(rest, "-mask.mrc") == 0     ? 'a'
                : !volumes && strcmp(rest, "-mask.mrc.tmp") == 0 ? 't'
                                                                 : '\0';
    struct stat st;
    if (kind == '\0' ||
        fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        (kind == 'v' && (now - (int64_t) st.st_ctime < s->grace_s ||
                         now - (int64_t) st.st_mtime < s->grace_s))) {
      continue;
    }
    if (add(s, kind, name) != 0) {
      break;
    }
  }
  closedir(dir);
}


static void scan_work(uv_work_t* req) {
  sweep_t* s = req->data;
  scan_dir(s, "volumes", true);
  scan_dir(s, "artifacts", false);
}


/* Worker: unlinks the candidates left (the orphans). */
static void remove_work(uv_work_t* req) {
  sweep_t* s = req->data;
  for (size_t i = 0; i < s->n; i++) {
    const cand_t* c = &s->cands[i];
    char path[1300];
    snprintf(path, sizeof(path), "%s/%s/%s%s", s->dir,
             c->kind[0] == 'v' ? "volumes" : "artifacts", c->id,
             c->kind[0] == 'v'   ? ".mrc"
             : c->kind[0] == 'a' ? "-mask.mrc"
                                 : "-mask.mrc.tmp");
    if (unlink(path) == 0) {
      s->removed++;
    }
  }
}


/* The sweep ended (or could not go on): the next one in an interval. */
static void finish(sweep_t* s, int status) {
  srv_ctx_t* ctx = s->ctx;
  srv_cluster_t* c = ctx->cluster;
  if (c != NULL) {
    /* The next sweep goes on after the entries this one examined; once
     * both directories were read to their end it starts over. The order
     * of a directory changes as files come and go: an entry may be missed
     * by one round, never by every one. */
    c->sweep_cursor = s->stopped ? s->index : 0;
    c->sweep_busy = false;
    c->sweep_due_ms =
        uv_now(ctx->loop) + (uint64_t) ctx->cfg.sweep_interval_s * 1000;
    c->orphans_removed += s->removed;
  }
  if (status != 0) {
    srv_log(&ctx->log, SRV_LOG_WARN, "cluster.sweep_failed", "i:status",
            (int64_t) status, NULL);
  } else if (s->removed > 0) {
    srv_log(&ctx->log, SRV_LOG_INFO, "cluster.sweep", "i:examined",
            (int64_t) s->examined, "i:removed", (int64_t) s->removed, NULL);
  }
  sweep_free(s);
}


static void after_remove(uv_work_t* req, int status) {
  finish(req->data, status);
}


static void on_orphans(void* arg, redisReply* reply, int status) {
  sweep_t* s = arg;
  srv_cluster_t* c = s->ctx->cluster;
  if (status == 0 && reply->type != REDIS_REPLY_ARRAY) {
    status = -EIO;
  }
  if (status != 0 || c == NULL || c->is_stopping) {
    finish(s, status);
    return;
  }
  /* Keep only the orphans, in place (indexes ascend). */
  size_t kept = 0;
  for (size_t i = 0; i < reply->elements; i++) {
    const redisReply* e = reply->element[i];
    if (e->type == REDIS_REPLY_INTEGER && e->integer >= 1 &&
        (size_t) e->integer <= s->n) {
      s->cands[kept++] = s->cands[e->integer - 1];
    }
  }
  s->n = kept;
  if (kept == 0 ||
      uv_queue_work(s->ctx->loop, &s->work, remove_work, after_remove) != 0) {
    finish(s, 0);
  }
}


static void after_scan(uv_work_t* req, int status) {
  sweep_t* s = req->data;
  srv_cluster_t* c = s->ctx->cluster;
  if (status != 0 || s->n == 0 || c == NULL || c->is_stopping) {
    finish(s, status);
    return;
  }
  size_t argc = 3 + 2 * s->n;
  const char** argv = malloc(argc * sizeof(*argv));
  size_t* lens = malloc(argc * sizeof(*lens));
  int rc = -ENOMEM;
  if (argv != NULL && lens != NULL) {
    argv[0] = "EVAL";
    argv[1] = k_orphans_script;
    argv[2] = "0";
    for (size_t i = 0; i < s->n; i++) {
      argv[3 + 2 * i] = s->cands[i].kind;
      argv[4 + 2 * i] = s->cands[i].id;
    }
    for (size_t i = 0; i < argc; i++) {
      lens[i] = strlen(argv[i]);
    }
    rc = srv_redis_command(c->cmd, on_orphans, s, (int) argc, argv, lens);
  }
  free(argv);
  free(lens);
  if (rc != 0) {
    finish(s, rc);
  }
}


void srv_cluster_sweep_tick(srv_ctx_t* ctx) {
  srv_cluster_t* c = ctx->cluster;
  if (c == NULL || ctx->cfg.role != SRV_ROLE_GATEWAY ||
      ctx->cfg.shared_dir[0] == '\0' || c->is_stopping || c->sweep_busy ||
      ctx->is_stopping || !srv_redis_is_connected(c->cmd) ||
      uv_now(ctx->loop) < c->sweep_due_ms) {
    return;
  }
  sweep_t* s = calloc(1, sizeof(*s));
  if (s == NULL) {
    return; /* the next tick tries again */
  }
  s->ctx = ctx;
  s->work.data = s;
  s->max_files = ctx->cfg.sweep_max_files;
  s->grace_s = ctx->cfg.sweep_grace_s;
  s->skip = c->sweep_cursor;
  snprintf(s->dir, sizeof(s->dir), "%s", srv_config_files_dir(&ctx->cfg));
  if (uv_queue_work(ctx->loop, &s->work, scan_work, after_scan) != 0) {
    sweep_free(s);
    return;
  }
  c->sweep_busy = true;
}
