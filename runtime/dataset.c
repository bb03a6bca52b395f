/* dataset.c: MNIST IDX files -> HDF5 image shards, and loading them back.
 * Prep checks every input before it writes anything and publishes by
 * rename(2), so a failed run leaves earlier shards exactly as they were. */
#include "dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5.h"

#define DT_IMAGES_FORMAT "dtrain-images-v1"
#define MNIST_CLASSES 10

/* ---- prep ---- */

/* One split's inputs, read and checked. */
typedef struct mnist_split {
  const char *name;            /* "train" / "test" */
  char img_path[PATH_MAX];
  char lbl_path[PATH_MAX];
  int64_t n, h, w;
  uint8_t *images, *labels;
} mnist_split;

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* Finds SRC/NAME or SRC/NAME.gz. */
static int find_source(const char *src, const char *name, char *out, dt_error *err) {
  struct stat st;
  if (snprintf(out, PATH_MAX, "%s/%s.gz", src, name) >= PATH_MAX)
    return dt_error_set(err, "%s: path too long", src);
  out[strlen(out) - 3] = '\0';
  if (stat(out, &st) == 0) return 0;
  strcat(out, ".gz");
  if (stat(out, &st) == 0) return 0;
  return dt_error_set(err, "%s: no %s or %s.gz there (MNIST needs train-images-idx3-ubyte, "
                      "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
                      "each raw or .gz)", src, name, name);
}

static int read_split(const char *src, mnist_split *s, const char *img_name,
                      const char *lbl_name, dt_error *err) {
  int nd;
  int64_t idims[3], ldims[3];
  if (find_source(src, img_name, s->img_path, err) || find_source(src, lbl_name, s->lbl_path, err))
    return -1;
  if (dt_idx_read(s->img_path, 2051, &nd, idims, &s->images, err)) return -1;
  if (dt_idx_read(s->lbl_path, 2049, &nd, ldims, &s->labels, err)) return -1;
  if (idims[0] != ldims[0])
    return dt_error_set(err, "%s: %lld images, but %s has %lld labels", s->img_path,
                        (long long)idims[0], s->lbl_path, (long long)ldims[0]);
  s->n = idims[0];
  s->h = idims[1];
  s->w = idims[2];
  for (int64_t i = 0; i < s->n; i++)
    if (s->labels[i] >= MNIST_CLASSES)
      return dt_error_set(err, "%s: label %d at index %lld is out of range [0,%d)", s->lbl_path,
                          s->labels[i], (long long)i, MNIST_CLASSES);
  return 0;
}

static int mkdir_p(const char *dir, dt_error *err) {
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) return dt_error_set(err, "%s: bad output directory name", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char c = path[i];
    path[i] = '\0';
    struct stat st;
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return dt_error_set(err, "%s: cannot create directory: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
      return dt_error_set(err, "%s: exists and is not a directory", path);
    path[i] = c;
  }
  return 0;
}

static int write_split(const mnist_split *s, const char *tmp, dt_error *err) {
  hid_t f = dt_h5_create(tmp, err);
  if (f < 0) return -1;
  char source[2 * PATH_MAX];
  snprintf(source, sizeof source, "MNIST IDX: %s, %s", base_name(s->img_path),
           base_name(s->lbl_path));
  int64_t idims[3] = {s->n, s->h, s->w}, count = s->n, classes = MNIST_CLASSES;
  int rc = dt_h5_write(f, "/images", H5T_NATIVE_UINT8, 3, idims, s->images, 1, err);
  if (!rc) rc = dt_h5_write(f, "/labels", H5T_NATIVE_UINT8, 1, &count, s->labels, 1, err);
  if (!rc) rc = dt_h5_attr_write_str(f, "/", "format", DT_IMAGES_FORMAT, err);
  if (!rc) rc = dt_h5_attr_write_str(f, "/", "source", source, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "count", 1, &count, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "num_classes", 1, &classes, err);
  /* Closing flushes: a full disk shows up here, not earlier. */
  if (H5Fclose(f) < 0 && !rc) rc = dt_error_set(err, "%s: cannot finish writing (disk full?)", tmp);
  return rc;
}

int dt_prep_mnist(const char *src_dir, const char *out_dir, dt_error *err) {
  struct stat st;
  if (stat(src_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return dt_error_set(err, "%s: no such directory (expected the four MNIST IDX files there)",
                        src_dir);
  mnist_split sp[2] = {{.name = "train"}, {.name = "test"}};
  char out[2][PATH_MAX], tmp[2][PATH_MAX];
  int rc = read_split(src_dir, &sp[0], "train-images-idx3-ubyte", "train-labels-idx1-ubyte", err);
  if (!rc) rc = read_split(src_dir, &sp[1], "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", err);
  if (!rc) rc = mkdir_p(out_dir, err);
  int written = 0;
  for (int i = 0; i < 2 && !rc; i++) {
    if (snprintf(out[i], sizeof out[i], "%s/%s.h5", out_dir, sp[i].name) >= (int)sizeof out[i] ||
        snprintf(tmp[i], sizeof tmp[i], "%s.tmp", out[i]) >= (int)sizeof tmp[i]) {
      rc = dt_error_set(err, "%s: output path too long", out_dir);
      break;
    }
    rc = write_split(&sp[i], tmp[i], err);
    written = i + 1; /* the tmp file exists, even if half-written */
  }
  for (int i = 0; i < 2 && !rc; i++)
    if (rename(tmp[i], out[i]) != 0)
      rc = dt_error_set(err, "%s: cannot rename to %s: %s", tmp[i], out[i], strerror(errno));
  if (rc)
    for (int i = 0; i < written; i++) unlink(tmp[i]);
  for (int i = 0; i < 2; i++) {
    free(sp[i].images);
    free(sp[i].labels);
  }
  return rc;
}

/* ---- load ---- */

/* The images must be integers: a float shard scaled to [0,1] would
 * silently become zeros when read as uint8. */
static int check_integer(hid_t f, const char *path, const char *name, dt_error *err) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t t = d >= 0 ? H5Dget_type(d) : -1;
  int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER;
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  return ok ? 0 : dt_error_set(err, "%s: dataset %s is not of an integer type", path, name);
}

static int load_shard(dt_image_set *s, hid_t f, const char *path, int64_t limit, dt_error *err) {
  char *format = dt_h5_attr_read_str(f, "/", "format", err);
  if (!format) {
    if (err) {
      size_t n = strlen(err->msg);
      snprintf(err->msg + n, sizeof err->msg - n, " (not a dtrain image shard?)");
    }
    return -1;
  }
  int bad = strcmp(format, DT_IMAGES_FORMAT) != 0;
  if (bad)
    dt_error_set(err, "%s: format is \"%s\", expected \"%s\"", path, format, DT_IMAGES_FORMAT);
  free(format);
  if (bad) return -1;

  int nd, nl;
  int64_t idims[DT_H5_MAXDIMS], ldims[DT_H5_MAXDIMS], count, classes;
  if (dt_h5_dims(f, "/images", &nd, idims, err) || dt_h5_dims(f, "/labels", &nl, ldims, err))
    return -1;
  if (nd != 3 || idims[0] < 1 || idims[1] < 1 || idims[2] < 1 || idims[1] > 4096 || idims[2] > 4096)
    return dt_error_set(err, "%s: dataset /images must be (N,H,W) with N,H,W >= 1 and H,W <= 4096",
                        path);
  if (nl != 1 || ldims[0] != idims[0])
    return dt_error_set(err, "%s: dataset /labels must be (%lld) to match /images", path,
                        (long long)idims[0]);
  if (check_integer(f, path, "/images", err) || check_integer(f, path, "/labels", err)) return -1;
  if (dt_h5_attr_read_i64(f, "/", "count", 1, &count, err) ||
      dt_h5_attr_read_i64(f, "/", "num_classes", 1, &classes, err))
    return -1;
  if (count != idims[0])
    return dt_error_set(err, "%s: attribute count = %lld, but /images has %lld rows", path,
                        (long long)count, (long long)idims[0]);
  if (classes < 1 || classes > 256)
    return dt_error_set(err, "%s: attribute num_classes = %lld, expected 1..256 for uint8 labels",
                        path, (long long)classes);

  s->n = limit > 0 && limit < count ? limit : count;
  s->h = (int)idims[1];
  s->w = (int)idims[2];
  s->num_classes = (int)classes;
  s->images = dt_malloc((size_t)(s->n * s->h * s->w));
  s->labels = dt_malloc((size_t)s->n);
  if (dt_h5_read_rows(f, "/images", H5T_NATIVE_UINT8, 0, s->n, s->images, err) ||
      dt_h5_read_rows(f, "/labels", H5T_NATIVE_UINT8, 0, s->n, s->labels, err))
    return -1;
  for (int64_t i = 0; i < s->n; i++)
    if (s->labels[i] >= classes)
      return dt_error_set(err, "%s: /labels[%lld] = %d is out of range [0,%lld)", path,
                          (long long)i, s->labels[i], (long long)classes);
  return 0;
}

int dt_image_set_load(dt_image_set *s, const char *path, int64_t limit, dt_error *err) {
  memset(s, 0, sizeof *s);
  hid_t f = dt_h5_open(path, err);
  if (f < 0) return -1;
  int rc = load_shard(s, f, path, limit, err);
  dt_h5_close(f);
  if (rc) dt_image_set_free(s);
  return rc;
}

void dt_image_set_free(dt_image_set *s) {
  free(s->images);
  free(s->labels);
  memset(s, 0, sizeof *s);
}
