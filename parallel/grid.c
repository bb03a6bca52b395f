/* grid.c: rank coordinates and sub-communicators. */
#include "grid.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dt_grid_init(dt_grid *g, int dp, int tp, int pp, dt_error *err) {
  memset(g, 0, sizeof *g);
  MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g->size);
  /* dp = 0: every rank tensor and pipeline parallelism leave, as torchrun
   * and Megatron-LM infer it, so `mpirun -np N` sets the data-parallel size */
  if (dp == 0 && g->size % ((long)tp * pp) != 0)
    return dt_error_set(err,
                        "this job has %d rank%s, which [parallel] tp*pp = %d*%d = %ld does not "
                        "divide (parallel.dp = 0 takes the data-parallel size from the job: "
                        "start it with a multiple of %ld ranks, or set parallel.dp)",
                        g->size, g->size == 1 ? "" : "s", tp, pp, (long)tp * pp, (long)tp * pp);
  if (dp == 0) dp = g->size / (tp * pp);
  if ((long)dp * tp * pp != g->size)
    return dt_error_set(err,
                        "this job has %d rank%s, but [parallel] dp*tp*pp = %d*%d*%d = %ld "
                        "(start it with mpirun -np %ld, or change the layout)",
                        g->size, g->size == 1 ? "" : "s", dp, tp, pp, (long)dp * tp * pp,
                        (long)dp * tp * pp);
  g->dp = dp, g->tp = tp, g->pp = pp;
  g->tp_rank = g->rank % tp;
  g->dp_rank = (g->rank / tp) % dp;
  g->pp_rank = g->rank / (tp * dp);
  /* colour = the coordinates that stay fixed within the group */
  MPI_Comm_split(MPI_COMM_WORLD, g->pp_rank * tp + g->tp_rank, g->dp_rank, &g->dp_comm);
  MPI_Comm_split(MPI_COMM_WORLD, g->pp_rank * dp + g->dp_rank, g->tp_rank, &g->tp_comm);
  MPI_Comm_split(MPI_COMM_WORLD, g->dp_rank * tp + g->tp_rank, g->pp_rank, &g->pp_comm);
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g->rank, MPI_INFO_NULL,
                      &g->node_comm);
  MPI_Comm_rank(g->node_comm, &g->local_rank);
  MPI_Comm_size(g->node_comm, &g->local_size);
  if (gethostname(g->host, sizeof g->host) != 0) snprintf(g->host, sizeof g->host, "?");
  g->host[sizeof g->host - 1] = 0;
  return 0;
}

void dt_grid_free(dt_grid *g) {
  MPI_Comm *cs[] = {&g->dp_comm, &g->tp_comm, &g->pp_comm, &g->node_comm};
  for (size_t i = 0; i < DT_ARRAY_LEN(cs); i++)
    if (*cs[i] != MPI_COMM_NULL && *cs[i] != 0) MPI_Comm_free(cs[i]);
}

void dt_grid_print(const dt_grid *g, const char *device, FILE *f) {
  enum { LINE = 256 };
  char line[LINE];
  snprintf(line, sizeof line, "%5d  %-20.20s %5d  dp %-3d tp %-3d pp %-3d  %s", g->rank, g->host,
           g->local_rank, g->dp_rank, g->tp_rank, g->pp_rank, device);
  char *all = g->rank == 0 ? dt_malloc((size_t)g->size * LINE) : NULL;
  MPI_Gather(line, LINE, MPI_CHAR, all, LINE, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (g->rank == 0) {
    fprintf(f, "layout: world %d = dp %d x tp %d x pp %d\n", g->size, g->dp, g->tp, g->pp);
    fprintf(f, " rank  host                 local  coordinates            device\n");
    for (int r = 0; r < g->size; r++) fprintf(f, "%s\n", all + (size_t)r * LINE);
    fflush(f);
    free(all);
  }
}
