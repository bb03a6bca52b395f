/* param.c: tensor-parallel parts of a parameter. A split tensor's tp_dim is
 * seen as tp_parts equal blocks, and part r of tp_n keeps slice
 * [floor(block*r/tp_n), floor(block*(r+1)/tp_n)) of each block: Megatron's
 * column-parallel layers (tp_dim 0: output features), row-parallel ones
 * (tp_dim 1: input features) and the vocabulary-parallel embedding (tp_dim 0
 * of wte, whose 50257 rows no tp divides: the parts differ by a row at
 * most), with the fused q,k,v weight as three blocks so that a rank keeps
 * q, k and v of the same heads. */
#include "param.h"

#include <string.h>

size_t dt_param_full_count(const dt_param *p) {
  size_t n = 1;
  for (int d = 0; d < p->ndims; d++) n *= (size_t)p->shape[d];
  return n;
}

/* the full tensor as (outer, tp_dim, inner), tp_dim as parts blocks */
typedef struct { size_t outer, dim, inner, parts, block; } split_geom;

static split_geom geom(const dt_param *p) {
  split_geom g = {1, 1, 1, 1, 1};
  for (int d = 0; d < p->ndims; d++) {
    if (d < p->tp_dim) g.outer *= (size_t)p->shape[d];
    else if (d > p->tp_dim) g.inner *= (size_t)p->shape[d];
  }
  g.dim = (size_t)p->shape[p->tp_dim];
  g.parts = (size_t)(p->tp_parts > 0 ? p->tp_parts : 1);
  g.block = g.dim / g.parts;
  return g;
}

/* where part r's slice of a block starts */
static size_t part_lo(const split_geom *g, int tp_n, int r) {
  return g->block * (size_t)r / (size_t)tp_n;
}

int64_t dt_param_part_dim(const dt_param *p, int tp_n, int tp_r) {
  if (p->tp_dim < 0 || tp_n <= 1) return p->tp_dim < 0 ? 0 : p->shape[p->tp_dim];
  const split_geom g = geom(p);
  return (int64_t)(g.parts * (part_lo(&g, tp_n, tp_r + 1) - part_lo(&g, tp_n, tp_r)));
}

size_t dt_param_part_count(const dt_param *p, int tp_n, int tp_r) {
  if (p->tp_dim < 0 || tp_n <= 1) return dt_param_full_count(p);
  const split_geom g = geom(p);
  return g.outer * (size_t)dt_param_part_dim(p, tp_n, tp_r) * g.inner;
}

size_t dt_param_full_index(const dt_param *p, int tp_n, int tp_r, size_t local) {
  if (p->tp_dim < 0 || tp_n <= 1) return local;
  const split_geom g = geom(p);
  const size_t lo = part_lo(&g, tp_n, tp_r), s = part_lo(&g, tp_n, tp_r + 1) - lo;
  const size_t ldim = g.parts * s;
  const size_t in = local % g.inner, j = local / g.inner % ldim, o = local / g.inner / ldim;
  const size_t jf = j / s * g.block + lo + j % s;
  return (o * g.dim + jf) * g.inner + in;
}

int dt_param_part_of(const dt_param *p, int tp_n, size_t full, size_t *local) {
  if (p->tp_dim < 0 || tp_n <= 1) {
    *local = full;
    return 0;
  }
  const split_geom g = geom(p);
  const size_t in = full % g.inner, jf = full / g.inner % g.dim, o = full / g.inner / g.dim;
  const size_t part = jf / g.block, w = jf % g.block;
  int r = (int)(w * (size_t)tp_n / g.block);
  while (r + 1 < tp_n && part_lo(&g, tp_n, r + 1) <= w) r++;
  while (r > 0 && part_lo(&g, tp_n, r) > w) r--;
  const size_t lo = part_lo(&g, tp_n, r), s = part_lo(&g, tp_n, r + 1) - lo;
  *local = (o * g.parts * s + part * s + (w - lo)) * g.inner + in;
  return r;
}

void dt_param_extract(const dt_param *p, const float *full, float *part) {
  if (!dt_param_is_split(p)) {
    memcpy(part, full, p->count * sizeof(float));
    return;
  }
  /* runs of (slice rows) x inner elements are contiguous on both sides */
  const split_geom g = geom(p);
  const size_t run = (part_lo(&g, p->tp_n, p->tp_r + 1) - part_lo(&g, p->tp_n, p->tp_r)) * g.inner;
  for (size_t i = 0; run && i < p->count; i += run)
    memcpy(part + i, full + dt_param_full_index(p, p->tp_n, p->tp_r, i), run * sizeof(float));
}

size_t dt_param_table_split(dt_param *table, int n, int tp_n, int tp_r) {
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    dt_param *p = &table[i];
    p->tp_n = tp_n, p->tp_r = tp_r;
    if (p->tp_parts < 1) p->tp_parts = 1;
    p->count = dt_param_is_split(p) ? dt_param_part_count(p, tp_n, tp_r) : dt_param_full_count(p);
    p->offset = total;
    total += (p->count + 15) & ~(size_t)15;
  }
  return total;
}

size_t dt_param_table_whole(const dt_param *table, int n, dt_param *out) {
  memcpy(out, table, (size_t)n * sizeof *out);
  return dt_param_table_split(out, n, 1, 0);
}
