/* matmul.cu: linear layers on the GPU: cuBLAS GEMMs (row-major mapped onto
 * column-major cuBLAS), fp32 or, under DT_PREC_BF16, bf16 operands on the
 * tensor cores with fp32 accumulation and output. The bias, and GELU (tanh)
 * with its backward, are fused into cuBLASLt's epilogues; where cuBLASLt
 * offers no algorithm (or DTRAIN_GEMM=cublas), plain cuBLAS and small
 * kernels do the same. Also the row-major fp32 GEMM helpers the conv
 * kernels share. */
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "act.h"
#include "xent.h"

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

void dt_cuda_to_bf16(dt_cuda_ctx *c, void *out, const float *in, size_t n) {
  if (!n) return;
  to_bf16_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, c->stream>>>(
      (__nv_bfloat16 *)out, in, n);
  CUDA_LAUNCH_CHECK();
}

/* fp32 scratch slot `slot` of n floats (the unfused bf16-output paths) */
static float *f32_scratch(dt_cuda_ctx *c, int slot, size_t n) {
  return (float *)dt_cuda_grow(&c->f32_buf[slot], &c->f32_cap[slot], n * sizeof(float));
}

static __global__ void from_bf16_kernel(float *out, const __nv_bfloat16 *in, size_t n) {
  DT_GRID_STRIDE(i, n) out[i] = __bfloat162float(in[i]);
}

/* A bf16 tensor reaches a GEMM only in bf16 mode (kernels.h) */
static void need_bf16_mode(const dt_cuda_ctx *c, dt_dtype t) {
  if (t == DT_BF16 && !c->matmul_bf16)
    dt_fatal("dtrain", "a bf16 GEMM operand needs DT_PREC_BF16", __FILE__, __LINE__, __func__,
             "need_bf16_mode");
}

/* x (n) of type t as a bf16 GEMM operand: a bf16 tensor as it is; an fp32
 * one rounded to bf16 into scratch slot `slot`, or, when x lies in the
 * parameters given to set_weights, its place in their bf16 copy (made by
 * the first call that needs it) */
static const __nv_bfloat16 *bf16_operand(dt_cuda_ctx *c, int slot, const void *xv,
                                         dt_dtype xt, size_t n) {
  if (xt == DT_BF16) return (const __nv_bfloat16 *)xv;
  const float *x = (const float *)xv;
  const uintptr_t a = (uintptr_t)x, w0 = (uintptr_t)c->wsrc;
  if (c->wsrc && a >= w0 && (a - w0) / sizeof(float) + n <= c->wn) {
    __nv_bfloat16 *w16 = (__nv_bfloat16 *)c->w16;
    if (!c->w16_fresh) {
      w16 = (__nv_bfloat16 *)dt_cuda_grow(&c->w16, &c->w16_cap, c->wn * sizeof(__nv_bfloat16));
      dt_cuda_to_bf16(c, w16, c->wsrc, c->wn);
      c->w16_fresh = 1;
    }
    return w16 + (x - c->wsrc);
  }
  __nv_bfloat16 *t = (__nv_bfloat16 *)dt_cuda_grow(&c->bf16_buf[slot], &c->bf16_cap[slot],
                                                    n * sizeof(__nv_bfloat16));
  dt_cuda_to_bf16(c, t, x, n);
  return t;
}

/* Row-major out (M,N) of type ot, rows ldc apart, = op(A) @ op(B) + beta *
 * out, A and B of type abt with rows lda and ldb apart, accumulated in
 * fp32: cuBLAS's GemmEx, on the tensor cores for bf16 operands (a bf16 out
 * is the fp32 sum rounded once). */
static void gemm_rm_ex(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, const void *a,
                       int lda, const void *b, int ldb, cudaDataType abt, float beta, void *out,
                       int ldc, cudaDataType ot) {
  const float one = 1.0f;
  CUBLAS_CHECK(cublasGemmEx(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one, b, abt, ldb, a, abt,
                            lda, &beta, out, ot, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* dt_cuda_gemm_rm on bf16 operands: fp32 accumulation and output */
static void gemm_rm_bf16(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k,
                         const __nv_bfloat16 *a, const __nv_bfloat16 *b, float beta,
                         float *out) {
  gemm_rm_ex(c, ta, tb, m, n, k, a, ta ? m : k, b, tb ? k : n, CUDA_R_16BF, beta, out, n,
             CUDA_R_32F);
}

/* ---- cuBLASLt: one GEMM with its epilogue ---- */

/* The alignment promised to cuBLASLt for p: the largest power of two up to
 * 256 that divides its address. Its heuristics assume 256 unless told, and
 * rows of a chunk (the classifier's) start anywhere. */
static uint32_t lt_align(const void *p) {
  uint32_t a = 256;
  while (a > 1 && (uintptr_t)p % a) a >>= 1;
  return a;
}

#define LT_ATTR(desc, attr, v) \
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &(v), sizeof(v)))
#define LT_PREF(pref, attr, v) \
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &(v), sizeof(v)))

static const char *lt_epi_name(cublasLtEpilogue_t e) {
  switch (e) {
    case CUBLASLT_EPILOGUE_BIAS: return "bias";
    case CUBLASLT_EPILOGUE_GELU: return "gelu";
    case CUBLASLT_EPILOGUE_GELU_BIAS: return "gelu+bias";
    case CUBLASLT_EPILOGUE_GELU_AUX: return "gelu+aux";
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: return "gelu+aux+bias";
    case CUBLASLT_EPILOGUE_DGELU: return "dgelu";
    default: return "default";
  }
}

/* What cuBLASLt's choice of algorithm depends on: the problem and the
 * alignment of every pointer (A, B, D, bias, aux). The pointers themselves
 * are set on the cached descriptor at each call. */
typedef struct lt_key {
  uint32_t epi;
  int ta, tb, m, n, k;
  int dtype, dtype_d; /* A and B; D (and so bias and aux) */
  uint32_t align[5];
} lt_key;

/* One problem's descriptors and algorithm, made once: creating them and
 * asking the heuristic costs host time comparable to a small GEMM (LeNet's
 * layers), so a layer's later calls only set pointers and launch. ok = 0
 * caches "no algorithm" too. */
typedef struct lt_plan {
  lt_key key;
  int used, ok;
  cublasStatus_t status;
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, ld;
  cublasLtMatmulAlgo_t algo;
} lt_plan;

#define LT_PLANS 64

static void lt_plan_destroy(lt_plan *p) {
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->ld));
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lb));
  CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->la));
  CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
}

/* The plan for key, made on first use; the oldest plan makes room when the
 * table is full (a model has a few dozen distinct linear layers) */
static lt_plan *lt_plan_get(dt_cuda_ctx *c, const lt_key *key, const void *bias,
                            const void *aux) {
  if (!c->lt_plans) c->lt_plans = dt_calloc(LT_PLANS, sizeof(lt_plan));
  lt_plan *plans = (lt_plan *)c->lt_plans;
  for (int i = 0; i < LT_PLANS; i++)
    if (plans[i].used && !memcmp(&plans[i].key, key, sizeof *key)) return &plans[i];
  lt_plan *p = &plans[c->lt_next];
  c->lt_next = (c->lt_next + 1) % LT_PLANS;
  if (p->used) lt_plan_destroy(p); /* evict */
  memset(p, 0, sizeof *p);
  p->key = *key;
  p->used = 1;
  const int m = key->m, n = key->n, k = key->k, ta = key->ta, tb = key->tb;
  const cudaDataType dtype = (cudaDataType)key->dtype;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, opa);
  LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, opb);
  LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, key->epi);
  /* the heuristic reads the bias and aux pointers for their alignment */
  if (bias) LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  if (aux) {
    const int64_t aux_ld = n;
    LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
    LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, aux_ld);
  }
  /* stored shapes (before op), column-major */
  const uint64_t ar = tb ? k : n, ac = tb ? n : k, br = ta ? m : k, bc = ta ? k : m;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, dtype, ar, ac, (int64_t)ar));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, dtype, br, bc, (int64_t)br));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->ld, (cudaDataType)key->dtype_d, n, m, n));
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = c->lt_ws_bytes;
  LT_PREF(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
  LT_PREF(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key->align[0]);
  LT_PREF(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key->align[1]);
  LT_PREF(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key->align[2]);
  LT_PREF(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key->align[2]);
  cublasLtMatmulHeuristicResult_t h;
  int got = 0;
  p->status = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->ld, p->ld, pref, 1,
                                             &h, &got);
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  p->ok = p->status == CUBLAS_STATUS_SUCCESS && got > 0;
  if (p->ok) p->algo = h.algo;
  return p;
}

/* Frees the plans (backend destruction). */
extern "C" void dt_cuda_lt_plans_free(dt_cuda_ctx *c) {
  lt_plan *plans = (lt_plan *)c->lt_plans;
  if (!plans) return;
  for (int i = 0; i < LT_PLANS; i++)
    if (plans[i].used) lt_plan_destroy(&plans[i]);
  free(plans);
  c->lt_plans = NULL;
}

/* Whether lt_gemm_rm may take an (M,N,K) product: cuBLASLt not turned off,
 * no empty dimension, and, with GELU's aux matrix, a leading dimension N
 * divisible by 8 (documented). Asked before the operands are converted, so
 * a product that cannot be fused is not converted twice. */
static int lt_usable(const dt_cuda_ctx *c, int m, int n, int k, int aux) {
  return c->gemm_mode != DT_GEMM_CUBLAS && m > 0 && n > 0 && k > 0 && !(aux && n % 8);
}

/* Row-major out (M,N) = epi(op(A) @ op(B) [+ bias (N) on every row]), with
 * fp32 accumulation, A and B both fp32 or both bf16 (the layouts of
 * dt_cuda_gemm_rm), out of type dtype_d: fp32, or bf16 (bf16 operands
 * only). The bias and aux have out's type (cuBLASLt's defaults). aux
 * (M,N), row-major, is the epilogue's second matrix: GELU's input, written
 * by GELU_AUX*, read by DGELU. In
 * cuBLASLt's column-major terms D (N,M) = op(B') op(A') with B' = our B,
 * so the bias runs along D's rows as it must, and aux's leading dimension
 * is N. The caller has checked lt_usable. Returns 0, having launched
 * nothing, when cuBLASLt has no algorithm (DTRAIN_GEMM=lt makes that
 * fatal, to prove the fused path ran). */
static int lt_gemm_rm(dt_cuda_ctx *c, cublasLtEpilogue_t epi, int ta, int tb, int m, int n,
                      int k, const void *a, const void *b, cudaDataType dtype, void *out,
                      cudaDataType dtype_d, const void *bias, const void *aux) {
  if (c->lt_ws_bytes == 0) {
    c->lt_ws_bytes = (size_t)32 << 20; /* what cuBLAS asks for on Hopper */
    CUDA_CHECK(cudaMalloc(&c->lt_ws, c->lt_ws_bytes));
  }
  lt_key key;
  memset(&key, 0, sizeof key); /* padding too: keys are compared with memcmp */
  key.epi = (uint32_t)epi, key.ta = ta, key.tb = tb, key.m = m, key.n = n, key.k = k;
  key.dtype = (int)dtype, key.dtype_d = (int)dtype_d;
  key.align[0] = lt_align(b), key.align[1] = lt_align(a), key.align[2] = lt_align(out);
  key.align[3] = bias ? lt_align(bias) : 0, key.align[4] = aux ? lt_align(aux) : 0;
  lt_plan *p = lt_plan_get(c, &key, bias, aux);
  if (p->ok) {
    if (bias) LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    if (aux) LT_ATTR(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(c->lt, p->desc, &one, b, p->la, a, p->lb, &zero, out, p->ld, out,
                                p->ld, &p->algo, c->lt_ws, c->lt_ws_bytes, c->stream));
    return 1;
  }
  char what[192];
  snprintf(what, sizeof what,
           "cuBLASLt has no algorithm for a %s GEMM (%s out) with the %s epilogue, M=%d N=%d "
           "K=%d (%s)",
           dtype == CUDA_R_16BF ? "bf16" : "fp32", dtype_d == CUDA_R_16BF ? "bf16" : "fp32",
           lt_epi_name(epi), m, n, k,
           cublasGetStatusString(p->status));
  if (c->gemm_mode == DT_GEMM_LT)
    dt_fatal("cuBLASLt", "DTRAIN_GEMM=lt and no fused algorithm", __FILE__, __LINE__, __func__,
             what);
  if (!c->lt_warned) { /* once: the unfused path is slower, not wrong */
    fprintf(stderr, "dtrain: warning: %s; using cuBLAS and separate kernels\n", what);
    c->lt_warned = 1;
  }
  return 0;
}

/* The operands of a linear layer's GEMM in the current precision: fp32 as
 * they are, or as bf16 (slots 0 and 1 for fp32 ones; y is a weight). */
typedef struct lt_ops {
  const void *x, *y;
  cudaDataType t;
} lt_ops;
static lt_ops lt_operands(dt_cuda_ctx *c, const void *x, dt_dtype xt, size_t nx, const float *y,
                          size_t ny) {
  need_bf16_mode(c, xt);
  lt_ops o = {x, y, CUDA_R_32F};
  if (c->matmul_bf16)
    o = {bf16_operand(c, 0, x, xt, nx), bf16_operand(c, 1, y, DT_F32, ny), CUDA_R_16BF};
  return o;
}

/* out (N,OC) += b (OC), broadcast over rows */
static __global__ void bias_add_kernel(float *out, const float *b, size_t total, int oc) {
  DT_GRID_STRIDE(i, total) out[i] += b[i % (size_t)oc];
}
static __global__ void bias_add_bf16_kernel(float *out, const __nv_bfloat16 *b, size_t total,
                                            int oc) {
  DT_GRID_STRIDE(i, total) out[i] += __bfloat162float(b[i % (size_t)oc]);
}

/* part (G,OC) row g = the sum over row group g of dout (N,OC) (see
 * dt_cuda_col_groups). Block (32,8): threadIdx.x picks the column
 * (coalesced reads), threadIdx.y strides the group's rows; the 8 partial
 * sums are combined in a fixed order. */
#define BIAS_GRAD_ROWS 8
template <typename T>
static __global__ void bias_grad_part_kernel(double *part, const T *dout, int n, int oc) {
  __shared__ double sh[BIAS_GRAD_ROWS][32];
  const int j = blockIdx.x * 32 + threadIdx.x, g = blockIdx.y;
  DT_COL_GROUP(n, g, gridDim.y, lo, hi);
  double s = 0.0;
  if (j < oc)
    for (int r = lo + threadIdx.y; r < hi; r += BIAS_GRAD_ROWS)
      s += dt_ld(&dout[(size_t)r * oc + j]);
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < oc) {
    double t = 0.0;
    for (int y = 0; y < BIAS_GRAD_ROWS; y++) t += sh[y][threadIdx.x];
    part[(size_t)g * oc + j] = t;
  }
}

/* db (OC) += sum over rows of dout (N,OC) of type dt */
static void bias_grad(dt_cuda_ctx *cc, float *db, const void *dout, dt_dtype dt, int n, int oc) {
  const int G = dt_cuda_col_groups(n);
  double *part = dt_cuda_col_part(cc, (size_t)G * oc);
  const dim3 grid((oc + 31) / 32, G), block(32, BIAS_GRAD_ROWS);
  if (dt == DT_BF16)
    bias_grad_part_kernel<__nv_bfloat16><<<grid, block, 0, cc->stream>>>(
        part, (const __nv_bfloat16 *)dout, n, oc);
  else
    bias_grad_part_kernel<float><<<grid, block, 0, cc->stream>>>(part, (const float *)dout, n,
                                                                 oc);
  CUDA_LAUNCH_CHECK();
  dt_cuda_col_sum_add(cc, db, part, oc, G);
}

/* the linear layer with an fp32 out */
static void linear_f32(dt_cuda_ctx *cc, float *out, const void *inp, dt_dtype it, const float *w,
                       const float *b, int n, int c, int oc) {
  if (b && lt_usable(cc, n, oc, c, 0)) { /* bias in the epilogue */
    const lt_ops o = lt_operands(cc, inp, it, (size_t)n * c, w, (size_t)oc * c);
    if (lt_gemm_rm(cc, CUBLASLT_EPILOGUE_BIAS, 0, 1, n, oc, c, o.x, o.y, o.t, out, CUDA_R_32F, b,
                   NULL))
      return;
  }
  if (c <= 0) { /* empty product: out = b (or 0) */
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)n * oc, cc->stream));
  } else if (cc->matmul_bf16) {
    gemm_rm_bf16(cc, 0, 1, n, oc, c, bf16_operand(cc, 0, inp, it, (size_t)n * c),
                 bf16_operand(cc, 1, w, DT_F32, (size_t)oc * c), 0.0f, out);
  } else {
    /* out (N,OC) = inp (N,C) @ w (OC,C)^T */
    dt_cuda_gemm_rm(cc, 0, 1, n, oc, c, 1.0f, (const float *)inp, w, 0.0f, out);
  }
  if (b) {
    const size_t total = (size_t)n * oc;
    bias_add_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, cc->stream>>>(
        out, b, total, oc);
    CUDA_LAUNCH_CHECK();
  }
}

/* The unfused path to a bf16 output: inp @ w^T + bias16 (bf16, or NULL) in
 * fp32 scratch slot 0, for the caller to round */
static float *sum_bf16_bias(dt_cuda_ctx *cc, const void *inp, dt_dtype it, const float *w,
                            const void *bias16, int n, int c, int oc) {
  const size_t total = (size_t)n * oc;
  float *sum = f32_scratch(cc, 0, total);
  linear_f32(cc, sum, inp, it, w, NULL, n, c, oc);
  if (bias16) {
    bias_add_bf16_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                           cc->stream>>>(sum, (const __nv_bfloat16 *)bias16, total, oc);
    CUDA_LAUNCH_CHECK();
  }
  return sum;
}

extern "C" void dt_cuda_linear_forward(void *ctx, void *out, dt_dtype ot, const void *inp,
                                       dt_dtype it, const float *w, const float *b, int n, int c,
                                       int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, it);
  need_bf16_mode(cc, ot);
  if (n <= 0 || oc <= 0) return;
  if (ot == DT_F32) {
    linear_f32(cc, (float *)out, inp, it, w, b, n, c, oc);
    return;
  }
  /* bf16 out: the bias read in bf16 (slot 2 when there is no weight copy) */
  const size_t total = (size_t)n * oc;
  const void *bias = b ? (const void *)bf16_operand(cc, 2, b, DT_F32, oc) : NULL;
  if (lt_usable(cc, n, oc, c, 0)) {
    const lt_ops o = lt_operands(cc, inp, it, (size_t)n * c, w, (size_t)oc * c);
    if (lt_gemm_rm(cc, b ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, 0, 1, n, oc, c,
                   o.x, o.y, o.t, out, CUDA_R_16BF, bias, NULL))
      return;
  }
  /* unfused: the fp32 sum in scratch, rounded once */
  dt_cuda_to_bf16(cc, out, sum_bf16_bias(cc, inp, it, w, bias, n, c, oc), total);
}

/* linear_backward's parameter half: dw (OC,C) += dout^T (OC,N) @ inp (N,C),
 * db (OC) += sum over rows of dout (of type dt); dout16 is dout in bf16
 * under bf16 */
static void backward_dw_db(dt_cuda_ctx *cc, float *dw, float *db, const void *dout, dt_dtype dt,
                           const __nv_bfloat16 *dout16, const void *inp, dt_dtype it, int n,
                           int c, int oc) {
  if (dw && n > 0 && c > 0 && oc > 0) {
    if (dout16)
      gemm_rm_bf16(cc, 1, 0, oc, c, n, dout16, bf16_operand(cc, 1, inp, it, (size_t)n * c),
                   1.0f, dw);
    else
      dt_cuda_gemm_rm(cc, 1, 0, oc, c, n, 1.0f, (const float *)dout, (const float *)inp, 1.0f,
                      dw);
  }
  if (db && n > 0 && oc > 0) bias_grad(cc, db, dout, dt, n, oc);
}

extern "C" void dt_cuda_linear_backward(void *ctx, float *dinp, float *dw, float *db,
                                        const void *dout, dt_dtype dt, const void *inp,
                                        dt_dtype it, const float *w, int n, int c, int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, dt);
  need_bf16_mode(cc, it);
  /* bf16: dout rounded once (slot 0) for both GEMMs; db sums it unrounded */
  const __nv_bfloat16 *dout16 =
      cc->matmul_bf16 && n > 0 && c > 0 && oc > 0 && (dinp || dw)
          ? bf16_operand(cc, 0, dout, dt, (size_t)n * oc)
          : NULL;
  if (dinp && n > 0 && c > 0) {
    if (oc > 0 && dout16) /* dinp (N,C) = dout (N,OC) @ w (OC,C) */
      gemm_rm_bf16(cc, 0, 0, n, c, oc, dout16,
                   bf16_operand(cc, 1, w, DT_F32, (size_t)oc * c), 0.0f, dinp);
    else if (oc > 0)
      dt_cuda_gemm_rm(cc, 0, 0, n, c, oc, 1.0f, (const float *)dout, w, 0.0f, dinp);
    else
      CUDA_CHECK(cudaMemsetAsync(dinp, 0, sizeof(float) * (size_t)n * c, cc->stream));
  }
  backward_dw_db(cc, dw, db, dout, dt, dout16, inp, it, n, c, oc);
}

extern "C" void dt_cuda_linear_act_forward(void *ctx, dt_act act, void *out, void *pre,
                                           dt_dtype ot, const void *inp, dt_dtype it,
                                           const float *w, const float *b, int n, int c,
                                           int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, ot);
  if (n <= 0 || oc <= 0) return;
  const size_t total = (size_t)n * oc;
  /* a bf16 output reads the bias in bf16 (slot 2 when no weight copy) */
  const void *bias = b && ot == DT_BF16 ? (const void *)bf16_operand(cc, 2, b, DT_F32, oc) : b;
  if (act == DT_ACT_GELU_TANH && lt_usable(cc, n, oc, c, pre != NULL)) {
    const cublasLtEpilogue_t epi = pre ? (b ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                                            : CUBLASLT_EPILOGUE_GELU_AUX)
                                       : (b ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU);
    const lt_ops o = lt_operands(cc, inp, it, (size_t)n * c, w, (size_t)oc * c);
    if (lt_gemm_rm(cc, epi, 0, 1, n, oc, c, o.x, o.y, o.t, out,
                   ot == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F, bias, pre))
      return;
  }
  if (ot == DT_F32) {
    float *h = (float *)(pre ? pre : out);
    linear_f32(cc, h, inp, it, w, b, n, c, oc);
    dt_cuda_act_forward(ctx, act, (float *)out, h, total);
    return;
  }
  /* bf16 outputs, unfused: the fp32 sum in scratch, rounded into each */
  float *sum = sum_bf16_bias(cc, inp, it, w, bias, n, c, oc);
  if (pre) dt_cuda_to_bf16(cc, pre, sum, total);
  dt_cuda_act_forward(ctx, act, sum, sum, total);
  dt_cuda_to_bf16(cc, out, sum, total);
}

extern "C" void dt_cuda_linear_backward_act(void *ctx, dt_act act, void *dpre, float *dw,
                                            float *db, const float *dout, const void *inp,
                                            const float *w, const void *pre, dt_dtype t, int n,
                                            int c, int oc) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, t);
  if (act == DT_ACT_GELU_TANH && lt_usable(cc, n, c, oc, 1)) {
    /* dpre (N,C) = dout (N,OC) @ w (OC,C), times GELU'(pre) in the epilogue;
     * under bf16 dout is rounded once (slot 0) for this GEMM and dw's */
    const lt_ops o = lt_operands(cc, dout, DT_F32, (size_t)n * oc, w, (size_t)oc * c);
    if (lt_gemm_rm(cc, CUBLASLT_EPILOGUE_DGELU, 0, 0, n, c, oc, o.x, o.y, o.t, dpre,
                   t == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F, NULL, pre)) {
      backward_dw_db(cc, dw, db, dout, DT_F32,
                     cc->matmul_bf16 ? (const __nv_bfloat16 *)o.x : NULL, inp, t, n, c, oc);
      return;
    }
  }
  if (t == DT_F32) {
    dt_cuda_linear_backward(ctx, (float *)dpre, dw, db, dout, DT_F32, inp, t, w, n, c, oc);
    if (n > 0 && c > 0)
      dt_cuda_act_backward(ctx, act, (float *)dpre, (float *)dpre, (const float *)pre,
                           (size_t)n * c);
    return;
  }
  /* bf16, unfused: the fp32 product and pre's values in scratch */
  const size_t total = (size_t)n * c;
  float *prod = total ? f32_scratch(cc, 0, total) : NULL;
  dt_cuda_linear_backward(ctx, prod, dw, db, dout, DT_F32, inp, t, w, n, c, oc);
  if (total == 0) return;
  float *p = f32_scratch(cc, 1, total);
  from_bf16_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, cc->stream>>>(
      p, (const __nv_bfloat16 *)pre, total);
  CUDA_LAUNCH_CHECK();
  dt_cuda_act_backward(ctx, act, prod, prod, p, total);
  dt_cuda_to_bf16(cc, dpre, prod, total);
}

/* One GEMM straight into the padded rows: no bias, so no epilogue is needed
 * and cuBLAS takes a bf16 output with ldc = ld itself. */
extern "C" void dt_cuda_lm_head_forward(void *ctx, void *logits, dt_dtype lt, int ld,
                                        const void *x, dt_dtype xt, const float *w, int n, int c,
                                        int v) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, xt);
  need_bf16_mode(cc, lt);
  if (n <= 0 || v <= 0) return;
  const cudaDataType ot = lt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  if (c <= 0) { /* empty product: zero logits */
    CUDA_CHECK(cudaMemset2DAsync(logits, (size_t)ld * dt_dtype_size(lt), 0,
                                 (size_t)v * dt_dtype_size(lt), n, cc->stream));
    return;
  }
  /* logits (N,V) = x (N,C) @ w (V,C)^T */
  if (cc->matmul_bf16)
    gemm_rm_ex(cc, 0, 1, n, v, c, bf16_operand(cc, 0, x, xt, (size_t)n * c), c,
               bf16_operand(cc, 1, w, DT_F32, (size_t)v * c), c, CUDA_R_16BF, 0.0f, logits, ld,
               ot);
  else
    gemm_rm_ex(cc, 0, 1, n, v, c, x, c, w, c, CUDA_R_32F, 0.0f, logits, ld, ot);
}

extern "C" void dt_cuda_lm_head_backward(void *ctx, float *losses, float *dx, float *dw,
                                         void *scratch, const void *logits, dt_dtype lt,
                                         const int32_t *targets, const void *x, dt_dtype xt,
                                         const float *w, int n, int c, int v, int ld,
                                         float dscale) {
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  need_bf16_mode(cc, xt);
  /* dlogits (rows ld apart) straight from the softmax, in the type both GEMMs
   * take: bf16 under bf16 */
  cudaDataType t = CUDA_R_32F;
  const void *wt = w, *xv = x;
  if (cc->matmul_bf16) {
    dt_cuda_softmax_xent_bf16(cc, losses, scratch, logits, lt, targets, n, v, ld, dscale);
    t = CUDA_R_16BF;
  } else {
    dt_cuda_softmax_xent(ctx, losses, (float *)scratch, logits, lt, targets, n, v, ld, dscale);
  }
  if (n <= 0 || c <= 0 || v <= 0) return;
  if (cc->matmul_bf16) {
    wt = bf16_operand(cc, 1, w, DT_F32, (size_t)v * c);
    if (dw) xv = bf16_operand(cc, 0, x, xt, (size_t)n * c);
  }
  if (dx) /* dx (N,C) = dlogits (N,V) @ w (V,C) */
    gemm_rm_ex(cc, 0, 0, n, c, v, scratch, ld, wt, c, t, 0.0f, dx, c, CUDA_R_32F);
  if (dw) /* dw (V,C) += dlogits^T (V,N) @ x (N,C) */
    gemm_rm_ex(cc, 1, 0, v, c, n, scratch, ld, xv, c, t, 1.0f, dw, c, CUDA_R_32F);
}
