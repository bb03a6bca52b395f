/* comm.h: one communication interface over MPI and NCCL. A communicator is a
 * group of ranks (the world, or one axis of the rank grid). Buffers live on
 * the communicator's backend (host memory for the CPU backend, device memory
 * for CUDA; comm_mpi stages device buffers through pinned host memory).
 * Counts are elements. An operation is in place when send == recv (for
 * all-gather: when send == recv + rank*count; for reduce-scatter: when
 * recv == send + offset of this rank's block). Errors inside the library are
 * fatal (dt_fatal names the rank); they are never user input. */
#ifndef DT_COMM_H
#define DT_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "../runtime/backend.h"
#include "../kernels/kernels.h" /* dt_dtype */
#include "../runtime/dt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dt_redop { DT_SUM = 0, DT_MAX = 1, DT_MIN = 2 } dt_redop;

const char *dt_dtype_name(dt_dtype t);

/* bf16 / IEEE fp16 bit patterns <-> float, rounding to nearest even; NaN
 * stays NaN. */
float dt_bf16_to_float(uint16_t h);
uint16_t dt_float_to_bf16(float f);
float dt_f16_to_float(uint16_t h);
uint16_t dt_float_to_f16(float f);

typedef struct dt_comm *dt_comm_t;
typedef struct dt_comm_req *dt_comm_req_t; /* an operation in flight */

struct dt_comm {
  const char *kind;  /* "mpi" or "nccl" */
  int rank, size;
  MPI_Comm mpi;      /* the MPI communicator of the same group (always present) */
  dt_backend_t be;
  void *impl;
  /* blocking collectives; ordered after all work queued on be before the call */
  void (*allreduce)(dt_comm_t c, const void *send, void *recv, size_t count, dt_dtype t,
                    dt_redop op);
  /* send holds size*recvcount elements; rank r gets the reduction of block r */
  void (*reduce_scatter)(dt_comm_t c, const void *send, void *recv, size_t recvcount,
                         dt_dtype t, dt_redop op);
  /* as reduce_scatter with per-rank counts: rank r gets block r of
   * recvcounts[r] elements starting at sum(recvcounts[0..r)) in send */
  void (*reduce_scatterv)(dt_comm_t c, const void *send, void *recv, const size_t *recvcounts,
                          dt_dtype t, dt_redop op);
  /* recv holds size*sendcount elements; block r comes from rank r */
  void (*allgather)(dt_comm_t c, const void *send, void *recv, size_t sendcount, dt_dtype t);
  void (*allgatherv)(dt_comm_t c, const void *send, void *recv, const size_t *counts,
                     dt_dtype t);
  void (*broadcast)(dt_comm_t c, void *buf, size_t count, dt_dtype t, int root);
  void (*send)(dt_comm_t c, const void *buf, size_t count, dt_dtype t, int peer);
  void (*recv)(dt_comm_t c, void *buf, size_t count, dt_dtype t, int peer);
  /* sends scount elements to dst and receives rcount from src at once, so two
   * ranks that exchange with each other cannot both wait in a blocking send
   * (a pipeline stage passing activations forward while gradients come
   * back); dst or src < 0: that half is skipped */
  void (*sendrecv)(dt_comm_t c, const void *sendbuf, size_t scount, int dst, void *recvbuf,
                   size_t rcount, int src, dt_dtype t);
  void (*barrier)(dt_comm_t c);
  /* asynchronous variants: start now, complete at dt_comm_wait; buffers must
   * stay untouched until then. Work queued on be later is not ordered after
   * them until the wait. */
  dt_comm_req_t (*allreduce_async)(dt_comm_t c, const void *send, void *recv, size_t count,
                                   dt_dtype t, dt_redop op);
  dt_comm_req_t (*reduce_scatterv_async)(dt_comm_t c, const void *send, void *recv,
                                         const size_t *recvcounts, dt_dtype t, dt_redop op);
  dt_comm_req_t (*allgatherv_async)(dt_comm_t c, const void *send, void *recv,
                                    const size_t *counts, dt_dtype t);
  void (*wait)(dt_comm_t c, dt_comm_req_t req); /* completes and frees req */
  void (*destroy)(dt_comm_t c);
};

/* MPI communicator over `mpi` (duplicated); works on every backend. */
dt_comm_t dt_comm_mpi_create(MPI_Comm mpi, dt_backend_t be);

/* NCCL communicator over the same group (the unique id made on rank 0 of
 * `mpi` and broadcast over it); NULL with err when NCCL is not built, the
 * backend is not CUDA, or two ranks of the group share a GPU (NCCL refuses
 * that; use parallel.comm=mpi). */
dt_comm_t dt_comm_nccl_create(MPI_Comm mpi, dt_backend_t be, dt_error *err);

static inline void dt_comm_destroy(dt_comm_t c) {
  if (c) c->destroy(c);
}

#ifdef __cplusplus
}
#endif

#endif
