/* prep.c: dtrain-prep, which turns source data sets into the HDF5 shards
 * dtrain reads (and shows what a shard holds). No MPI: one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "dataset.h"
#include "dt.h"
#include "h5.h"
#include "textprep.h"

static const char *usage =
    "usage: dtrain-prep COMMAND ARGS...\n"
    "\n"
    "Turns source data sets into the HDF5 shards dtrain trains on.\n"
    "\n"
    "commands:\n"
    "  mnist SRC OUT     read the four MNIST IDX files (NAME or NAME.gz) in SRC and\n"
    "                    write OUT/train.h5 and OUT/test.h5 (scripts/download_mnist.sh\n"
    "                    fetches them)\n"
    "  text [OPTIONS] OUT FILE_OR_DIR...\n"
    "                    tokenize .txt / .txt.gz files with GPT-2's BPE (a directory:\n"
    "                    every such file under it, sorted; a file is one document,\n"
    "                    documents are separated by <|endoftext|>, a leading BOM is\n"
    "                    dropped) into OUT/train.h5 and OUT/val.h5\n"
    "  wos [OPTIONS] SRC OUT\n"
    "                    the Web of Science abstracts in SRC: Data1k.txt (TSV, column\n"
    "                    Abstract) and every X.txt below SRC (one abstract per line:\n"
    "                    WOS1000/, WOS-more/, WOS11967/, ...); whitespace collapsed,\n"
    "                    one document per abstract, duplicates dropped; same shards\n"
    "  inspect [--tokenizer DIR] FILE.h5\n"
    "                    print an image shard's count, dims, classes, class counts and\n"
    "                    first labels, or a token shard's count, vocabulary, first ids\n"
    "                    and its first 200 characters decoded (when the tokenizer is there)\n"
    "\n"
    "options of text and wos:\n"
    "  --tokenizer DIR      encoder.json and vocab.bpe (default $DTRAIN_DATA/gpt2-tokenizer,\n"
    "                       else data/gpt2-tokenizer)\n"
    "  --val-fraction F     share of the tokens for val.h5, in (0, 0.5] (default 0.005):\n"
    "                       every round(1/F)-th document, at least one; a single document\n"
    "                       is split by tokens at its end\n"
    "  --name NAME          the shards' name attribute (default: the first input's name)\n"
    "\n"
    "Token shards hold /tokens (uint16) and attributes format=dtrain-tokens-v1,\n"
    "vocab_size, eot, tokenizer, count, documents, name, source.\n"
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

static int cmd_inspect_images(const char *path) {
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

/* Prints s escaped onto one line (\n, \t, \\, other control bytes as \xNN). */
static void print_escaped(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n') fputs("\\n", stdout);
    else if (c == '\t') fputs("\\t", stdout);
    else if (c == '\\') fputs("\\\\", stdout);
    else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
    else putchar(c);
  }
}

/* The first `chars` UTF-8 characters of s (continuation bytes do not count). */
static size_t utf8_prefix(const char *s, size_t n, size_t chars) {
  size_t i = 0, k = 0;
  for (; i < n; i++) {
    if (((unsigned char)s[i] & 0xC0) != 0x80 && k++ == chars) break;
  }
  return i;
}

static int cmd_inspect_tokens(const char *path, const char *tok_dir) {
  dt_error err;
  uint16_t *tok;
  int64_t n, vocab = 0, eot = -1, docs = -1;
  if (dt_token_shard_load(path, 0, &tok, &n, &err)) return fail(err.msg);
  hid_t f = dt_h5_open(path, &err);
  char *tokenizer = NULL, *name = NULL, *source = NULL;
  if (f >= 0) {
    dt_h5_attr_read_i64(f, "/", "vocab_size", 1, &vocab, &err);
    dt_h5_attr_read_i64(f, "/", "eot", 1, &eot, &err);
    dt_h5_attr_read_i64(f, "/", "documents", 1, &docs, &err);
    tokenizer = dt_h5_attr_read_str(f, "/", "tokenizer", &err);
    name = dt_h5_attr_read_str(f, "/", "name", &err);
    source = dt_h5_attr_read_str(f, "/", "source", &err);
    dt_h5_close(f);
  }
  printf("file: %s\n", path);
  printf("format: %s\n", DT_TOKENS_FORMAT);
  printf("count: %lld\n", (long long)n);
  printf("vocab_size: %lld\n", (long long)vocab);
  printf("eot: %lld\n", (long long)eot);
  printf("documents: %lld\n", (long long)docs);
  printf("tokenizer: %s\n", tokenizer ? tokenizer : "?");
  printf("name: %s\n", name ? name : "");
  if (source) {
    printf("source: ");
    print_escaped(source, strlen(source));
    printf("\n");
  }
  printf("first_ids:");
  for (int64_t i = 0; i < DT_MIN(n, 20); i++) printf(" %u", tok[i]);
  printf("\n");
  /* The text only when the tokenizer is at hand: inspect works without it. */
  const char *dir = tok_dir ? tok_dir : dt_textprep_default_tokenizer();
  dt_bpe *b = dt_bpe_load(dir, &err);
  int rc = 0;
  if (b) {
    int32_t ids[200];
    size_t k = (size_t)DT_MIN(n, 200);
    for (size_t i = 0; i < k; i++) ids[i] = tok[i];
    char *text;
    size_t bytes;
    if (dt_bpe_decode(b, ids, k, &text, &bytes, &err) == 0) {
      printf("text: ");
      print_escaped(text, utf8_prefix(text, bytes, 200));
      printf("\n");
      free(text);
    } else {
      rc = fail(err.msg);
    }
    dt_bpe_free(b);
  } else if (tok_dir) {
    rc = fail(err.msg); /* asked for by name: its absence is an error */
  } else {
    printf("text: (no tokenizer in %s; --tokenizer DIR decodes)\n", dir);
  }
  free(tokenizer);
  free(name);
  free(source);
  free(tok);
  return rc;
}

static int cmd_inspect(const char *path, const char *tok_dir) {
  if (dt_token_shard_is(path)) return cmd_inspect_tokens(path, tok_dir);
  return cmd_inspect_images(path);
}

/* Options of text/wos/inspect: --tokenizer, --val-fraction, --name (as
 * "--opt VALUE" or "--opt=VALUE"); the rest are positional. */
typedef struct cli {
  dt_textprep_opts o;
  const char *pos[4096];
  int npos;
} cli;

static int parse_cli(int argc, char **argv, int first, int text_opts, cli *c) {
  char msg[512];
  c->o = (dt_textprep_opts){.val_fraction = 0.005, .progress = 1};
  c->npos = 0;
  int only_pos = 0;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || !a[1]) {
      if (c->npos == (int)DT_ARRAY_LEN(c->pos)) return fail("too many inputs");
      c->pos[c->npos++] = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      only_pos = 1;
      continue;
    }
    const char *names[] = {"--tokenizer", "--val-fraction", "--name"};
    int which = -1;
    const char *val = NULL;
    for (int k = 0; k < 3; k++) {
      size_t l = strlen(names[k]);
      if (!strncmp(a, names[k], l) && (a[l] == '\0' || a[l] == '=')) {
        which = k;
        val = a[l] == '=' ? a + l + 1 : NULL;
      }
    }
    if (which < 0 || (which > 0 && !text_opts)) {
      snprintf(msg, sizeof msg, "unknown option '%s' for %s (see dtrain-prep --help)", a, argv[1]);
      return fail(msg);
    }
    if (!val) {
      if (i + 1 >= argc) {
        snprintf(msg, sizeof msg, "%s needs a value (see dtrain-prep --help)", names[which]);
        return fail(msg);
      }
      val = argv[++i];
    }
    if (which == 0) c->o.tokenizer_dir = val;
    if (which == 2) c->o.name = val;
    if (which == 1) {
      char *end;
      c->o.val_fraction = strtod(val, &end);
      if (end == val || *end || !(c->o.val_fraction > 0 && c->o.val_fraction <= 0.5)) {
        snprintf(msg, sizeof msg, "--val-fraction '%s': expected a number in (0, 0.5]", val);
        return fail(msg);
      }
    }
  }
  return 0;
}

/* After text/wos: what each shard holds, read back from the files. */
static int report_shards(const char *out, double secs) {
  dt_error err;
  const char *names[] = {"train.h5", "val.h5"};
  for (int i = 0; i < 2; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, names[i]);
    hid_t f = dt_h5_open(path, &err);
    int64_t count = -1, docs = -1;
    if (f < 0 || dt_h5_attr_read_i64(f, "/", "count", 1, &count, &err) ||
        dt_h5_attr_read_i64(f, "/", "documents", 1, &docs, &err)) {
      dt_h5_close(f);
      return fail(err.msg);
    }
    dt_h5_close(f);
    struct stat st;
    long long bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    printf("wrote %s: %lld tokens, %lld documents, %lld bytes\n", path, (long long)count,
           (long long)docs, bytes);
  }
  printf("done in %.2f s\n", secs);
  return 0;
}

static int cmd_text(cli *c) {
  if (c->npos < 2)
    return fail("text takes OUT and at least one FILE_OR_DIR (see dtrain-prep --help)");
  dt_error err;
  double t0 = dt_now();
  if (dt_prep_text(c->pos[0], c->pos + 1, c->npos - 1, &c->o, &err)) return fail(err.msg);
  return report_shards(c->pos[0], dt_now() - t0);
}

static int cmd_wos(cli *c) {
  if (c->npos != 2) return fail("wos takes two arguments: SRC OUT (see dtrain-prep --help)");
  dt_error err;
  double t0 = dt_now();
  if (dt_prep_wos(c->pos[0], c->pos[1], &c->o, &err)) return fail(err.msg);
  return report_shards(c->pos[1], dt_now() - t0);
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
  if (!strcmp(cmd, "inspect") || !strcmp(cmd, "text") || !strcmp(cmd, "wos")) {
    static cli c;
    int inspect = !strcmp(cmd, "inspect");
    if (parse_cli(argc, argv, 2, !inspect, &c)) return DT_EXIT_USER;
    if (!strcmp(cmd, "text")) return cmd_text(&c);
    if (!strcmp(cmd, "wos")) return cmd_wos(&c);
    if (c.npos != 1) return fail("inspect takes one argument: FILE.h5 (see dtrain-prep --help)");
    return cmd_inspect(c.pos[0], c.o.tokenizer_dir);
  }
  char msg[256];
  snprintf(msg, sizeof msg, "unknown command '%s' (see dtrain-prep --help)", cmd);
  return fail(msg);
}
