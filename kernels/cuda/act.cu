/* act.cu: activations on the GPU: relu, tanh, exact (erf) gelu and GPT-2's
 * tanh gelu, forward and backward, as grid-stride elementwise kernels.
 * The transcendentals are evaluated in double: the build's --use_fast_math
 * would otherwise turn tanhf into a ~1e-3-accurate approximation, and these
 * kernels must agree with the fp32 CPU reference. In place (out == inp) is
 * fine: each element is read before it is written by the same thread. */
#include "act.h"
#include "cuda_common.h"

#define GELU_SQRT_2_OVER_PI 0.7978845608028654 /* sqrt(2/pi) */
#define GELU_INV_SQRT_2PI 0.3989422804014327   /* 1/sqrt(2*pi) */
#define GELU_SQRT1_2 0.7071067811865476        /* 1/sqrt(2) */
#define GELU_C 0.044715

template <int A>
static __device__ __forceinline__ float act_f(float xf) {
  const double x = xf;
  if (A == DT_ACT_RELU) return xf > 0.0f ? xf : 0.0f;
  if (A == DT_ACT_TANH) return (float)tanh(x);
  if (A == DT_ACT_GELU) return (float)(0.5 * x * (1.0 + erf(x * GELU_SQRT1_2)));
  /* DT_ACT_GELU_TANH */
  return (float)(0.5 * x * (1.0 + tanh(GELU_SQRT_2_OVER_PI * (x + GELU_C * x * x * x))));
}

/* f'(x) */
template <int A>
static __device__ __forceinline__ double act_df(float xf) {
  const double x = xf;
  if (A == DT_ACT_RELU) return xf > 0.0f ? 1.0 : 0.0;
  if (A == DT_ACT_TANH) {
    const double t = tanh(x);
    return 1.0 - t * t;
  }
  if (A == DT_ACT_GELU) {
    const double cdf = 0.5 * (1.0 + erf(x * GELU_SQRT1_2));
    const double pdf = exp(-0.5 * x * x) * GELU_INV_SQRT_2PI;
    return cdf + x * pdf;
  }
  /* DT_ACT_GELU_TANH */
  const double u = GELU_SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
  const double t = tanh(u);
  const double du = GELU_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}

template <int A>
static __global__ void act_fwd_kernel(float *out, const float *inp, size_t n) {
  DT_GRID_STRIDE(i, n) out[i] = act_f<A>(inp[i]);
}

template <int A>
static __global__ void act_bwd_kernel(float *dinp, const float *dout, const float *inp,
                                      size_t n) {
  DT_GRID_STRIDE(i, n) {
    /* relu passes dout through exactly (no multiply by 1.0 in double) */
    if (A == DT_ACT_RELU)
      dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
    else
      dinp[i] = (float)((double)dout[i] * act_df<A>(inp[i]));
  }
}

static void act_bad(dt_act act) {
  char msg[64];
  snprintf(msg, sizeof msg, "unknown activation %d", (int)act);
  dt_fatal("dtrain", msg, __FILE__, __LINE__, __func__, "act");
}

#define ACT_LAUNCH(kern, ...)                                                            \
  do {                                                                                   \
    kern<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,                       \
           DT_CUDA_CTX(ctx)->stream>>>(__VA_ARGS__);                                     \
    CUDA_LAUNCH_CHECK();                                                                 \
  } while (0)

extern "C" void dt_cuda_act_forward(void *ctx, dt_act act, float *out, const float *inp,
                                    size_t n) {
  if (n == 0) return;
  switch (act) {
    case DT_ACT_RELU: ACT_LAUNCH(act_fwd_kernel<DT_ACT_RELU>, out, inp, n); break;
    case DT_ACT_TANH: ACT_LAUNCH(act_fwd_kernel<DT_ACT_TANH>, out, inp, n); break;
    case DT_ACT_GELU: ACT_LAUNCH(act_fwd_kernel<DT_ACT_GELU>, out, inp, n); break;
    case DT_ACT_GELU_TANH: ACT_LAUNCH(act_fwd_kernel<DT_ACT_GELU_TANH>, out, inp, n); break;
    default: act_bad(act);
  }
}

extern "C" void dt_cuda_act_backward(void *ctx, dt_act act, float *dinp, const float *dout,
                                     const float *inp, size_t n) {
  if (n == 0) return;
  switch (act) {
    case DT_ACT_RELU: ACT_LAUNCH(act_bwd_kernel<DT_ACT_RELU>, dinp, dout, inp, n); break;
    case DT_ACT_TANH: ACT_LAUNCH(act_bwd_kernel<DT_ACT_TANH>, dinp, dout, inp, n); break;
    case DT_ACT_GELU: ACT_LAUNCH(act_bwd_kernel<DT_ACT_GELU>, dinp, dout, inp, n); break;
    case DT_ACT_GELU_TANH:
      ACT_LAUNCH(act_bwd_kernel<DT_ACT_GELU_TANH>, dinp, dout, inp, n);
      break;
    default: act_bad(act);
  }
}
