/* bleu.h: corpus BLEU and chrF as sacreBLEU 2.x computes them by default
 * (BLEU: 13a tokenizer, mixed case, smooth 'exp', no effective order;
 * chrF: character order 6, word order 0, beta 2), from per-sentence sufficient
 * statistics that add up over a corpus and over ranks.
 *
 * Usage (validation every N steps, or a translate tool):
 *   dt_bleu_stats s = {0};
 *   for each sentence: dt_bleu_add(&s, hyp, ref);     // UTF-8, one line each
 *   double bp, prec[DT_BLEU_ORDER];
 *   double bleu = dt_bleu_score(&s, &bp, prec);        // 0..100
 * The stats are plain int64 counters: several ranks can sum them element-wise
 * (MPI_INT64_T, DT_BLEU_STATS_N of them) and score the sum. */
#ifndef DT_BLEU_H
#define DT_BLEU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_BLEU_ORDER 4
#define DT_CHRF_ORDER 6

/* All int64_t, no padding, so the struct is also an int64_t[DT_BLEU_STATS_N]. */
typedef struct dt_bleu_stats {
  int64_t correct[DT_BLEU_ORDER]; /* clipped n-gram matches, n = 1..4 */
  int64_t total[DT_BLEU_ORDER];   /* hypothesis n-grams, n = 1..4 */
  int64_t sys_len;                /* hypothesis tokens */
  int64_t ref_len;                /* reference tokens (the closest reference's) */
  int64_t segments;               /* sentences added */
} dt_bleu_stats;
#define DT_BLEU_STATS_N (sizeof(dt_bleu_stats) / sizeof(int64_t))

typedef struct dt_chrf_stats {
  int64_t hyp[DT_CHRF_ORDER];   /* hypothesis character n-grams, n = 1..6 */
  int64_t ref[DT_CHRF_ORDER];   /* reference character n-grams */
  int64_t match[DT_CHRF_ORDER]; /* clipped matches */
  int64_t segments;
} dt_chrf_stats;
#define DT_CHRF_STATS_N (sizeof(dt_chrf_stats) / sizeof(int64_t))

/* sacreBLEU's 13a tokenization of one segment (trailing whitespace stripped
 * first, as sacreBLEU does): tokens joined by single spaces. Returns a
 * malloc'd string the caller frees. */
char *dt_bleu_tokenize_13a(const char *line);

/* Adds one hypothesis against one reference, or against nrefs references
 * (n-gram counts clipped by the most any reference holds; the reference length
 * is the one closest to the hypothesis, the shorter on a tie). */
void dt_bleu_add(dt_bleu_stats *s, const char *hyp, const char *ref);
void dt_bleu_add_multi(dt_bleu_stats *s, const char *hyp, const char *const *refs, int nrefs);

/* dst += src, e.g. to merge shards of a validation set. */
void dt_bleu_stats_sum(dt_bleu_stats *dst, const dt_bleu_stats *src);

/* Corpus BLEU in 0..100. bp (may be NULL) gets the brevity penalty and
 * precisions (may be NULL) the four n-gram precisions in percent, smoothed as
 * sacreBLEU's 'exp' method does (all 0 when nothing matched). */
double dt_bleu_score(const dt_bleu_stats *s, double *bp, double precisions[DT_BLEU_ORDER]);

/* sacreBLEU's short line, e.g.
 * "BLEU = 23.45 57.1/30.2/18.0/11.2 (BP = 0.950 ratio = 0.951 hyp_len = 1234 ref_len = 1297)".
 * Returns what snprintf returns. */
int dt_bleu_format(const dt_bleu_stats *s, char *buf, size_t size);

/* chrF: one hypothesis against one reference, or the best-scoring of nrefs. */
void dt_chrf_add(dt_chrf_stats *s, const char *hyp, const char *ref);
void dt_chrf_add_multi(dt_chrf_stats *s, const char *hyp, const char *const *refs, int nrefs);
void dt_chrf_stats_sum(dt_chrf_stats *dst, const dt_chrf_stats *src);
double dt_chrf_score(const dt_chrf_stats *s); /* 0..100 */

#ifdef __cplusplus
}
#endif

#endif
