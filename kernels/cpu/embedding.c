/* embedding.c: fp32 reference token + position embedding. The backward adds
 * the rows in (b,t) order, so it is deterministic by construction. */
#include <math.h>

#include "../embedding.h"

/* out (B,T,C), tokens (B,T), wte (V,C) = vocabulary rows [v0, v0+V), wpe
 * (maxT,C) or NULL. A token outside those rows: a NaN row when the table is
 * whole (part = 0), a zero row (plus wpe) in a vocabulary-parallel part. */
static void forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                    int T, int C, int v0, int V, int part) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const size_t bt = (size_t)b * T + t;
      const int64_t tok = (int64_t)tokens[bt] - v0;
      float *o = out + bt * C;
      const float *p = wpe ? wpe + (size_t)t * C : NULL;
      if (tok < 0 || tok >= V) {
        for (int c = 0; c < C; c++) o[c] = part ? (p ? p[c] : 0.0f) : NAN;
        continue;
      }
      const float *e = wte + (size_t)tok * C;
      for (int c = 0; c < C; c++) o[c] = p ? e[c] + p[c] : e[c];
    }
}

void dt_cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                              const float *wpe, int B, int T, int C, int V) {
  (void)ctx;
  forward(out, tokens, wte, wpe, B, T, C, 0, V, 0);
}

void dt_cpu_embedding_forward_part(void *ctx, float *out, const int32_t *tokens,
                                   const float *wte, const float *wpe, int B, int T, int C,
                                   int v0, int V) {
  (void)ctx;
  forward(out, tokens, wte, wpe, B, T, C, v0, V, 1);
}

size_t dt_cpu_embedding_backward_workspace(void *ctx, int B, int T, int V) {
  (void)ctx, (void)B, (void)T, (void)V;
  return 0;
}

/* dwte (V,C) = rows [v0, v0+V) +=, dwpe (maxT,C) += (either NULL), dout
 * (B,T,C), tokens (B,T) */
void dt_cpu_embedding_backward_part(void *ctx, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C, int v0, int V,
                                    void *ws) {
  (void)ctx, (void)ws;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const size_t bt = (size_t)b * T + t;
      const float *g = dout + bt * C;
      const int64_t tok = (int64_t)tokens[bt] - v0;
      if (dwte && tok >= 0 && tok < V) {
        float *d = dwte + (size_t)tok * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
      }
      if (dwpe) {
        float *d = dwpe + (size_t)t * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
      }
    }
}

void dt_cpu_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *tokens, int B, int T, int C, int V, void *ws) {
  dt_cpu_embedding_backward_part(ctx, dwte, dwpe, dout, tokens, B, T, C, 0, V, ws);
}
