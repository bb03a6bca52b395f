/* matmul.cu: linear layers on the GPU: cuBLAS GEMMs (row-major mapped onto
 * column-major cuBLAS), fp32 or, under DT_PREC_BF16, bf16 operands on the
 * tensor cores with fp32 accumulation and output, plus small kernels for the
 * bias and its gradient. Also the row-major fp32 GEMM helpers the conv
 * kernels share. */
#include <cuda_bf16.h>

#include "cuda_common.h"
#include "matmul.h"

void dt_cuda_gemm_rm(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, const float *b, float beta, float *out) {
  /* column-major: out^T (N,M) = op(B)^T (N,K) @ op(A)^T (K,M) */
  const int lda = ta ? m : k, ldb = tb ? k : n;
  CUBLAS_CHECK(cublasSgemm(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                           ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                           &beta, out, n));
}

void dt_cuda_gemm_rm_batched(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha,
                             const float *a, long long stride_a, const float *b,
                             long long stride_b, float beta, float *out, long long stride_c,
                             int batch) {
  const int lda = ta ? m : k, ldb = tb ? k : n;
  CUBLAS_CHECK(cublasSgemmStridedBatched(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b,
                                         ldb, stride_b, a, lda, stride_a, &beta, out, n,
                                         stride_c, batch));
}

/* ---- bf16 operands: rounded to nearest even, as dt_bf16_round on the CPU ---- */

static __global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
  DT_GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(in[i]);
}

/* x (n) rounded to bf16 into scratch slot `slot` */
static const __nv_bfloat16 *bf16_operand(dt_cuda_ctx *c, int slot, const float *x, size_t n) {
  __nv_bfloat16 *t = (__nv_bfloat16 *)dt_cuda_grow(&c->bf16_buf[slot], &c->bf16_cap[slot],
                                                    n * sizeof(__nv_bfloat16));
  to_bf16_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, c->stream>>>(t, x, n);
  CUDA_LAUNCH_CHECK();
  return t;
}

/* dt_cuda_gemm_rm on bf16 operands: fp32 accumulation and output */
static void gemm_rm_bf16(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha,
                         const __nv_bfloat16 *a, const __nv_bfloat16 *b, float beta,
                         float *out) {
  const int lda = ta ? m : k, ldb = tb ? k : n;
  CUBLAS_CHECK(cublasGemmEx(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_16BF, ldb,
                            a, CUDA_R_16BF, lda, &beta, out, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

/* out (N,OC) += b (OC), broadcast over rows */
static __global__ void bias_add_kernel(float *out, const float *b, size_t total, int oc) {
  DT_GRID_STRIDE(i, total) out[i] += b[i % (size_t)oc];
}

/* db (OC) += sum over rows of dout (N,OC). Block (32,8): threadIdx.x picks the
 * column (coalesced reads), threadIdx.y strides the rows; the 8 partial sums
 * are combined in a fixed order, so the result is deterministic. */
#define BIAS_GRAD_ROWS 8
static __global__ void bias_grad_kernel(float *db, const float *dout, int n, int oc) {
  __shared__ double part[BIAS_GRAD_ROWS][32];
  const int j = blockIdx.x * 32 + threadIdx.x;
  double s = 0.0;
  if (j < oc)
    for (int r = threadIdx.y; r < n; r += BIAS_GRAD_ROWS) s += dout[(size_t)r * oc + j];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < oc) {
    double t = 0.0;
    for (int y = 0; y < BIAS_GRAD_ROWS; y++) t += part[y][threadIdx.x];
    db[j] = (float)((double)db[j] + t);
  }
}

extern "C" void dt_cuda_linear_forward(void *ctx, float *out, const float *inp, const float *w,
                                       const float *b, int n, int c, int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  if (n <= 0 || oc <= 0) return;
  if (c <= 0) { /* empty product: out = b (or 0) */
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)n * oc, cc->stream));
  } else if (cc->matmul_bf16) {
    gemm_rm_bf16(cc, 0, 1, n, oc, c, 1.0f, bf16_operand(cc, 0, inp, (size_t)n * c),
                 bf16_operand(cc, 1, w, (size_t)oc * c), 0.0f, out);
  } else {
    /* out (N,OC) = inp (N,C) @ w (OC,C)^T */
    dt_cuda_gemm_rm(cc, 0, 1, n, oc, c, 1.0f, inp, w, 0.0f, out);
  }
  if (b) {
    const size_t total = (size_t)n * oc;
    bias_add_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, cc->stream>>>(
        out, b, total, oc);
    CUDA_LAUNCH_CHECK();
  }
}

extern "C" void dt_cuda_linear_backward(void *ctx, float *dinp, float *dw, float *db,
                                        const float *dout, const float *inp, const float *w,
                                        int n, int c, int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  /* bf16: dout rounded once (slot 0) for both GEMMs; db sums it unrounded */
  const __nv_bfloat16 *dout16 =
      cc->matmul_bf16 && n > 0 && c > 0 && oc > 0 && (dinp || dw)
          ? bf16_operand(cc, 0, dout, (size_t)n * oc)
          : NULL;
  if (dinp && n > 0 && c > 0) {
    if (oc > 0 && dout16) /* dinp (N,C) = dout (N,OC) @ w (OC,C) */
      gemm_rm_bf16(cc, 0, 0, n, c, oc, 1.0f, dout16, bf16_operand(cc, 1, w, (size_t)oc * c),
                   0.0f, dinp);
    else if (oc > 0)
      dt_cuda_gemm_rm(cc, 0, 0, n, c, oc, 1.0f, dout, w, 0.0f, dinp);
    else
      CUDA_CHECK(cudaMemsetAsync(dinp, 0, sizeof(float) * (size_t)n * c, cc->stream));
  }
  if (dw && n > 0 && c > 0 && oc > 0) { /* dw (OC,C) += dout^T (OC,N) @ inp (N,C) */
    if (dout16)
      gemm_rm_bf16(cc, 1, 0, oc, c, n, 1.0f, dout16, bf16_operand(cc, 1, inp, (size_t)n * c),
                   1.0f, dw);
    else
      dt_cuda_gemm_rm(cc, 1, 0, oc, c, n, 1.0f, dout, inp, 1.0f, dw);
  }
  if (db && n > 0 && oc > 0) {
    dim3 block(32, BIAS_GRAD_ROWS);
    bias_grad_kernel<<<(oc + 31) / 32, block, 0, cc->stream>>>(db, dout, n, oc);
    CUDA_LAUNCH_CHECK();
  }
}
