/* embedding.cu: token + position embedding on the GPU. The backward is
 * deterministic without float atomics: a stable radix sort (CUB) orders the
 * (b,t) positions by token, then each run of equal tokens is summed in
 * position order into its dwte row by one block per column slice, which is
 * also the CPU reference's order, so both backends give the same bits. */
#include <cub/device/device_radix_sort.cuh>
#include <math.h>

#include "cuda_common.h"
#include "embedding.h"

#define EMB_THREADS 256
#define EMB_UNROLL 8 /* rows of a run loaded together */
#define EMB_ALIGN 256 /* bytes; every piece of the workspace starts on this */

/* out (B,T,C): one element per grid-stride step; wte holds vocabulary rows
 * [v0, v0+V). A token outside them: NaN when the table is whole (part = 0),
 * a zero row (plus wpe) in a vocabulary-parallel part. */
static __global__ void embedding_fwd_kernel(float *out, const int32_t *tokens, const float *wte,
                                            const float *wpe, int T, int C, int v0, int V,
                                            int part, size_t total) {
  DT_GRID_STRIDE(k, total) {
    const size_t bt = k / (size_t)C, c = k % (size_t)C;
    const long long tok = (long long)tokens[bt] - v0;
    const float p = wpe ? wpe[(bt % (size_t)T) * C + c] : 0.0f;
    if (tok < 0 || tok >= V) {
      out[k] = part ? p : __int_as_float(0x7fc00000); /* NaN: a bad token must show */
      continue;
    }
    const float e = wte[(size_t)tok * C + c];
    out[k] = wpe ? e + p : e;
  }
}

/* sort input: key = token - v0 (V for one outside the rows, sorted last and
 * skipped), value = position */
static __global__ void embedding_keys_kernel(uint32_t *keys, int32_t *pos, const int32_t *tokens,
                                             int v0, int V, size_t n) {
  DT_GRID_STRIDE(i, n) {
    const long long tok = (long long)tokens[i] - v0;
    keys[i] = (tok >= 0 && tok < V) ? (uint32_t)tok : (uint32_t)V;
    pos[i] = (int32_t)i;
  }
}

/* Block (x = run start candidate r, y = column slice): the first position of
 * each run of equal sorted keys adds the run's dout rows, in position order. */
static __global__ void embedding_bwd_wte_kernel(float *dwte, const float *dout,
                                                const uint32_t *keys, const int32_t *pos, int C,
                                                int V, int n) {
  const int r = blockIdx.x;
  const uint32_t key = keys[r];
  if ((r > 0 && keys[r - 1] == key) || key >= (uint32_t)V) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float *d = dwte + (size_t)key * C + c;
  float acc = *d;
  /* The sum stays serial, in position order (the CPU's bits), but the loads
   * of 8 rows at a time are independent, so a run as long as a frequent
   * token's (hundreds of rows) waits on memory once per 8 rows, not per row.
   * The keys are sorted: once one row is out of the run, so are the rest. */
  for (int s = r;; s += EMB_UNROLL) {
    float v[EMB_UNROLL];
    bool in[EMB_UNROLL];
#pragma unroll
    for (int j = 0; j < EMB_UNROLL; j++) {
      in[j] = s + j < n && keys[s + j] == key;
      v[j] = in[j] ? dout[(size_t)pos[s + j] * C + c] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < EMB_UNROLL; j++)
      if (in[j]) acc += v[j];
    if (!in[EMB_UNROLL - 1]) break;
  }
  *d = acc;
}

/* dwpe rows t < T: element (t,c) adds dout[b,t,c] for b = 0..B-1 in order */
static __global__ void embedding_bwd_wpe_kernel(float *dwpe, const float *dout, int B, int T,
                                                int C) {
  const size_t tc_total = (size_t)T * C;
  DT_GRID_STRIDE(tc, tc_total) {
    float acc = dwpe[tc];
    for (int b = 0; b < B; b++) acc += dout[(size_t)b * tc_total + tc];
    dwpe[tc] = acc;
  }
}

static size_t align_up(size_t x) { return (x + EMB_ALIGN - 1) / EMB_ALIGN * EMB_ALIGN; }

/* bits that hold every key 0..V */
static int key_bits(int V) {
  int bits = 1;
  while (bits < 32 && ((uint64_t)1 << bits) <= (uint64_t)V) bits++;
  return bits;
}

/* workspace: keys in/out, positions in/out (n each), then CUB's temporary storage */
static size_t cub_temp_bytes(int n, int V) {
  size_t temp = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, temp, (const uint32_t *)NULL,
                                             (uint32_t *)NULL, (const int32_t *)NULL,
                                             (int32_t *)NULL, n, 0, key_bits(V)));
  return temp;
}

extern "C" size_t dt_cuda_embedding_backward_workspace(void *ctx, int B, int T, int V) {
  (void)ctx;
  const int n = B * T;
  if (B <= 0 || T <= 0) return 0;
  return 2 * align_up(sizeof(uint32_t) * n) + 2 * align_up(sizeof(int32_t) * n) +
         align_up(cub_temp_bytes(n, V));
}

static void forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                    const float *wpe, int B, int T, int C, int v0, int V, int part) {
  const size_t total = (size_t)B * T * C;
  if (B <= 0 || T <= 0 || C <= 0) return;
  embedding_fwd_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                         DT_CUDA_CTX(ctx)->stream>>>(out, tokens, wte, wpe, T, C, v0, V, part,
                                                     total);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_embedding_forward(void *ctx, float *out, const int32_t *tokens,
                                          const float *wte, const float *wpe, int B, int T,
                                          int C, int V) {
  forward(ctx, out, tokens, wte, wpe, B, T, C, 0, V, 0);
}

extern "C" void dt_cuda_embedding_forward_part(void *ctx, float *out, const int32_t *tokens,
                                               const float *wte, const float *wpe, int B, int T,
                                               int C, int v0, int V) {
  forward(ctx, out, tokens, wte, wpe, B, T, C, v0, V, 1);
}

extern "C" void dt_cuda_embedding_backward(void *ctx, float *dwte, float *dwpe,
                                           const float *dout, const int32_t *tokens, int B,
                                           int T, int C, int V, void *ws) {
  dt_cuda_embedding_backward_part(ctx, dwte, dwpe, dout, tokens, B, T, C, 0, V, ws);
}

extern "C" void dt_cuda_embedding_backward_part(void *ctx, float *dwte, float *dwpe,
                                                const float *dout, const int32_t *tokens, int B,
                                                int T, int C, int v0, int V, void *ws) {
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  if (B <= 0 || T <= 0 || C <= 0) return;
  if (dwpe) {
    const size_t tc = (size_t)T * C;
    embedding_bwd_wpe_kernel<<<dt_cuda_blocks(tc, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, st>>>(
        dwpe, dout, B, T, C);
    CUDA_LAUNCH_CHECK();
  }
  if (!dwte) return;
  const int n = B * T;
  char *w = (char *)ws;
  uint32_t *keys_in = (uint32_t *)w, *keys = (uint32_t *)(w += align_up(sizeof(uint32_t) * n));
  int32_t *pos_in = (int32_t *)(w += align_up(sizeof(uint32_t) * n));
  int32_t *pos = (int32_t *)(w += align_up(sizeof(int32_t) * n));
  void *temp = (void *)(w += align_up(sizeof(int32_t) * n));
  size_t temp_bytes = cub_temp_bytes(n, V);
  embedding_keys_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, st>>>(
      keys_in, pos_in, tokens, v0, V, (size_t)n);
  CUDA_LAUNCH_CHECK();
  /* stable: equal tokens keep their position order */
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, pos_in, pos, n, 0,
                                             key_bits(V), st));
  embedding_bwd_wte_kernel<<<dim3(n, (C + EMB_THREADS - 1) / EMB_THREADS), EMB_THREADS, 0, st>>>(
      dwte, dout, keys, pos, C, V, n);
  CUDA_LAUNCH_CHECK();
}
