/* metrics.h: GET /metrics in Prometheus text format (version 0.0.4). */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <stddef.h>

#include "server/ctx.h"

/* Renders every metric into a malloc'd string (caller frees). Returns 0 or
 * -ENOMEM. */
int srv_metrics_render(srv_ctx_t* ctx, char** out, size_t* len);

#endif
