/* conv.cu: 2-D convolution on the GPU as im2col / col2im kernels plus fp32
 * cuBLAS GEMMs.
 *
 * Why not cuDNN: its fp32 convolutions may pick TF32 tensor-core, FFT or
 * Winograd algorithms whose error is far above fp32 rounding, its choice
 * depends on the device and library version, and some of its backward-filter
 * algorithms are not deterministic. im2col + GEMM is the same arithmetic as
 * the CPU reference, deterministic, and simple enough to be right without
 * tuning. The convolutions dtrain trains (LeNet-5) are small.
 *
 * Layout: for image i, col[i] is (C*KH*KW, OH*OW) row-major, row index
 * (c*KH + kh)*KW + kw, matching w (OC,C,KH,KW) seen as (OC, C*KH*KW). So
 *   out[i] (OC, OH*OW) = w @ col[i]
 *   dw    (OC, CKK)   += dout[i] @ col[i]^T
 *   dcol[i] (CKK, OH*OW) = w^T @ dout[i], then col2im gathers it into dinp.
 * The workspace holds col for a chunk of images; backward reuses it for dcol
 * after dw is done with it (same stream, so ordered). */
#include "conv.h"
#include "cuda_common.h"

/* Cap on the col buffer; more images per chunk only saves launches. */
#define DT_CONV_WS_BUDGET ((size_t)64 << 20)

static size_t conv_col_floats(const dt_conv2d_shape *s) {
  return (size_t)s->c * s->kh * s->kw * (size_t)s->oh * s->ow;
}

/* Images per chunk: as many as fit the budget, at least one. Forward,
 * backward and the workspace size all use this same function. */
static int conv_chunk(const dt_conv2d_shape *s) {
  size_t per = conv_col_floats(s) * sizeof(float);
  if (per == 0) return s->n > 0 ? s->n : 1;
  size_t nb = DT_CONV_WS_BUDGET / per;
  if (nb < 1) nb = 1;
  if (nb > (size_t)s->n) nb = (size_t)(s->n > 0 ? s->n : 1);
  return (int)nb;
}

/* col (nb, C,KH,KW, OH,OW) from inp (nb, C,H,W); zero where the window hangs
 * over the padding. */
static __global__ void im2col_kernel(float *col, const float *inp, dt_conv2d_shape s, int nb) {
  const size_t total = (size_t)nb * s.c * s.kh * s.kw * s.oh * s.ow;
  DT_GRID_STRIDE(idx, total) {
    size_t t = idx;
    const int ow = (int)(t % s.ow); t /= s.ow;
    const int oh = (int)(t % s.oh); t /= s.oh;
    const int kw = (int)(t % s.kw); t /= s.kw;
    const int kh = (int)(t % s.kh); t /= s.kh;
    const int c = (int)(t % s.c);
    const size_t i = t / s.c;
    const int ih = oh * s.stride - s.pad + kh;
    const int iw = ow * s.stride - s.pad + kw;
    float v = 0.0f;
    if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
      v = inp[((i * s.c + c) * s.h + ih) * s.w + iw];
    col[idx] = v;
  }
}

/* dinp (nb, C,H,W) = sum of every dcol entry that im2col read from that
 * pixel. A gather (one thread per input pixel), so no atomics and a fixed
 * summation order. */
static __global__ void col2im_kernel(float *dinp, const float *dcol, dt_conv2d_shape s, int nb) {
  const size_t total = (size_t)nb * s.c * s.h * s.w;
  const size_t ohw = (size_t)s.oh * s.ow;
  DT_GRID_STRIDE(idx, total) {
    size_t t = idx;
    const int x = (int)(t % s.w); t /= s.w;
    const int y = (int)(t % s.h); t /= s.h;
    const int c = (int)(t % s.c);
    const size_t i = t / s.c;
    const float *dc = dcol + i * (size_t)s.c * s.kh * s.kw * ohw;
    float sum = 0.0f;
    for (int kh = 0; kh < s.kh; kh++) {
      const int ty = y + s.pad - kh; /* = oh * stride */
      if (ty < 0 || ty % s.stride) continue;
      const int oh = ty / s.stride;
      if (oh >= s.oh) continue;
      for (int kw = 0; kw < s.kw; kw++) {
        const int tx = x + s.pad - kw;
        if (tx < 0 || tx % s.stride) continue;
        const int ow = tx / s.stride;
        if (ow >= s.ow) continue;
        const size_t row = ((size_t)c * s.kh + kh) * s.kw + kw;
        sum += dc[row * ohw + (size_t)oh * s.ow + ow];
      }
    }
    dinp[idx] = sum;
  }
}

/* out (N,OC,OH,OW) += b[oc] */
static __global__ void conv_bias_add_kernel(float *out, const float *b, size_t total, int oc,
                                            size_t ohw) {
  DT_GRID_STRIDE(i, total) out[i] += b[(i / ohw) % (size_t)oc];
}

/* db[oc] += sum over n, oh, ow of dout (N,OC,OH,OW); one block per channel. */
static __global__ void conv_bias_grad_kernel(float *db, const float *dout, int n, int oc,
                                             size_t ohw) {
  const int o = blockIdx.x;
  const size_t total = (size_t)n * ohw;
  double s = 0.0;
  for (size_t j = threadIdx.x; j < total; j += blockDim.x) {
    const size_t i = j / ohw, p = j % ohw;
    s += dout[(i * oc + o) * ohw + p];
  }
  s = dt_block_sum(s);
  if (threadIdx.x == 0) db[o] = (float)((double)db[o] + s);
}

static void conv_need_ws(const dt_conv2d_shape *s, const void *ws) {
  if (!ws && conv_col_floats(s) > 0)
    dt_fatal("dtrain", "conv2d needs the workspace sized by conv2d_workspace, got NULL",
             __FILE__, __LINE__, __func__, "ws");
}

static void im2col(dt_cuda_ctx *c, float *col, const float *inp, const dt_conv2d_shape *s,
                   int nb) {
  const size_t total = (size_t)nb * conv_col_floats(s);
  im2col_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, c->stream>>>(
      col, inp, *s, nb);
  CUDA_LAUNCH_CHECK();
}

extern "C" size_t dt_cuda_conv2d_workspace(void *ctx, const dt_conv2d_shape *s) {
  (void)ctx;
  return (size_t)conv_chunk(s) * conv_col_floats(s) * sizeof(float);
}

extern "C" void dt_cuda_conv2d_forward(void *ctx, float *out, const float *inp, const float *w,
                                       const float *b, const dt_conv2d_shape *s, void *ws) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  const int ckk = s->c * s->kh * s->kw, ohw = s->oh * s->ow;
  const size_t out_count = (size_t)s->n * s->oc * ohw;
  if (out_count == 0) return;
  if (ckk == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float) * out_count, c->stream));
  } else {
    conv_need_ws(s, ws);
    float *col = (float *)ws;
    const int chunk = conv_chunk(s);
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
      const int nb = DT_MIN(chunk, s->n - n0);
      im2col(c, col, inp + (size_t)n0 * s->c * s->h * s->w, s, nb);
      /* out[i] (OC, OHW) = w (OC, CKK) @ col[i] (CKK, OHW) */
      dt_cuda_gemm_rm_batched(c, 0, 0, s->oc, ohw, ckk, 1.0f, w, 0, col,
                              (long long)ckk * ohw, 0.0f, out + (size_t)n0 * s->oc * ohw,
                              (long long)s->oc * ohw, nb);
    }
  }
  if (b) {
    conv_bias_add_kernel<<<dt_cuda_blocks(out_count, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                           c->stream>>>(out, b, out_count, s->oc, (size_t)ohw);
    CUDA_LAUNCH_CHECK();
  }
}

extern "C" void dt_cuda_conv2d_backward(void *ctx, float *dinp, float *dw, float *db,
                                        const float *dout, const float *inp, const float *w,
                                        const dt_conv2d_shape *s, void *ws) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  const int ckk = s->c * s->kh * s->kw, ohw = s->oh * s->ow;
  const size_t chw = (size_t)s->c * s->h * s->w;
  if (s->n <= 0) return;
  if (ckk > 0 && ohw > 0 && s->oc > 0 && (dw || dinp)) {
    conv_need_ws(s, ws);
    float *col = (float *)ws;
    const int chunk = conv_chunk(s);
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
      const int nb = DT_MIN(chunk, s->n - n0);
      const float *dout_chunk = dout + (size_t)n0 * s->oc * ohw;
      if (dw) {
        im2col(c, col, inp + (size_t)n0 * chw, s, nb);
        /* dw (OC, CKK) += dout[i] (OC, OHW) @ col[i]^T; one GEMM per image
         * because a batched GEMM cannot sum its products into one output */
        for (int i = 0; i < nb; i++)
          dt_cuda_gemm_rm(c, 0, 1, s->oc, ckk, ohw, 1.0f, dout_chunk + (size_t)i * s->oc * ohw,
                          col + (size_t)i * ckk * ohw, 1.0f, dw);
      }
      if (dinp) {
        /* dcol[i] (CKK, OHW) = w^T (CKK, OC) @ dout[i] (OC, OHW), into col */
        dt_cuda_gemm_rm_batched(c, 1, 0, ckk, ohw, s->oc, 1.0f, w, 0, dout_chunk,
                                (long long)s->oc * ohw, 0.0f, col, (long long)ckk * ohw, nb);
        const size_t total = (size_t)nb * chw;
        col2im_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                        c->stream>>>(dinp + (size_t)n0 * chw, col, *s, nb);
        CUDA_LAUNCH_CHECK();
      }
    }
  } else if (dinp && chw > 0) {
    /* no output pixel or no filter reads the input: its gradient is zero */
    CUDA_CHECK(cudaMemsetAsync(dinp, 0, sizeof(float) * (size_t)s->n * chw, c->stream));
  }
  if (db && s->oc > 0) {
    conv_bias_grad_kernel<<<s->oc, DT_CUDA_THREADS, 0, c->stream>>>(db, dout, s->n, s->oc,
                                                                    (size_t)ohw);
    CUDA_LAUNCH_CHECK();
  }
}
