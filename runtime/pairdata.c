/* pairdata.c: translation pair shards and token-count batching. */
#include "pairdata.h"

#include <stdlib.h>
#include <string.h>

#include "h5.h"

static int read_side(hid_t f, const char *path, const char *tok_name, const char *off_name,
                     int64_t *n, uint16_t **tok, int64_t **off, dt_error *err) {
  int nd;
  int64_t dims[DT_H5_MAXDIMS], odims[DT_H5_MAXDIMS];
  if (dt_h5_dims(f, tok_name, &nd, dims, err)) return -1;
  if (nd != 1) return dt_error_set(err, "%s: %s must be 1-D", path, tok_name);
  if (dt_h5_dims(f, off_name, &nd, odims, err)) return -1;
  if (nd != 1 || odims[0] < 1)
    return dt_error_set(err, "%s: %s must be 1-D with at least one entry", path, off_name);
  if (*n >= 0 && odims[0] - 1 != *n)
    return dt_error_set(err, "%s: %s has %lld pairs but the other side %lld", path, off_name,
                        (long long)(odims[0] - 1), (long long)*n);
  *n = odims[0] - 1;
  *tok = dt_malloc((size_t)(dims[0] > 0 ? dims[0] : 1) * sizeof(uint16_t));
  *off = dt_malloc((size_t)odims[0] * sizeof(int64_t));
  if (dims[0] > 0 && dt_h5_read(f, tok_name, H5T_NATIVE_UINT16, 1, dims, *tok, err)) return -1;
  if (dt_h5_read(f, off_name, H5T_NATIVE_INT64, 1, odims, *off, err)) return -1;
  const int64_t *o = *off;
  if (o[0] != 0) return dt_error_set(err, "%s: %s[0] = %lld, not 0", path, off_name, (long long)o[0]);
  for (int64_t i = 0; i < *n; i++)
    if (o[i + 1] <= o[i])
      return dt_error_set(err, "%s: pair %lld is empty or %s decreases there (%lld -> %lld)",
                          path, (long long)i, off_name, (long long)o[i], (long long)o[i + 1]);
  if (o[*n] != dims[0])
    return dt_error_set(err, "%s: %s ends at %lld but %s holds %lld tokens", path, off_name,
                        (long long)o[*n], tok_name, (long long)dims[0]);
  return 0;
}

int dt_pair_set_load(dt_pair_set *s, const char *path, int64_t model_vocab, dt_error *err) {
  memset(s, 0, sizeof *s);
  hid_t f = dt_h5_open(path, err);
  if (f < 0) return -1;
  int rc = -1;
  int64_t n = -1, a[4];
  const char *names[4] = {"vocab_size", "pad_id", "bos_id", "eos_id"};
  for (int i = 0; i < 4; i++)
    if (dt_h5_attr_read_i64(f, "/", names[i], 1, &a[i], err)) goto out;
  s->vocab = a[0], s->pad = a[1], s->bos = a[2], s->eos = a[3];
  if (s->vocab < 4 || s->vocab > 65536) {
    dt_error_set(err, "%s: vocab_size = %lld is out of range [4, 65536]", path, (long long)s->vocab);
    goto out;
  }
  for (int i = 1; i < 4; i++)
    if (a[i] < 0 || a[i] >= s->vocab) {
      dt_error_set(err, "%s: %s = %lld is not below vocab_size = %lld", path, names[i],
                   (long long)a[i], (long long)s->vocab);
      goto out;
    }
  if (a[1] == a[2] || a[1] == a[3] || a[2] == a[3]) {
    dt_error_set(err, "%s: pad_id = %lld, bos_id = %lld and eos_id = %lld must differ", path,
                 (long long)a[1], (long long)a[2], (long long)a[3]);
    goto out;
  }
  if (model_vocab > 0 && model_vocab != s->vocab) {
    dt_error_set(err, "%s: the shard's vocabulary has %lld ids but [model] vocab_size = %lld "
                 "(set model.vocab_size=%lld, or prepare the data with --vocab %lld)",
                 path, (long long)s->vocab, (long long)model_vocab, (long long)s->vocab,
                 (long long)model_vocab);
    goto out;
  }
  if (read_side(f, path, "src_tokens", "src_offsets", &n, &s->src, &s->src_off, err) ||
      read_side(f, path, "tgt_tokens", "tgt_offsets", &n, &s->tgt, &s->tgt_off, err))
    goto out;
  s->n = n;
  const uint16_t *sides[2] = {s->src, s->tgt};
  const int64_t ntok[2] = {s->src_off[n], s->tgt_off[n]};
  for (int k = 0; k < 2; k++)
    for (int64_t i = 0; i < ntok[k]; i++)
      if (sides[k][i] >= s->vocab) {
        dt_error_set(err, "%s: %s[%lld] = %u is not below vocab_size = %lld", path,
                     k ? "tgt_tokens" : "src_tokens", (long long)i, sides[k][i],
                     (long long)s->vocab);
        goto out;
      }
  rc = 0;
out:
  dt_h5_close(f);
  if (rc) dt_pair_set_free(s);
  return rc;
}

void dt_pair_set_free(dt_pair_set *s) {
  free(s->src), free(s->tgt), free(s->src_off), free(s->tgt_off);
  memset(s, 0, sizeof *s);
}

static const dt_pair_set *g_sort_set; /* qsort has no context argument in C11 */

static int by_length(const void *pa, const void *pb) {
  int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
  const dt_pair_set *s = g_sort_set;
  /* a batch costs n * its longest side, so the longer side sorts first */
  int64_t la = DT_MAX(dt_pair_src_len(s, a), dt_pair_tgt_len(s, a));
  int64_t lb = DT_MAX(dt_pair_src_len(s, b), dt_pair_tgt_len(s, b));
  if (la != lb) return la < lb ? -1 : 1;
  int64_t ta = dt_pair_tgt_len(s, a), tb = dt_pair_tgt_len(s, b);
  if (ta != tb) return ta < tb ? -1 : 1;
  int64_t sa = dt_pair_src_len(s, a), sb = dt_pair_src_len(s, b);
  if (sa != sb) return sa < sb ? -1 : 1;
  return a < b ? -1 : a > b;
}

int dt_pair_batches_make(const dt_pair_set *s, int64_t max_tokens, int64_t max_sentences,
                         int multiple, int64_t max_len, dt_pair_batches *out, dt_error *err) {
  memset(out, 0, sizeof *out);
  if (multiple < 1 || max_sentences < multiple)
    return dt_error_set(err, "batching: %lld sentences per batch at most, but batches must "
                        "hold a multiple of %d", (long long)max_sentences, multiple);
  out->order = dt_malloc((size_t)(s->n > 0 ? s->n : 1) * sizeof(int32_t));
  int64_t m = 0;
  for (int64_t i = 0; i < s->n; i++) {
    if (dt_pair_src_len(s, i) > max_len || dt_pair_tgt_len(s, i) > max_len) {
      out->skipped++;
      continue;
    }
    out->order[m++] = (int32_t)i;
  }
  g_sort_set = s;
  qsort(out->order, (size_t)m, sizeof(int32_t), by_length);
  out->start = dt_malloc((size_t)(m + 2) * sizeof(int64_t));
  out->ntgt = dt_malloc((size_t)(m + 1) * sizeof(int64_t));
  /* kept pairs are compacted to the front of order as batches form */
  int64_t nb = 0, w = 0, i = 0;
  while (i < m) {
    int64_t n = 0, longest = 0;
    while (i + n < m && n < max_sentences) {
      int32_t p = out->order[i + n];
      int64_t l = DT_MAX(dt_pair_src_len(s, p), dt_pair_tgt_len(s, p));
      int64_t lg = DT_MAX(longest, l);
      if ((n + 1) * lg > max_tokens) break;
      longest = lg;
      n++;
    }
    int64_t keep = n - n % multiple;
    if (keep == 0) { /* too long for max_tokens alone, or the short tail */
      int64_t drop = n > 0 ? n : 1;
      out->skipped += drop;
      i += drop;
      continue;
    }
    out->start[nb] = w;
    int64_t tokens = 0;
    for (int64_t j = 0; j < keep; j++) {
      int32_t p = out->order[i + j];
      tokens += dt_pair_tgt_len(s, p);
      out->order[w++] = p;
    }
    out->ntgt[nb++] = tokens;
    i += keep;
  }
  out->start[nb] = w;
  out->nbatches = nb;
  return 0;
}

void dt_pair_batches_free(dt_pair_batches *b) {
  free(b->start), free(b->order), free(b->ntgt);
  memset(b, 0, sizeof *b);
}

int64_t dt_pair_fill(const dt_pair_set *s, const int32_t *idx, int n, int32_t *src,
                     int32_t *src_len, int32_t *tok, int32_t *y, int32_t *tgt_len, int *ts,
                     int *t) {
  int64_t S = 1, T = 1, real = 0;
  for (int i = 0; i < n; i++) {
    S = DT_MAX(S, dt_pair_src_len(s, idx[i]));
    T = DT_MAX(T, dt_pair_tgt_len(s, idx[i]));
  }
  for (int i = 0; i < n; i++) {
    const uint16_t *a = s->src + s->src_off[idx[i]];
    const uint16_t *b = s->tgt + s->tgt_off[idx[i]];
    int64_t ls = dt_pair_src_len(s, idx[i]) - 1, lt = dt_pair_tgt_len(s, idx[i]) - 1;
    int32_t *sr = src + (int64_t)i * S, *tr = tok + (int64_t)i * T, *yr = y + (int64_t)i * T;
    for (int64_t j = 0; j < S; j++) sr[j] = j < ls ? a[j] : j == ls ? (int32_t)s->eos : (int32_t)s->pad;
    for (int64_t j = 0; j < T; j++) {
      tr[j] = j == 0 ? (int32_t)s->bos : j <= lt ? b[j - 1] : (int32_t)s->pad;
      yr[j] = j < lt ? b[j] : j == lt ? (int32_t)s->eos : -1;
    }
    src_len[i] = (int32_t)(ls + 1);
    tgt_len[i] = (int32_t)(lt + 1);
    real += lt + 1;
  }
  *ts = (int)S;
  *t = (int)T;
  return real;
}
