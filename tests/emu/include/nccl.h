/* nccl.h for the CPU emulation (tests/emu): NCCL's calls that
 * parallel/comm_nccl.c makes, carried out over MPI, so that file runs with
 * several ranks and no GPU. Emulated streams run everything at once, so each
 * call completes before it returns, except send/recv inside a group, which
 * start there and finish at ncclGroupEnd (NCCL lets a rank post its sends and
 * receives in any order within a group).
 *
 * Semantics follow NCCL's documentation: counts are elements; reduce-scatter
 * gives rank r block r of the sum; all-gather puts rank r's block at r;
 * broadcast and reduce take a root; in place means recvbuff == sendbuff (for
 * all-gather, sendbuff == recvbuff + rank * count). bf16 and fp16 are summed
 * in fp32 and rounded back, which is exact for the small integers the tests
 * use. A communicator is made by ncclCommInitRank from the id that rank 0's
 * ncclGetUniqueId gave: every rank of MPI_COMM_WORLD must create its
 * communicators in the same order (the emulation splits MPI_COMM_WORLD by
 * the id), which holds for dtrain's one data-parallel group. */
#pragma once
#define NCCL_H_ /* what runtime/checks.h looks for */
#define OMPI_SKIP_MPICXX 1 /* MPI's C API alone, as the C files see it */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#define NCCL_MAJOR 2
#define NCCL_MINOR 21
#define NCCL_PATCH 0
#define NCCL_VERSION(X, Y, Z) \
  (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : (X) * 10000 + (Y) * 100 + (Z))
#define NCCL_VERSION_CODE NCCL_VERSION(NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH)

typedef enum {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7
} ncclResult_t;
typedef enum {
  ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
  ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9
} ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
typedef struct { char internal[128]; } ncclUniqueId;

struct emu_nccl_comm {
  MPI_Comm mpi;
  int rank, size;
};
typedef emu_nccl_comm *ncclComm_t;

namespace emu_nccl {
inline int &group_depth() {
  static int d = 0;
  return d;
}
inline std::vector<MPI_Request> &pending() {
  static std::vector<MPI_Request> p;
  return p;
}
inline size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
  }
}
inline bool half_type(ncclDataType_t t) { return t == ncclFloat16 || t == ncclBfloat16; }
/* the MPI type a reduction runs in (16-bit floats: fp32) */
inline MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: return MPI_INT8_T;
    case ncclUint8: return MPI_UINT8_T;
    case ncclInt32: return MPI_INT32_T;
    case ncclUint32: return MPI_UINT32_T;
    case ncclInt64: return MPI_INT64_T;
    case ncclUint64: return MPI_UINT64_T;
    case ncclFloat64: return MPI_DOUBLE;
    default: return MPI_FLOAT;
  }
}
inline MPI_Op mpi_op(ncclRedOp_t op) {
  return op == ncclMax ? MPI_MAX : op == ncclMin ? MPI_MIN : op == ncclProd ? MPI_PROD : MPI_SUM;
}
inline float half_to_float(uint16_t h, ncclDataType_t t) {
  if (t == ncclBfloat16) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  int e = (h >> 10) & 31, m = h & 1023;
  float v = e == 0 ? std::ldexp((float)m, -24)
            : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 1024), e - 25);
  return (h & 0x8000) ? -v : v;
}
inline uint16_t float_to_half(float f, ncclDataType_t t) {
  if (t == ncclBfloat16) { /* round to nearest even */
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  }
  /* fp16 of an exactly representable value (what the tests reduce) */
  uint16_t s = std::signbit(f) ? 0x8000 : 0;
  f = std::fabs(f);
  if (f == 0) return s;
  int e;
  float m = std::frexp(f, &e); /* f = m * 2^e, m in [0.5, 1) */
  if (e - 1 < -14) return (uint16_t)(s | (uint16_t)std::lrint(std::ldexp(f, 24)));
  return (uint16_t)(s | (uint16_t)((e - 1 + 15) << 10) |
                    (uint16_t)(std::lrint(std::ldexp(m, 11)) & 1023));
}
/* a 16-bit float buffer widened to fp32, and narrowed back */
inline std::vector<float> widen(const void *p, size_t n, ncclDataType_t t) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = half_to_float(((const uint16_t *)p)[i], t);
  return v;
}
inline void narrow(const std::vector<float> &v, void *p, ncclDataType_t t) {
  for (size_t i = 0; i < v.size(); i++) ((uint16_t *)p)[i] = float_to_half(v[i], t);
}
inline ncclResult_t check(int rc) { return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }
}  // namespace emu_nccl

inline const char *ncclGetErrorString(ncclResult_t r) {
  return r == ncclSuccess ? "no error" : "emulated NCCL error";
}
inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  std::memset(id, 0, sizeof *id);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::memcpy(id->internal, &rank, sizeof rank); /* the split colour */
  return ncclSuccess;
}
inline ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
  int colour;
  std::memcpy(&colour, id.internal, sizeof colour);
  auto *c = new emu_nccl_comm;
  if (MPI_Comm_split(MPI_COMM_WORLD, colour, rank, &c->mpi) != MPI_SUCCESS) return ncclSystemError;
  MPI_Comm_rank(c->mpi, &c->rank);
  MPI_Comm_size(c->mpi, &c->size);
  if (c->size != nranks || c->rank != rank) return ncclInvalidUsage;
  *comm = c;
  return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
  MPI_Comm_free(&c->mpi);
  delete c;
  return ncclSuccess;
}
inline ncclResult_t ncclCommAbort(ncclComm_t c) { return ncclCommDestroy(c); }
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t *r) {
  *r = ncclSuccess;
  return ncclSuccess;
}
inline ncclResult_t ncclGroupStart() {
  emu_nccl::group_depth()++;
  return ncclSuccess;
}
inline ncclResult_t ncclGroupEnd() {
  if (--emu_nccl::group_depth() > 0) return ncclSuccess;
  auto &p = emu_nccl::pending();
  int rc = p.empty() ? MPI_SUCCESS
                     : MPI_Waitall((int)p.size(), p.data(), MPI_STATUSES_IGNORE);
  p.clear();
  return emu_nccl::check(rc);
}

inline ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t,
                                  ncclRedOp_t op, ncclComm_t c, cudaStream_t) {
  using namespace emu_nccl;
  if (half_type(t)) {
    std::vector<float> v = widen(send, count, t);
    int rc = MPI_Allreduce(MPI_IN_PLACE, v.data(), (int)count, MPI_FLOAT, mpi_op(op), c->mpi);
    narrow(v, recv, t);
    return check(rc);
  }
  return check(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_type(t),
                             mpi_op(op), c->mpi));
}
inline ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t t,
                               ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t) {
  using namespace emu_nccl;
  bool me = c->rank == root;
  if (half_type(t)) {
    std::vector<float> v = widen(send, count, t), r(me ? count : 0);
    int rc = MPI_Reduce(v.data(), me ? r.data() : nullptr, (int)count, MPI_FLOAT, mpi_op(op),
                        root, c->mpi);
    if (me) narrow(r, recv, t);
    return check(rc);
  }
  return check(MPI_Reduce(me && send == recv ? MPI_IN_PLACE : send, me ? recv : nullptr,
                          (int)count, mpi_type(t), mpi_op(op), root, c->mpi));
}
inline ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount,
                                      ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                                      cudaStream_t) {
  using namespace emu_nccl;
  if (half_type(t)) {
    std::vector<float> v = widen(send, recvcount * c->size, t), r(recvcount);
    int rc = MPI_Reduce_scatter_block(v.data(), r.data(), (int)recvcount, MPI_FLOAT, mpi_op(op),
                                      c->mpi);
    narrow(r, recv, t);
    return check(rc);
  }
  /* NCCL's in place is recvbuff == sendbuff + rank * recvcount: MPI wants a copy */
  std::vector<char> tmp(recvcount * type_size(t));
  int rc = MPI_Reduce_scatter_block(send, tmp.data(), (int)recvcount, mpi_type(t), mpi_op(op),
                                    c->mpi);
  std::memcpy(recv, tmp.data(), tmp.size());
  return check(rc);
}
inline ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount,
                                  ncclDataType_t t, ncclComm_t c, cudaStream_t) {
  using namespace emu_nccl;
  size_t b = sendcount * type_size(t);
  bool inplace = (const char *)send == (const char *)recv + (size_t)c->rank * b;
  return check(MPI_Allgather(inplace ? MPI_IN_PLACE : send, (int)b, MPI_BYTE, recv, (int)b,
                             MPI_BYTE, c->mpi));
}
inline ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t,
                                  int root, ncclComm_t c, cudaStream_t) {
  size_t b = count * emu_nccl::type_size(t);
  if (c->rank == root && send != recv) std::memmove(recv, send, b);
  return emu_nccl::check(MPI_Bcast(recv, (int)b, MPI_BYTE, root, c->mpi));
}
inline ncclResult_t ncclSend(const void *buf, size_t count, ncclDataType_t t, int peer,
                             ncclComm_t c, cudaStream_t) {
  int b = (int)(count * emu_nccl::type_size(t));
  if (emu_nccl::group_depth() == 0)
    return emu_nccl::check(MPI_Send(buf, b, MPI_BYTE, peer, 0, c->mpi));
  MPI_Request r;
  int rc = MPI_Isend(buf, b, MPI_BYTE, peer, 0, c->mpi, &r);
  emu_nccl::pending().push_back(r);
  return emu_nccl::check(rc);
}
inline ncclResult_t ncclRecv(void *buf, size_t count, ncclDataType_t t, int peer, ncclComm_t c,
                             cudaStream_t) {
  int b = (int)(count * emu_nccl::type_size(t));
  if (emu_nccl::group_depth() == 0)
    return emu_nccl::check(MPI_Recv(buf, b, MPI_BYTE, peer, 0, c->mpi, MPI_STATUS_IGNORE));
  MPI_Request r;
  int rc = MPI_Irecv(buf, b, MPI_BYTE, peer, 0, c->mpi, &r);
  emu_nccl::pending().push_back(r);
  return emu_nccl::check(rc);
}
