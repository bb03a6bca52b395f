/* prep.c: dtrain-prep, which turns source data sets into the HDF5 shards
 * dtrain reads (and shows what a shard holds). No MPI: one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "dt.h"
#include "h5.h"

static const char *usage =
    "usage: dtrain-prep COMMAND ARGS...\n"
    "\n"
    "Turns source data sets into the HDF5 shards dtrain trains on.\n"
    "\n"
    "commands:\n"
    "  mnist SRC OUT     read the four MNIST IDX files (NAME or NAME.gz) in SRC and\n"
    "                    write OUT/train.h5 and OUT/test.h5 (scripts/download_mnist.sh\n"
    "                    fetches them)\n"
    "  inspect FILE.h5   print an image shard's count, dims, classes, class counts\n"
    "                    and first labels\n"
    "\n"
    "options:\n"
    "  -h, --help        show this help\n"
    "\n"
    "Bad input prints one line 'dtrain-prep: error: ...' and exits with status 2.\n";

static int fail(const char *msg) {
  fprintf(stderr, "dtrain-prep: error: %s\n", msg);
  return DT_EXIT_USER;
}

static int cmd_mnist(const char *src, const char *out) {
  dt_error err;
  double t0 = dt_now();
  if (dt_prep_mnist(src, out, &err)) return fail(err.msg);
  double secs = dt_now() - t0;
  const char *names[] = {"train.h5", "test.h5"};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, names[i]);
    hid_t f = dt_h5_open(path, &err);
    int64_t count = -1, dims[DT_H5_MAXDIMS] = {0};
    int nd = 0;
    if (f < 0 || dt_h5_attr_read_i64(f, "/", "count", 1, &count, &err) ||
        dt_h5_dims(f, "/images", &nd, dims, &err)) {
      dt_h5_close(f);
      return fail(err.msg);
    }
    dt_h5_close(f);
    struct stat st;
    long long bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    printf("wrote %s: %lld images %lldx%lld, %lld bytes\n", path, (long long)count,
           (long long)dims[1], (long long)dims[2], bytes);
  }
  printf("done in %.2f s\n", secs);
  return 0;
}

static int cmd_inspect(const char *path) {
  dt_error err;
  dt_image_set s;
  if (dt_image_set_load(&s, path, 0, &err)) return fail(err.msg);
  int64_t hist[256] = {0};
  double sum = 0;
  for (int64_t i = 0; i < s.n; i++) hist[s.labels[i]]++;
  for (int64_t i = 0; i < s.n * s.h * s.w; i++) sum += s.images[i];
  printf("file: %s\n", path);
  printf("count: %lld\n", (long long)s.n);
  printf("dims: %lld %d %d\n", (long long)s.n, s.h, s.w);
  printf("num_classes: %d\n", s.num_classes);
  printf("class_counts:");
  for (int c = 0; c < s.num_classes; c++) printf(" %lld", (long long)hist[c]);
  printf("\nfirst_labels:");
  for (int64_t i = 0; i < DT_MIN(s.n, 10); i++) printf(" %d", s.labels[i]);
  printf("\npixel_mean: %.4f\n", sum / (double)(s.n * s.h * s.w));
  hid_t f = dt_h5_open(path, &err);
  char *source = f >= 0 ? dt_h5_attr_read_str(f, "/", "source", &err) : NULL;
  if (source) printf("source: %s\n", source);
  free(source);
  dt_h5_close(f);
  dt_image_set_free(&s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return DT_EXIT_USER;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  if (!strcmp(cmd, "mnist")) {
    if (argc != 4) return fail("mnist takes two arguments: SRC OUT (see dtrain-prep --help)");
    return cmd_mnist(argv[2], argv[3]);
  }
  if (!strcmp(cmd, "inspect")) {
    if (argc != 3) return fail("inspect takes one argument: FILE.h5 (see dtrain-prep --help)");
    return cmd_inspect(argv[2]);
  }
  char msg[256];
  snprintf(msg, sizeof msg, "unknown command '%s' (see dtrain-prep --help)", cmd);
  return fail(msg);
}
