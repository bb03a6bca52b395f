/* test_blend.c: the sample order of a weighted blend of token datasets
 * (runtime/blend.c): every prefix of an epoch within one sample of each
 * dataset's weight; each dataset's draws, followed across epochs, are whole
 * permutations of its windows one after another; one dataset's order is the
 * single-dataset order (train.c's seeded epoch permutation); the order is a
 * pure function of (seed, epoch); bad specs are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blend.h"
#include "check.h"
#include "rng.h"

/* Every prefix of the epoch holds dataset d within one sample of w_d * i. */
static int prefixes_fair(const dt_blend *b) {
  int64_t count[DT_BLEND_MAX] = {0};
  for (int64_t i = 0; i < b->N; i++) {
    count[b->ds[i]]++;
    for (int d = 0; d < b->nd; d++)
      if (fabs((double)count[d] - b->w[d] * (double)(i + 1)) >= 1.0) return 0;
  }
  return 1;
}

/* Dataset d's draws over `epochs` epochs: each block of n[d] consecutive
 * draws is a permutation of its windows, every id in d's range. */
static int passes_whole(const dt_blend *b, uint64_t seed, int epochs, int d) {
  const int64_t n = b->n[d];
  int64_t total = 0, k = 0;
  int32_t *perm = dt_malloc((size_t)b->N * sizeof *perm);
  int32_t *draws = dt_malloc((size_t)(b->per_epoch[d] * epochs + 1) * sizeof *draws);
  for (int e = 0; e < epochs; e++) {
    dt_blend_epoch(b, seed, e, perm);
    for (int64_t i = 0; i < b->N; i++)
      if (perm[i] >= b->off[d] && perm[i] < b->off[d] + n) {
        if (b->ds[i] != d) return 0;
        draws[total++] = perm[i] - (int32_t)b->off[d];
      }
  }
  int ok = total == b->per_epoch[d] * epochs;
  char *seen = dt_malloc((size_t)n);
  for (; ok && k + n <= total; k += n) {
    memset(seen, 0, (size_t)n);
    for (int64_t j = 0; j < n; j++) {
      if (draws[k + j] < 0 || draws[k + j] >= n || seen[draws[k + j]]) ok = 0;
      else seen[draws[k + j]] = 1;
    }
  }
  free(seen), free(draws), free(perm);
  return ok;
}

int main(void) {
  dt_error err;
  dt_blend b;
  /* three datasets of unequal size and weight */
  const int64_t n3[] = {1000, 37, 400};
  const double w3[] = {0.5, 0.3, 0.2};
  CHECK(dt_blend_init(&b, 3, n3, w3, &err) == 0, "init of 3 datasets");
  CHECK(b.N == 1437 && b.off[1] == 1000 && b.off[2] == 1037, "N = 1437, offsets 0, 1000, 1037");
  CHECK(llabs(b.per_epoch[0] - 719) <= 1 && llabs(b.per_epoch[1] - 431) <= 1 &&
            llabs(b.per_epoch[2] - 287) <= 1,
        "samples an epoch %lld, %lld, %lld (want 718.5, 431.1, 287.4)", (long long)b.per_epoch[0],
        (long long)b.per_epoch[1], (long long)b.per_epoch[2]);
  CHECK(prefixes_fair(&b), "every prefix within one sample of the weights");
  for (int d = 0; d < 3; d++)
    CHECK(passes_whole(&b, 42, 5, d), "dataset %d: 5 epochs of draws are whole passes", d);
  int32_t *p1 = dt_malloc(1437 * sizeof *p1), *p2 = dt_malloc(1437 * sizeof *p2);
  dt_blend_epoch(&b, 42, 3, p1);
  dt_blend_epoch(&b, 42, 3, p2);
  CHECK(!memcmp(p1, p2, 1437 * sizeof *p1), "epoch 3 rebuilt the same (a resumed run's order)");
  dt_blend_epoch(&b, 42, 4, p2);
  CHECK(memcmp(p1, p2, 1437 * sizeof *p1) != 0, "epoch 4 differs");
  dt_blend_epoch(&b, 43, 3, p2);
  CHECK(memcmp(p1, p2, 1437 * sizeof *p1) != 0, "another seed differs");
  int diff = 0;
  for (int i = 0; i < 1437; i++) diff += b.ds[i] != (p1[i] >= 1037 ? 2 : p1[i] >= 1000 ? 1 : 0);
  CHECK(diff == 0, "each sample's id lies in its dataset's range");
  dt_blend_free(&b);
  free(p1), free(p2);

  /* one dataset: the single-dataset order, epoch e = seeded permutation e */
  const int64_t n1[] = {500};
  const double w1[] = {2.5};
  CHECK(dt_blend_init(&b, 1, n1, w1, &err) == 0, "init of 1 dataset");
  int32_t got[500], want[500];
  int same = 1;
  for (int e = 0; e < 3; e++) {
    dt_blend_epoch(&b, 7, e, got);
    dt_rng r;
    dt_rng_seed(&r, 7, 0x5eed0000ULL + (uint64_t)e);
    dt_rng_permutation(&r, want, 500);
    same &= !memcmp(got, want, sizeof got);
  }
  CHECK(same, "one dataset: epochs 0-2 are the single-dataset permutations");
  dt_blend_free(&b);

  /* equal weights of equal sizes alternate */
  const int64_t n2[] = {10, 10};
  const double w2[] = {1, 1};
  CHECK(dt_blend_init(&b, 2, n2, w2, &err) == 0, "init of 2 equal datasets");
  int alt = 1;
  for (int i = 0; i < 20; i++) alt &= b.ds[i] == i % 2;
  CHECK(alt, "equal weights alternate 0, 1, 0, 1, ...");
  dt_blend_free(&b);

  /* the spec */
  double w[DT_BLEND_MAX];
  const char *dirs[DT_BLEND_MAX];
  int nd;
  char *buf;
  CHECK(dt_blend_parse("0.7 data/a  0.3\tdata/b", w, dirs, &nd, &buf, &err) == 0 && nd == 2 &&
            w[0] == 0.7 && w[1] == 0.3 && !strcmp(dirs[0], "data/a") && !strcmp(dirs[1], "data/b"),
        "parse \"0.7 data/a  0.3<tab>data/b\"");
  free(buf);
  const char *bad[] = {"0.7 data/a 0.3", "-1 data/a", "0 data/a", "x data/a", "", "nan data/a"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = dt_blend_parse(bad[i], w, dirs, &nd, &buf, &err);
    CHECK(rc < 0 && strstr(err.msg, "[data] blend"), "refused \"%s\": %s", bad[i], err.msg);
    free(buf);
  }
  return check_summary();
}
