/* embedding.c: fp32 reference token + position embedding. The backward adds
 * the rows in (b,t) order, so it is deterministic by construction. */
#include <math.h>

#include "../embedding.h"

/* out (B,T,C), tokens (B,T), wte (V,C), wpe (maxT,C) or NULL */
void dt_cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                              const float *wpe, int B, int T, int C, int V) {
  (void)ctx;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const size_t bt = (size_t)b * T + t;
      const int32_t tok = tokens[bt];
      float *o = out + bt * C;
      if (tok < 0 || tok >= V) {
        for (int c = 0; c < C; c++) o[c] = NAN;
        continue;
      }
      const float *e = wte + (size_t)tok * C, *p = wpe ? wpe + (size_t)t * C : NULL;
      for (int c = 0; c < C; c++) o[c] = p ? e[c] + p[c] : e[c];
    }
}

size_t dt_cpu_embedding_backward_workspace(void *ctx, int B, int T, int V) {
  (void)ctx, (void)B, (void)T, (void)V;
  return 0;
}

/* dwte (V,C) +=, dwpe (maxT,C) += (either NULL), dout (B,T,C), tokens (B,T) */
void dt_cpu_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *tokens, int B, int T, int C, int V, void *ws) {
  (void)ctx, (void)ws;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      const size_t bt = (size_t)b * T + t;
      const float *g = dout + bt * C;
      const int32_t tok = tokens[bt];
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
