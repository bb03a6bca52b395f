/* act.c: fp32 reference activations and their analytic derivatives. Every
 * op is elementwise and reads its inputs before writing, so out may alias
 * inp (forward) and dinp may alias dout or inp (backward). */
#include <math.h>

#include "../act.h"

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */
#define GELU_C 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

static inline float gelu_tanh(float x) {
  float u = GELU_K * (x + GELU_C * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}
static inline float gelu_tanh_grad(float x) {
  float u = GELU_K * (x + GELU_C * x * x * x);
  float t = tanhf(u);
  float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

void dt_cpu_act_forward(void *ctx, dt_act act, float *out, const float *inp, size_t n) {
  (void)ctx;
  switch (act) {
  case DT_ACT_RELU:
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
    break;
  case DT_ACT_TANH:
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
    break;
  case DT_ACT_GELU:
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
    break;
  case DT_ACT_GELU_TANH:
    for (size_t i = 0; i < n; i++) out[i] = gelu_tanh(inp[i]);
    break;
  default:
    break;
  }
}

/* relu'(0) = 0, as in PyTorch */
void dt_cpu_act_backward(void *ctx, dt_act act, float *dinp, const float *dout,
                         const float *inp, size_t n) {
  (void)ctx;
  switch (act) {
  case DT_ACT_RELU:
    for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
    break;
  case DT_ACT_TANH:
    for (size_t i = 0; i < n; i++) {
      float t = tanhf(inp[i]);
      dinp[i] = dout[i] * (1.0f - t * t);
    }
    break;
  case DT_ACT_GELU:
    for (size_t i = 0; i < n; i++) {
      float x = inp[i];
      float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
      float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
      dinp[i] = dout[i] * (cdf + x * pdf);
    }
    break;
  case DT_ACT_GELU_TANH:
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_tanh_grad(inp[i]);
    break;
  default:
    break;
  }
}
