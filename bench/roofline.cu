/* roofline.cu: the two ceilings of the GPU it runs on, measured once, as
 * the device method asks before any kernel is judged: device-memory
 * bandwidth (a large device-to-device copy, bytes read plus bytes written)
 * and the bf16 matmul rate (cuBLAS GemmEx, bf16 operands, fp32
 * accumulation and output, as dtrain's linear layers run), on a large
 * square product and on gpt-124m's MLP shape. Inputs are random, never
 * zeros (a product of zeros can run faster than real data); each figure is
 * the median of timed repeats after a warm-up, with CUDA events.
 *
 * Usage: build/bench/roofline   (prints a table, then the bench/gpt_floor.py
 * options that use the measured rates) */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                            \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      fprintf(stderr, "roofline: %s: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__, \
              __LINE__);                                                                 \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)
#define CB(x)                                                                              \
  do {                                                                                     \
    cublasStatus_t s_ = (x);                                                               \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      fprintf(stderr, "roofline: %s: %s (%s:%d)\n", #x, cublasGetStatusString(s_), __FILE__, \
              __LINE__);                                                                   \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

/* values in [-1, 1) from a hash of the index */
static __global__ void fill_bf16(__nv_bfloat16 *x, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)blockDim.x * gridDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15;
    x[i] = __float2bfloat16((float)(h >> 8) / 8388608.0f - 1.0f);
  }
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* median ms of `reps` timed runs of what `run` launches (after 3 warm-ups) */
static float median_ms(void (*run)(void *), void *arg, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; i++) run(arg);
  float *t = (float *)malloc(sizeof(float) * reps);
  for (int i = 0; i < reps; i++) {
    CK(cudaEventRecord(a));
    run(arg);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  qsort(t, reps, sizeof *t, cmp_float);
  const float m = t[reps / 2];
  free(t);
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return m;
}

typedef struct copy_arg {
  void *dst;
  const void *src;
  size_t bytes;
} copy_arg;
static void run_copy(void *p) {
  copy_arg *c = (copy_arg *)p;
  CK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice));
}

typedef struct gemm_arg {
  cublasHandle_t h;
  int m, n, k;
  const __nv_bfloat16 *a, *b;
  float *c;
} gemm_arg;
/* row-major C (M,N) = A (M,K) @ B (N,K)^T, as a linear layer's forward */
static void run_gemm(void *p) {
  gemm_arg *g = (gemm_arg *)p;
  const float one = 1.0f, zero = 0.0f;
  CB(cublasGemmEx(g->h, CUBLAS_OP_T, CUBLAS_OP_N, g->n, g->m, g->k, &one, g->b, CUDA_R_16BF,
                  g->k, g->a, CUDA_R_16BF, g->k, &zero, g->c, CUDA_R_32F, g->n,
                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

int main(void) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("# %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
         prop.multiProcessorCount);
  printf("%-44s %12s %10s\n", "what", "ms (median)", "rate");

  const size_t bytes = (size_t)1 << 30;
  copy_arg c = {NULL, NULL, bytes};
  CK(cudaMalloc(&c.dst, bytes));
  CK(cudaMalloc((void **)&c.src, bytes));
  fill_bf16<<<4096, 256>>>((__nv_bfloat16 *)c.src, bytes / 2, 1u);
  CK(cudaGetLastError());
  const float copy_ms = median_ms(run_copy, &c, 20);
  const double gbps = 2.0 * bytes / (copy_ms * 1e-3) / 1e9;
  printf("%-44s %12.3f %7.0f GB/s\n", "device-to-device copy, 1 GiB (read + write)", copy_ms,
         gbps);
  CK(cudaFree(c.dst));
  CK(cudaFree((void *)c.src));

  cublasHandle_t h;
  CB(cublasCreate(&h));
  const int shapes[][3] = {{8192, 8192, 8192}, {16384, 3072, 768}, {16384, 768, 3072}};
  double best = 0.0;
  for (int s = 0; s < 3; s++) {
    gemm_arg g = {h, shapes[s][0], shapes[s][1], shapes[s][2], NULL, NULL, NULL};
    const size_t na = (size_t)g.m * g.k, nb = (size_t)g.n * g.k;
    CK(cudaMalloc((void **)&g.a, na * sizeof(__nv_bfloat16)));
    CK(cudaMalloc((void **)&g.b, nb * sizeof(__nv_bfloat16)));
    CK(cudaMalloc((void **)&g.c, (size_t)g.m * g.n * sizeof(float)));
    fill_bf16<<<4096, 256>>>((__nv_bfloat16 *)g.a, na, 2u + s);
    fill_bf16<<<4096, 256>>>((__nv_bfloat16 *)g.b, nb, 7u + s);
    CK(cudaGetLastError());
    const float ms = median_ms(run_gemm, &g, 20);
    const double tf = 2.0 * g.m * g.n * g.k / (ms * 1e-3) / 1e12;
    char what[64];
    snprintf(what, sizeof what, "bf16 GEMM %d x %d x %d, fp32 out", g.m, g.n, g.k);
    printf("%-44s %12.3f %5.0f TFLOP/s\n", what, ms, tf);
    if (s == 0) best = tf;
    CK(cudaFree((void *)g.a));
    CK(cudaFree((void *)g.b));
    CK(cudaFree(g.c));
  }
  CB(cublasDestroy(h));
  printf("# bench/gpt_floor.py --tflops %.0f --gbps %.0f\n", best, gbps);
  return 0;
}
