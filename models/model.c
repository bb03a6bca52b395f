/* model.c: the model registry and the parameter-table helpers shared by
 * every family. */
#include "model.h"

#include <string.h>

dt_model *dt_model_create(const dt_config *cfg, dt_backend_t be, int max_batch, dt_error *err) {
  const dt_model_part whole = {1, 0, 1, 0, 1};
  return dt_model_create_part(cfg, be, max_batch, &whole, err);
}

dt_model *dt_model_create_part(const dt_config *cfg, dt_backend_t be, int max_batch,
                               const dt_model_part *part, dt_error *err) {
  if (!strcmp(cfg->model_name, "gpt")) return dt_gpt_create(cfg, be, max_batch, part, err);
  if (part->tp_n > 1) {
    dt_error_set(err, "[parallel] tp = %d: tensor parallelism is built for gpt only, not for "
                 "[model] name = %s (use parallel.dp)", part->tp_n, cfg->model_name);
    return NULL;
  }
  if (part->pp_n > 1) {
    dt_error_set(err, "[parallel] pp = %d: pipeline parallelism is built for gpt only, not for "
                 "[model] name = %s (use parallel.dp)", part->pp_n, cfg->model_name);
    return NULL;
  }
  if (!strcmp(cfg->model_name, "lenet5")) return dt_lenet5_create(cfg, be, max_batch, err);
  if (!strcmp(cfg->model_name, "transformer"))
    return dt_transformer_create(cfg, be, max_batch, err);
  dt_error_set(err, "[model] name: unknown model '%s'", cfg->model_name);
  return NULL;
}

void dt_model_destroy(dt_model *m) {
  if (m) m->destroy(m);
}

size_t dt_classifier_chunk(const dt_config *cfg, size_t rows) {
  const long c = cfg->train_classifier_chunk;
  return c > 0 && (size_t)c < rows ? (size_t)c : rows;
}

int64_t dt_logits_ld(const dt_config *cfg, int64_t v) {
  const int64_t m = strcmp(cfg->train_precision, "bf16") ? 1 : cfg->model_pad_vocab_to;
  return (v + m - 1) / m * m;
}

int dt_classifier_chunk_check(const dt_config *cfg, size_t rows, dt_error *err) {
  const double chunk = dt_classifier_chunk(cfg, rows);
  if (chunk * (double)dt_logits_ld(cfg, cfg->model_vocab_size) > 2147483647.0)
    return dt_error_set(err, "[train] classifier_chunk = %ld: %.0f rows of logits x vocab_size "
                        "%ld is 2^31 elements or more; use a smaller chunk",
                        cfg->train_classifier_chunk, chunk, cfg->model_vocab_size);
  return 0;
}

int dt_model_find_param(const dt_model *m, const char *name) {
  for (int i = 0; i < m->nparams; i++)
    if (!strcmp(m->params[i].name, name)) return i;
  return -1;
}

void dt_param_add(dt_param *table, int *count, size_t *total, const char *name, int ndims,
                  const int64_t *shape, int decay, int64_t fan_in, int64_t fan_out) {
  dt_param *p = &table[(*count)++];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndims = ndims;
  size_t n = 1;
  for (int d = 0; d < ndims; d++) {
    p->shape[d] = shape[d];
    n *= (size_t)shape[d];
  }
  p->tp_dim = -1;
  p->tp_parts = 1;
  p->tp_n = 1;
  p->offset = *total;
  p->count = n;
  p->decay = decay;
  p->fan_in = fan_in;
  p->fan_out = fan_out;
  /* keep every tensor 16-element aligned so slices stay vector friendly */
  *total += (n + 15) & ~(size_t)15;
}
