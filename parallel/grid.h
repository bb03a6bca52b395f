/* grid.h: the rank grid world = dp x tp x pp and its sub-communicators.
 * Ranks are ordered tp fastest, then dp, then pp (as Megatron-LM does), so the
 * ranks of one tensor-parallel group sit on one node. */
#ifndef DT_GRID_H
#define DT_GRID_H

#include <mpi.h>
#include <stdio.h>

#include "../runtime/dt.h"

typedef struct dt_grid {
  int rank, size;                 /* in MPI_COMM_WORLD */
  int dp, tp, pp;
  int dp_rank, tp_rank, pp_rank;
  int local_rank, local_size;     /* on this node (MPI_Comm_split_type shared) */
  char host[64];
  MPI_Comm dp_comm, tp_comm, pp_comm, node_comm;
} dt_grid;

/* Builds the grid; dp = 0 is the world size over tp*pp; -1 with err when
 * dp*tp*pp != world size. Collective. */
int dt_grid_init(dt_grid *g, int dp, int tp, int pp, dt_error *err);
void dt_grid_free(dt_grid *g);

/* Rank 0 prints one line per rank: world rank, host, local rank, device, and
 * (dp, tp, pp) coordinates. `device` is this rank's device description.
 * Collective. */
void dt_grid_print(const dt_grid *g, const char *device, FILE *f);

#endif
