/* dtrain.c: the `dtrain` command: parse the config, start MPI, train. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/backend.h"
#include "../runtime/config.h"
#include "../runtime/dt.h"
#include "plan.h"
#include "train.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtrain CONFIG.ini [section.key=value ...]\n"
          "       dtrain --help-config      every config key with its type, default and meaning\n"
          "       dtrain --print-config CONFIG.ini [overrides]   the resolved config, then exit\n"
          "       dtrain --print-layout CONFIG.ini [overrides]   which rank is where, then exit\n"
          "       dtrain --eval CONFIG.ini [overrides]   evaluate the checkpoint it would resume\n"
          "                 (checkpoint.resume: auto, best, PATH; else model.init_from or the\n"
          "                 initial weights) on the val/test split, then exit\n"
          "       dtrain --print-memory[=GIB] CONFIG.ini [overrides]   each rank's memory for\n"
          "                 the layout, planned without a GPU; =GIB: the largest micro-batch\n"
          "                 whose busiest rank fits in GIB GiB\n"
          "       dtrain --version\n"
          "\n"
          "Trains the model CONFIG.ini describes. Overrides replace keys of the file, e.g.\n"
          "  dtrain configs/lenet5-mnist.ini train.epochs=1 train.device=cpu\n"
          "Metrics go to <log.dir>/metrics.jsonl and TensorBoard event files; checkpoints to\n"
          "<checkpoint.dir> (default <log.dir>/checkpoints), resumed automatically\n"
          "(checkpoint.resume=auto). Bad input exits with code 2. log.profile=true adds a\n"
          "table of where a step's time goes, kernel by kernel (<log.dir>/profile.txt).\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--help-config")) {
    dt_config_print_help(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("dtrain 0.1.0 (CUDA backend %s)\n", dt_cuda_built() ? "built" : "not built");
    return 0;
  }
  int print_only = !strcmp(argv[1], "--print-config");
  int print_layout = !strcmp(argv[1], "--print-layout");
  int eval_only = !strcmp(argv[1], "--eval");
  int print_memory = !strncmp(argv[1], "--print-memory", 14);
  double limit_gib = 0;
  if (print_memory && argv[1][14]) {
    char *end = NULL;
    limit_gib = argv[1][14] == '=' ? strtod(argv[1] + 15, &end) : 0;
    if (!end || *end || !(limit_gib > 0)) {
      fprintf(stderr, "dtrain: error: %s: expected --print-memory or --print-memory=GIB with "
              "GIB a positive number of GiB\n", argv[1]);
      return 2;
    }
  }
  int first = print_only || print_layout || print_memory || eval_only ? 2 : 1;
  if (first >= argc || argv[first][0] == '-') {
    fprintf(stderr, "dtrain: error: %s is not a config file\n", first < argc ? argv[first] : "(nothing)");
    usage(stderr);
    return 2;
  }

  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  dt_set_rank(rank);

  dt_config cfg;
  dt_error err;
  if (dt_config_load(&cfg, argv[first], argc - first - 1, argv + first + 1, &err))
    dt_die_user_all("%s", err.msg);
  if (print_memory) {
    int code = dt_print_memory(&cfg, limit_gib);
    MPI_Finalize();
    return code;
  }
  if (print_layout) {
    int code = dt_print_layout(&cfg);
    MPI_Finalize();
    return code;
  }
  char *text = dt_config_to_text(&cfg);
  if (rank == 0) {
    printf("# dtrain: resolved config of %s\n%s", cfg.path, text);
    fflush(stdout);
  }
  free(text);
  int code = print_only ? 0 : eval_only ? dt_evaluate(&cfg) : dt_train(&cfg);
  MPI_Finalize();
  return code;
}
