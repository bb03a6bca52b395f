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
 * after dw is done with it (same stream, so ordered). For dw one GEMM takes
 * the whole chunk: col laid out (CKK, nb, OHW) and dout's chunk transposed to
 * (OC, nb, OHW) in the workspace's second region, so
 *   dw (OC, CKK) += doutT (OC, nb*OHW) @ colT^T
 * (one launch for a chunk, where one per image cost 1,024 launches a step
 * for LeNet at batch 512). The bias gradient sums each channel in
 * CONV_DB_GROUPS blocks whose partial sums (the third region) are added in
 * a fixed order, so it stays deterministic. */
#include "conv.h"
#include "cuda_common.h"

/* Cap on the col buffer; more images per chunk only saves launches. */
#define DT_CONV_WS_BUDGET ((size_t)64 << 20)

static size_t conv_col_floats(const dt_conv2d_shape *s) {
  return (size_t)s->c * s->kh * s->kw * (size_t)s->oh * s->ow;
}

#define CONV_DB_GROUPS 64

/* Images per chunk: as many as fit the budget, at least one. Forward,
 * backward and the workspace size all use this same function. */
static int conv_chunk(const dt_conv2d_shape *s) {
  size_t per = (conv_col_floats(s) + (size_t)s->oc * s->oh * s->ow) * sizeof(float);
  if (per == 0) return s->n > 0 ? s->n : 1;
  size_t nb = DT_CONV_WS_BUDGET / per;
  if (nb < 1) nb = 1;
  if (nb > (size_t)s->n) nb = (size_t)(s->n > 0 ? s->n : 1);
  return (int)nb;
}

/* The input pixel that filter tap (c, kh, kw) of output (oh, ow) of image i
 * sees, or zero where the window hangs over the padding */
static __device__ __forceinline__ float window_px(const float *inp, const dt_conv2d_shape &s,
                                                  size_t i, int c, int kh, int kw, int oh,
                                                  int ow) {
  const int ih = oh * s.stride - s.pad + kh;
  const int iw = ow * s.stride - s.pad + kw;
  if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) return 0.0f;
  return inp[((i * s.c + c) * s.h + ih) * s.w + iw];
}

/* col (nb, C,KH,KW, OH,OW) from inp (nb, C,H,W) */
static __global__ void im2col_kernel(float *col, const float *inp, dt_conv2d_shape s, int nb) {
  const size_t total = (size_t)nb * s.c * s.kh * s.kw * s.oh * s.ow;
  DT_GRID_STRIDE(idx, total) {
    size_t t = idx;
    const int ow = (int)(t % s.ow); t /= s.ow;
    const int oh = (int)(t % s.oh); t /= s.oh;
    const int kw = (int)(t % s.kw); t /= s.kw;
    const int kh = (int)(t % s.kh); t /= s.kh;
    const int c = (int)(t % s.c);
    col[idx] = window_px(inp, s, t / s.c, c, kh, kw, oh, ow);
  }
}

/* colT (C,KH,KW, nb, OH,OW): im2col with the image index inside the row, so
 * a chunk's columns sit side by side for one dw GEMM */
static __global__ void im2col_t_kernel(float *col, const float *inp, dt_conv2d_shape s, int nb) {
  const size_t ohw = (size_t)s.oh * s.ow;
  const size_t total = (size_t)s.c * s.kh * s.kw * nb * ohw;
  DT_GRID_STRIDE(idx, total) {
    const size_t p = idx % ohw, t = idx / ohw;
    size_t r = t / (size_t)nb;
    const int kw = (int)(r % s.kw); r /= s.kw;
    const int kh = (int)(r % s.kh);
    col[idx] = window_px(inp, s, t % (size_t)nb, (int)(r / s.kh), kh, kw, (int)(p / s.ow),
                         (int)(p % s.ow));
  }
}

/* doutT (OC, nb, OHW) from dout (nb, OC, OHW) */
static __global__ void nc_swap_kernel(float *out, const float *in, int nb, int oc, size_t ohw) {
  const size_t total = (size_t)nb * oc * ohw;
  DT_GRID_STRIDE(idx, total) {
    const size_t p = idx % ohw, t = idx / ohw;
    const size_t i = t % (size_t)nb, o = t / (size_t)nb;
    out[idx] = in[(i * oc + o) * ohw + p];
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

/* part[o][g] = the sum over images g, g+G, ... and all pixels of channel o
 * of dout (N,OC,OH,OW): grid (OC, G), threads over pixels (no division per
 * element) */
static __global__ void conv_bias_part_kernel(double *part, const float *dout, int n, int oc,
                                             int ohw) {
  const int o = blockIdx.x, g = blockIdx.y, G = gridDim.y;
  double s = 0.0;
  for (int i = g; i < n; i += G) {
    const float *d = dout + ((size_t)i * oc + o) * (size_t)ohw;
    for (int p = threadIdx.x; p < ohw; p += blockDim.x) s += d[p];
  }
  s = dt_block_sum(s);
  if (threadIdx.x == 0) part[(size_t)o * G + g] = s;
}

/* db[o] += the G partial sums of channel o, in order */
static __global__ void conv_bias_sum_kernel(float *db, const double *part, int oc, int G) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= oc) return;
  double s = 0.0;
  for (int g = 0; g < G; g++) s += part[(size_t)o * G + g];
  db[o] = (float)((double)db[o] + s);
}

/* The workspace: col (chunk images), doutT (chunk images), then the bias
 * gradient's partial sums, in bytes from its start */
static size_t ws_dout_off(const dt_conv2d_shape *s) {
  return (size_t)conv_chunk(s) * conv_col_floats(s) * sizeof(float);
}
static size_t ws_part_off(const dt_conv2d_shape *s) {
  const size_t end = ws_dout_off(s) + (size_t)conv_chunk(s) * s->oc * s->oh * s->ow * 4;
  return (end + 7) / 8 * 8;
}

static void conv_need_ws(const void *ws) {
  if (!ws)
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
  return ws_part_off(s) + (size_t)DT_MAX(s->oc, 0) * CONV_DB_GROUPS * sizeof(double);
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
    if (conv_col_floats(s) > 0) conv_need_ws(ws);
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
    conv_need_ws(ws);
    float *col = (float *)ws;
    const int chunk = conv_chunk(s);
    for (int n0 = 0; n0 < s->n; n0 += chunk) {
      const int nb = DT_MIN(chunk, s->n - n0);
      const float *dout_chunk = dout + (size_t)n0 * s->oc * ohw;
      if (dw) {
        float *dout_t = (float *)((char *)ws + ws_dout_off(s));
        const size_t ncol = (size_t)nb * ckk * ohw, nout = (size_t)nb * s->oc * ohw;
        im2col_t_kernel<<<dt_cuda_blocks(ncol, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                          c->stream>>>(col, inp + (size_t)n0 * chw, *s, nb);
        CUDA_LAUNCH_CHECK();
        nc_swap_kernel<<<dt_cuda_blocks(nout, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                         c->stream>>>(dout_t, dout_chunk, nb, s->oc, (size_t)ohw);
        CUDA_LAUNCH_CHECK();
        /* dw (OC, CKK) += doutT (OC, nb*OHW) @ colT (CKK, nb*OHW)^T */
        dt_cuda_gemm_rm(c, 0, 1, s->oc, ckk, nb * ohw, 1.0f, dout_t, col, 1.0f, dw);
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
    conv_need_ws(ws);
    double *part = (double *)((char *)ws + ws_part_off(s));
    const int G = DT_MIN(CONV_DB_GROUPS, s->n);
    conv_bias_part_kernel<<<dim3(s->oc, G), DT_CUDA_THREADS, 0, c->stream>>>(part, dout, s->n,
                                                                            s->oc, ohw);
    CUDA_LAUNCH_CHECK();
    conv_bias_sum_kernel<<<(s->oc + 127) / 128, 128, 0, c->stream>>>(db, part, s->oc, G);
    CUDA_LAUNCH_CHECK();
  }
}
