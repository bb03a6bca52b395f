/* metrics.h: the run's metrics, written twice: metrics.jsonl (one JSON object
 * per line) and TensorBoard event files that TensorBoard itself reads. */
#ifndef DT_METRICS_H
#define DT_METRICS_H

#include "dt.h"

typedef struct dt_metrics dt_metrics;

typedef struct dt_metric {
  const char *key;  /* e.g. "loss"; JSON key, and TensorBoard tag "<split>/<key>" */
  double value;     /* non-finite values are written as null in JSON */
  int is_int;       /* print as an integer in JSON */
} dt_metric;

/* Creates run_dir (and parents) if needed, opens run_dir/metrics.jsonl for
 * appending and, if tensorboard, a new event file
 * run_dir/events.out.tfevents.<unix time>.<host>.<pid>. -1 path errors. */
dt_metrics *dt_metrics_open(const char *run_dir, int tensorboard, dt_error *err);

/* One row: {"split":SPLIT,"step":STEP,<vals...>[,"ARRAY_KEY":[...]]}.
 * TensorBoard gets a scalar per val, tag "SPLIT/KEY", at STEP, and one per
 * array element, tag "SPLIT/ARRAY_KEY/<i>". array_key may be NULL. */
void dt_metrics_log(dt_metrics *m, const char *split, long step, const dt_metric *vals, int n,
                    const char *array_key, const double *array, int narray);

void dt_metrics_flush(dt_metrics *m);
void dt_metrics_close(dt_metrics *m);

/* Exposed for tests: CRC-32C (Castagnoli) as TFRecord framing uses it. */
uint32_t dt_crc32c(const void *data, size_t n);

#endif
