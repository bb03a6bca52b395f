/* checks.h: one checker per library, each printing
 * "[rank r] <lib> error: <message> at file:line in func: <call>" and taking
 * the job down (dt_fatal). Include the library's own header first; the
 * checkers for libraries not included are simply not defined. */
#ifndef DT_CHECKS_H
#define DT_CHECKS_H

#include "dt.h"

#ifdef MPI_VERSION
#define MPI_CHECK(x)                                                          \
  do {                                                                        \
    int rc_ = (x);                                                            \
    if (rc_ != MPI_SUCCESS) dt_fatal_mpi(rc_, __FILE__, __LINE__, __func__, #x); \
  } while (0)
#endif

#ifdef __CUDA_RUNTIME_H__
#define CUDA_CHECK(x)                                                             \
  do {                                                                            \
    cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess)                                                        \
      dt_fatal("CUDA", cudaGetErrorString(e_), __FILE__, __LINE__, __func__, #x); \
  } while (0)
#endif

#ifdef NCCL_H_
#define NCCL_CHECK(x)                                                             \
  do {                                                                            \
    ncclResult_t r_ = (x);                                                        \
    if (r_ != ncclSuccess)                                                        \
      dt_fatal("NCCL", ncclGetErrorString(r_), __FILE__, __LINE__, __func__, #x); \
  } while (0)
#endif

#endif
