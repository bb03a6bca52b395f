/* dataset.h: image classification shards (MNIST) and their IDX sources. */
#ifndef DT_DATASET_H
#define DT_DATASET_H

#include <stdint.h>

#include "dt.h"

typedef struct dt_image_set {
  int64_t n;          /* samples */
  int h, w;           /* image size */
  int num_classes;    /* labels are in [0, num_classes) */
  uint8_t *images;    /* (n, h, w) */
  uint8_t *labels;    /* (n) */
} dt_image_set;

/* Reads an IDX file (raw, or gzip when the name ends in .gz or the bytes
 * start with the gzip magic). Checks the magic number (2051 images, 2049
 * labels), the dimensions and that the file length matches them exactly.
 * dims gets up to 3 dims; *data is malloc'ed. */
int dt_idx_read(const char *path, int expect_magic, int *ndims, int64_t dims[3], uint8_t **data,
                dt_error *err);

/* Reads SRC/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], checks counts
 * agree, and writes OUT/train.h5 and OUT/test.h5: /images uint8 (N,28,28),
 * /labels uint8 (N), root attributes source, count, num_classes. Writes to
 * NAME.tmp and renames, so a failure never leaves a half file. */
int dt_prep_mnist(const char *src_dir, const char *out_dir, dt_error *err);

/* Loads an image shard written by dt_prep_mnist (the first `limit` samples
 * when limit > 0), validating shapes, counts and label range. */
int dt_image_set_load(dt_image_set *s, const char *path, int64_t limit, dt_error *err);
void dt_image_set_free(dt_image_set *s);

#endif
