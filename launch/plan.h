/* plan.h: `dtrain --print-memory`, the per-rank memory of a layout. */
#ifndef DT_PLAN_H
#define DT_PLAN_H

#include "../runtime/config.h"

/* Prints, on rank 0, the bytes each tensor-parallel part and pipeline stage
 * of cfg's layout would keep (data-parallel rank 0 of each), without a
 * device; with limit_gib > 0 also the micro-batch sizes whose busiest rank
 * stays within it. Bad layouts exit 2. Returns 0. */
int dt_print_memory(const dt_config *cfg, double limit_gib);

#endif
