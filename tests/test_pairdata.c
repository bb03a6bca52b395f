/* test_pairdata.c: translation pair shards (runtime/pairdata.c): loading and
 * its checks on broken shards, token-count batching (every usable pair in
 * exactly one batch, budgets and multiples kept, padding small), and the
 * padded micro-batch layout the Transformer reads.
 * Usage: test_pairdata TMPDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/h5.h"
#include "../runtime/pairdata.h"
#include "../runtime/rng.h"
#include "check.h"

enum { V = 50, PAD = 0, BOS = 1, EOS = 2 };

typedef struct shard {
  int64_t n;
  uint16_t src[4096], tgt[4096];
  int64_t so[512], to[512];
  int64_t vocab, pad, bos, eos;
  int64_t tgt_extra; /* write this many more target tokens than the offsets cover */
} shard;

static void write_shard(const char *path, const shard *s) {
  dt_error err;
  hid_t f = dt_h5_create(path, &err);
  int64_t ns = s->so[s->n], nt = s->to[s->n] + s->tgt_extra, no = s->n + 1;
  dt_h5_write(f, "src_tokens", H5T_NATIVE_UINT16, 1, &ns, s->src, 0, &err);
  dt_h5_write(f, "tgt_tokens", H5T_NATIVE_UINT16, 1, &nt, s->tgt, 0, &err);
  dt_h5_write(f, "src_offsets", H5T_NATIVE_INT64, 1, &no, s->so, 0, &err);
  dt_h5_write(f, "tgt_offsets", H5T_NATIVE_INT64, 1, &no, s->to, 0, &err);
  dt_h5_attr_write_i64(f, "/", "vocab_size", 1, &s->vocab, &err);
  dt_h5_attr_write_i64(f, "/", "pad_id", 1, &s->pad, &err);
  dt_h5_attr_write_i64(f, "/", "bos_id", 1, &s->bos, &err);
  dt_h5_attr_write_i64(f, "/", "eos_id", 1, &s->eos, &err);
  dt_h5_close(f);
}

/* n pairs with source lengths 1..20 and target lengths 1..25, ids 3..V-1 */
static void make_shard(shard *s, int64_t n, uint64_t seed) {
  memset(s, 0, sizeof *s);
  dt_rng r;
  dt_rng_seed(&r, seed, 7);
  s->n = n, s->vocab = V, s->pad = PAD, s->bos = BOS, s->eos = EOS;
  for (int64_t i = 0; i < n; i++) {
    int64_t ls = 1 + (int64_t)(dt_rng_uniform(&r) * 20), lt = 1 + (int64_t)(dt_rng_uniform(&r) * 25);
    s->so[i + 1] = s->so[i] + ls;
    s->to[i + 1] = s->to[i] + lt;
    for (int64_t j = s->so[i]; j < s->so[i + 1]; j++) s->src[j] = 3 + (uint16_t)(dt_rng_uniform(&r) * (V - 3));
    for (int64_t j = s->to[i]; j < s->to[i + 1]; j++) s->tgt[j] = 3 + (uint16_t)(dt_rng_uniform(&r) * (V - 3));
  }
}

static void expect_error(const char *dir, const char *what, const shard *s, int64_t model_vocab,
                         const char *needle) {
  char path[1024];
  snprintf(path, sizeof path, "%s/bad.h5", dir);
  write_shard(path, s);
  dt_pair_set set;
  dt_error err = {0};
  int rc = dt_pair_set_load(&set, path, model_vocab, &err);
  CHECK(rc != 0 && strstr(err.msg, needle) && strstr(err.msg, "bad.h5"), "bad shard: %-28s -> %s",
        what, rc ? err.msg : "(accepted)");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_pairdata TMPDIR\n");
    return 2;
  }
  dt_h5_init();
  const char *dir = argv[1];
  char path[1024];
  snprintf(path, sizeof path, "%s/pairs.h5", dir);
  static shard s;
  make_shard(&s, 300, 42);
  write_shard(path, &s);
  dt_pair_set set;
  dt_error err = {0};
  int rc = dt_pair_set_load(&set, path, V, &err);
  CHECK(rc == 0 && set.n == 300 && set.vocab == V && set.eos == EOS, "load 300 pairs %s",
        rc ? err.msg : "");
  if (rc) return 1;

  /* batching under several budgets and multiples */
  const int64_t budgets[] = {60, 200, 1000};
  const int mults[] = {1, 2, 4};
  for (size_t bi = 0; bi < 3; bi++)
    for (size_t mi = 0; mi < 3; mi++) {
      /* the trainer insists on max_tokens >= multiple * max_len, so a batch
       * can always take `multiple` pairs */
      int mult = mults[mi];
      int64_t tok = budgets[bi], maxlen = DT_MIN(24, tok / mult);
      dt_pair_batches b;
      rc = dt_pair_batches_make(&set, tok, 64, mult, maxlen, &b, &err);
      int seen_ok = rc == 0, budget_ok = 1, mult_ok = 1, sorted_ok = 1, ntgt_ok = 1;
      int *seen = calloc((size_t)set.n, sizeof(int));
      int64_t used = 0, padded = 0, real = 0, too_long = 0;
      for (int64_t i = 0; i < set.n; i++)
        too_long += dt_pair_src_len(&set, i) > maxlen || dt_pair_tgt_len(&set, i) > maxlen;
      for (int64_t k = 0; rc == 0 && k < b.nbatches; k++) {
        int64_t n = b.start[k + 1] - b.start[k], longest = 0, t = 0;
        for (int64_t j = b.start[k]; j < b.start[k + 1]; j++) {
          int32_t p = b.order[j];
          seen[p]++;
          int64_t l = DT_MAX(dt_pair_src_len(&set, p), dt_pair_tgt_len(&set, p));
          longest = DT_MAX(longest, l);
          t += dt_pair_tgt_len(&set, p);
          if (j > b.start[k] && l < DT_MAX(dt_pair_src_len(&set, b.order[j - 1]),
                                           dt_pair_tgt_len(&set, b.order[j - 1])))
            sorted_ok = 0;
        }
        budget_ok &= n >= 1 && n <= 64 && n * longest <= tok;
        mult_ok &= n % mult == 0;
        ntgt_ok &= t == b.ntgt[k];
        used += n, padded += n * longest, real += t;
      }
      for (int64_t i = 0; i < set.n; i++) seen_ok &= seen[i] <= 1;
      CHECK(seen_ok && budget_ok && mult_ok && sorted_ok && ntgt_ok &&
                used + b.skipped == set.n && b.skipped >= too_long &&
                b.skipped - too_long < mult,
            "batches: %4lld tokens, multiple %d: %lld batches, %lld pairs used, %lld skipped "
            "(%lld over max_len), padding %.0f%%",
            (long long)tok, mult, (long long)b.nbatches, (long long)used, (long long)b.skipped,
            (long long)too_long, padded ? 100.0 * (padded - real) / padded : 0.0);
      free(seen);
      dt_pair_batches_free(&b);
    }

  /* the padded micro-batch */
  int32_t idx[3] = {5, 17, 123};
  int32_t src[3 * 32], src_len[3], tok[3 * 32], y[3 * 32], tgt_len[3];
  int ts, t;
  int64_t real = dt_pair_fill(&set, idx, 3, src, src_len, tok, y, tgt_len, &ts, &t);
  int fill_ok = 1;
  int64_t want_real = 0, want_ts = 0, want_t = 0;
  for (int i = 0; i < 3; i++) {
    int64_t ls = s.so[idx[i] + 1] - s.so[idx[i]], lt = s.to[idx[i] + 1] - s.to[idx[i]];
    want_real += lt + 1, want_ts = DT_MAX(want_ts, ls + 1), want_t = DT_MAX(want_t, lt + 1);
  }
  fill_ok &= real == want_real && ts == want_ts && t == want_t;
  for (int i = 0; fill_ok && i < 3; i++) {
    int64_t ls = s.so[idx[i] + 1] - s.so[idx[i]], lt = s.to[idx[i] + 1] - s.to[idx[i]];
    fill_ok &= src_len[i] == ls + 1 && tgt_len[i] == lt + 1;
    for (int j = 0; j < ts; j++) {
      int want = j < ls ? s.src[s.so[idx[i]] + j] : j == ls ? EOS : PAD;
      fill_ok &= src[i * ts + j] == want;
    }
    for (int j = 0; j < t; j++) {
      int want_tok = j == 0 ? BOS : j <= lt ? s.tgt[s.to[idx[i]] + j - 1] : PAD;
      int want_y = j < lt ? s.tgt[s.to[idx[i]] + j] : j == lt ? EOS : -1;
      fill_ok &= tok[i * t + j] == want_tok && y[i * t + j] == want_y;
    }
  }
  CHECK(fill_ok, "micro-batch: source+eos, bos+target, target+eos, pads and -1 in place "
        "(%d x %d source, %d x %d target)", 3, ts, 3, t);
  dt_pair_set_free(&set);

  /* broken shards */
  static shard b;
  b = s;
  expect_error(dir, "vocabulary mismatch", &b, 64, "vocab_size = 64");
  b = s, b.tgt[7] = V;
  expect_error(dir, "id out of range", &b, 0, "tgt_tokens[7]");
  b = s, b.so[10] = b.so[9];
  expect_error(dir, "empty source sentence", &b, 0, "pair 9 is empty");
  b = s, b.eos = V + 3;
  expect_error(dir, "eos id out of range", &b, 0, "eos_id");
  b = s, b.eos = b.pad;
  expect_error(dir, "eos id equal to pad id", &b, 0, "must differ");
  b = s, b.tgt_extra = 1;
  expect_error(dir, "offsets past the tokens", &b, 0, "tgt_offsets ends at");
  snprintf(path, sizeof path, "%s/missing.h5", dir);
  rc = dt_pair_set_load(&set, path, 0, &err);
  CHECK(rc != 0 && strstr(err.msg, "missing.h5"), "missing shard -> %s", err.msg);

  return check_summary();
}
