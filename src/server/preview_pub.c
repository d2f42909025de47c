/* preview_pub.c: sealing and publishing encoded previews. See
 * preview_pub.h. Loop thread only. */
#include "server/preview_pub.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "core/msg.h"
#include "server/chunks.h"


int srv_preview_seal(const srv_job_t* job,
                     net_frame_t* frames[CORE_ENC_COUNT],
                     const core_shape_t* preview_shape,
                     uint32_t scale,
                     uint64_t seq,
                     int64_t ts_us) {
  size_t n = (size_t) core_shape_voxels(preview_shape);
  core_preview_layout_t layout;
  if (core_msg_preview_layout(job->id, seq, ts_us, preview_shape, scale, n,
                              &layout) != 0) {
    return -EINVAL;
  }
  net_frame_t* text = frames[CORE_ENC_BASE64];
  assert(layout.b64_len + layout.suffix_len == text->len);
  memcpy(net_frame_prepend(text, layout.prefix_len), layout.prefix,
         layout.prefix_len);
  net_frame_seal_ws(text, NET_WS_OP_TEXT);
  for (int e = CORE_ENC_RAW; e < CORE_ENC_COUNT; e++) {
    net_frame_t* f = frames[e];
    if (f == NULL) {
      continue;
    }
    uint8_t head[CORE_PREVIEW_BIN_HEAD_MAX];
    int head_len =
        core_preview_bin_head(job->id, seq, ts_us, preview_shape, scale,
                              (core_encoding_t) e, f->len, head, sizeof(head));
    if (head_len < 0) {
      return -EINVAL;
    }
    memcpy(net_frame_prepend(f, (size_t) head_len), head, (size_t) head_len);
    net_frame_seal_ws(f, NET_WS_OP_BINARY);
  }
  return 0;
}


int srv_preview_publish(srv_job_t* job,
                        net_frame_t* frames[CORE_ENC_COUNT],
                        const core_shape_t* preview_shape,
                        uint32_t scale,
                        srv_chunk_pass_t** pass) {
  srv_ctx_t* ctx = job->ctx;
  int64_t now_us = srv_now_us();
  uint64_t seq = ++job->seq;
  if (srv_preview_seal(job, frames, preview_shape, scale, seq, now_us) != 0) {
    return -EINVAL;
  }
  job->previews_sent++;
  job->final_preview_seq = seq; /* the last one published, if it is final */
  job->final_preview_us = now_us;
  ctx->metrics.previews_published++;
  ctx->metrics.preview_bytes_published += frames[CORE_ENC_BASE64]->len;
  if (pass != NULL && *pass != NULL) {
    srv_chunks_pass_end(job->chunks, *pass, (uint32_t) seq);
    *pass = NULL;
  }
  srv_topic_set_preview(&job->topic, frames, false);
  return 0;
}
