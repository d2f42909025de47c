/* jobs_keep.c: the registry's housekeeping (jobs.h, once a second): the
 * finished jobs' previews and chunk tables held within
 * --preview-cache-bytes (oldest evicted first), and retention
 * (--retention-max-jobs, --retention-max-age: the oldest finished jobs
 * deleted). Loop thread only. */
#include "server/chunks.h"
#include "server/jobs.h"


/* Finished jobs' last previews share one memory budget. A completed job's
 * final preview is rendered again when asked for; a cancelled or failed
 * job's last one is simply gone once evicted. */
static bool is_evictable(const srv_job_t* job) {
  return core_job_state_is_terminal(job->state) && !job->is_ending &&
         job->topic.sink_count == 0 && core_list_is_empty(&job->topic.waiters);
}


/* What evicting a finished job's previews and chunk table would free. */
static uint64_t evictable_bytes(const srv_job_t* job) {
  if (!is_evictable(job)) {
    return 0;
  }
  uint64_t n = job->topic.latest[CORE_ENC_BASE64] != NULL
                   ? srv_topic_preview_bytes(&job->topic)
                   : 0;
  if (job->chunks != NULL && !job->chunks->pass_in_flight) {
    n += srv_chunks_bytes(job->chunks);
  }
  return n;
}


static void trim_previews(srv_ctx_t* ctx) {
  uint64_t held = 0;
  for (srv_job_t* job = srv_jobs_next(ctx, NULL); job != NULL;
       job = srv_jobs_next(ctx, job)) {
    held += evictable_bytes(job);
  }
  /* Oldest first: the list is newest first, so walk it backwards. A chunk
   * table evicted is built again from the artifact (a new epoch) for the
   * next chunks subscriber. */
  for (core_list_t* it = ctx->jobs.prev;
       it != &ctx->jobs && held > ctx->cfg.preview_cache_bytes; it = it->prev) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    uint64_t n = evictable_bytes(job);
    if (n == 0) {
      continue;
    }
    held -= n;
    if (job->topic.latest[CORE_ENC_BASE64] != NULL) {
      srv_topic_drop_previews(&job->topic);
      ctx->metrics.previews_evicted++;
    }
    if (job->chunks != NULL && !job->chunks->pass_in_flight) {
      srv_chunks_free(job->chunks);
      job->chunks = NULL;
    }
  }
}


/* Deletes the oldest finished jobs beyond the retention count and those
 * finished longer ago than the retention age. O(jobs) per call. */
static void retire(srv_ctx_t* ctx) {
  const srv_config_t* c = &ctx->cfg;
  if (c->retention_max_jobs == 0 && c->retention_max_age_s <= 0) {
    return;
  }
  /* Deletes still being committed are as good as done. */
  unsigned finished = ctx->job_count - ctx->queued_count - ctx->running_count -
                      ctx->deletes_pending;
  int64_t now = srv_now_us();
  int64_t max_age_us = (int64_t) (c->retention_max_age_s * 1e6);
  core_list_t* it = ctx->jobs.prev; /* oldest first */
  while (it != &ctx->jobs) {
    srv_job_t* job = CORE_CONTAINER_OF(it, srv_job_t, link);
    it = it->prev; /* a delete completes later; the list is intact now */
    if (!core_job_state_is_terminal(job->state) || job->is_ending ||
        job->is_deleting) {
      continue;
    }
    bool too_many =
        c->retention_max_jobs > 0 && finished > c->retention_max_jobs;
    bool too_old = max_age_us > 0 && now - job->finished_us > max_age_us;
    if ((too_many || too_old) && srv_job_delete(job, NULL, NULL) == 0) {
      finished--;
      ctx->metrics.jobs_retired_total++;
    }
  }
}


void srv_jobs_housekeeping(srv_ctx_t* ctx) {
  trim_previews(ctx);
  retire(ctx);
}
