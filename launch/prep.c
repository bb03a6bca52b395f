/* prep.c: dtrain-prep, which turns source data sets into the HDF5 shards
 * dtrain reads (and shows what a shard holds). No MPI: one process. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "dataset.h"
#include "dt.h"
#include "h5.h"
#include "textprep.h"
#include "transprep.h"

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
    "                    dropped) into OUT/train.h5 and OUT/val.h5; .jsonl / .jsonl.gz\n"
    "                    files (JSON Lines, as Hugging Face datasets export them) give a\n"
    "                    document per line, its \"text\" field\n"
    "  wos [OPTIONS] SRC OUT\n"
    "                    the Web of Science abstracts in SRC: Data1k.txt (TSV, column\n"
    "                    Abstract) and every X.txt below SRC (one abstract per line:\n"
    "                    WOS1000/, WOS-more/, WOS11967/, ...); whitespace collapsed,\n"
    "                    one document per abstract, duplicates dropped; same shards\n"
    "  translation [OPTIONS] SRC_DIR OUT\n"
    "                    aligned sentence files SRC_DIR/{train,dev,test}.{zh,en} (UTF-8,\n"
    "                    line i of .zh translates line i of .en): trains a joint byte-level\n"
    "                    BPE on train (OUT/tokenizer/encoder.json, vocab.bpe; <pad>=0,\n"
    "                    <bos>=1, <eos>=2, byte c = 3+c, then the learned tokens) and writes\n"
    "                    OUT/train.h5, valid.h5 (dev), test.h5: /src_tokens, /tgt_tokens\n"
    "                    uint16 without bos/eos, /src_offsets, /tgt_offsets int64 [N+1],\n"
    "                    /kept_lines int64 [N] (0-based line of each kept pair). Pairs with\n"
    "                    an empty side or a side over --max-len are dropped and counted\n"
    "  inspect [--tokenizer DIR] FILE.h5\n"
    "                    print an image shard's count, dims, classes, class counts and\n"
    "                    first labels, or a token shard's count, vocabulary, first ids\n"
    "                    and its first 200 characters decoded (when the tokenizer is there),\n"
    "                    or a pair shard's counts and first pairs (tokenizer: FILE's\n"
    "                    directory/tokenizer)\n"
    "\n"
    "options of text and wos:\n"
    "  --tokenizer DIR      encoder.json and vocab.bpe (default $DTRAIN_DATA/gpt2-tokenizer,\n"
    "                       else data/gpt2-tokenizer)\n"
    "  --val-fraction F     share of the tokens for val.h5, in (0, 0.5] (default 0.005):\n"
    "                       every round(1/F)-th document, at least one; a single document\n"
    "                       is split by tokens at its end\n"
    "  --name NAME          the shards' name attribute (default: the first input's name)\n"
    "  --threads N          encoding threads (default: the cores online, at most 16); the\n"
    "                       shards are the same for every N\n"
    "  --field KEY          text: the field of a .jsonl line that holds its document\n"
    "                       (default text; e.g. content, raw_content)\n"
    "\n"
    "Token shards hold /tokens (uint16) and attributes format=dtrain-tokens-v1,\n"
    "vocab_size, eot, tokenizer, count, documents, name, source.\n"
    "\n"
    "options of translation:\n"
    "  --vocab N            ids in all, specials included (default 16000, 260..65536)\n"
    "  --max-len N          longest side kept, in tokens with bos and eos (default 256)\n"
    "  --src L, --tgt L     the languages' file suffixes (default zh, en)\n"
    "  --limit N            only the first N lines of every file (for tests)\n"
    "Pair shards carry attributes format=dtrain-pairs-v1, split, vocab_size, pad_id,\n"
    "bos_id, eos_id, pairs, lines, dropped_too_long, dropped_empty, max_len, src_lang,\n"
    "tgt_lang, src_file, tgt_file, src_bytes, tgt_bytes, src_sha256, tgt_sha256,\n"
    "src_tokens, tgt_tokens, tokenizer. Invalid UTF-8 or files of different line\n"
    "counts are errors naming file:line; nothing in OUT changes then.\n"
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

/* The directory part of path ("." when none). */
static void dir_of(const char *path, char *out, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(out, size, ".");
  else snprintf(out, size, "%.*s", (int)(slash == path ? 1 : slash - path), path);
}

/* Prints pair i of one side decoded (or its ids when there is no tokenizer). */
static int print_side(const char *label, hid_t f, const char *tok_name, const int64_t off[2],
                      const dt_bpe *b) {
  dt_error err;
  int64_t n = off[1] - off[0];
  uint16_t *tok = dt_malloc((size_t)(n > 0 ? n : 1) * sizeof *tok);
  int32_t *ids = dt_malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
  int rc = n > 0 ? dt_h5_read_rows(f, tok_name, H5T_NATIVE_UINT16, off[0], n, tok, &err) : 0;
  if (rc) {
    fail(err.msg);
  } else {
    for (int64_t i = 0; i < n; i++) ids[i] = tok[i];
    printf("%s (%lld tokens): ", label, (long long)n);
    char *text;
    size_t bytes;
    if (b && dt_bpe_decode(b, ids, (size_t)n, &text, &bytes, &err) == 0) {
      print_escaped(text, bytes);
      free(text);
    } else {
      for (int64_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    }
    printf("\n");
  }
  free(tok);
  free(ids);
  return rc ? DT_EXIT_USER : 0;
}

static int cmd_inspect_pairs(const char *path, const char *tok_dir) {
  dt_error err;
  hid_t f = dt_h5_open(path, &err);
  if (f < 0) return fail(err.msg);
  printf("file: %s\n", path);
  const char *ints[] = {"vocab_size", "pad_id", "bos_id", "eos_id", "pairs", "lines",
                        "dropped_too_long", "dropped_empty", "max_len", "src_tokens",
                        "tgt_tokens"};
  const char *strs[] = {"format", "split", "src_lang", "tgt_lang", "src_file", "tgt_file",
                        "src_sha256", "tgt_sha256"};
  int64_t v[DT_ARRAY_LEN(ints)];
  for (size_t i = 0; i < DT_ARRAY_LEN(ints); i++) {
    if (dt_h5_attr_read_i64(f, "/", ints[i], 1, &v[i], &err)) {
      dt_h5_close(f);
      return fail(err.msg);
    }
    printf("%s: %lld\n", ints[i], (long long)v[i]);
  }
  for (size_t i = 0; i < DT_ARRAY_LEN(strs); i++) {
    char *s = dt_h5_attr_read_str(f, "/", strs[i], &err);
    printf("%s: %s\n", strs[i], s ? s : "?");
    free(s);
  }
  char dir[4096];
  if (tok_dir) snprintf(dir, sizeof dir, "%s", tok_dir);
  else {
    dir_of(path, dir, sizeof dir - 16);
    strcat(dir, "/tokenizer");
  }
  dt_bpe *b = dt_bpe_load(dir, &err);
  int rc = 0;
  if (!b && tok_dir) rc = fail(err.msg);
  if (!b && !tok_dir) printf("tokenizer: (none in %s; --tokenizer DIR decodes)\n", dir);
  if (b) printf("tokenizer: %s (%d ids)\n", dir, dt_bpe_vocab_size(b));
  int64_t npairs = v[4];
  for (int64_t i = 0; i < DT_MIN(npairs, 3) && !rc; i++) {
    int64_t so[2], to[2], line;
    if (dt_h5_read_rows(f, "/src_offsets", H5T_NATIVE_INT64, i, 2, so, &err) ||
        dt_h5_read_rows(f, "/tgt_offsets", H5T_NATIVE_INT64, i, 2, to, &err) ||
        dt_h5_read_rows(f, "/kept_lines", H5T_NATIVE_INT64, i, 1, &line, &err)) {
      rc = fail(err.msg);
      break;
    }
    printf("pair %lld (line %lld):\n", (long long)i, (long long)line + 1);
    rc = print_side("  src", f, "/src_tokens", so, b);
    if (!rc) rc = print_side("  tgt", f, "/tgt_tokens", to, b);
  }
  dt_bpe_free(b);
  dt_h5_close(f);
  return rc;
}

static int is_pair_shard(const char *path) {
  dt_error err;
  hid_t f = dt_h5_open(path, &err);
  if (f < 0) return 0;
  char *format = dt_h5_attr_read_str(f, "/", "format", &err);
  int yes = format && !strcmp(format, DT_PAIRS_FORMAT);
  free(format);
  dt_h5_close(f);
  return yes;
}

static int cmd_inspect(const char *path, const char *tok_dir) {
  if (dt_token_shard_is(path)) return cmd_inspect_tokens(path, tok_dir);
  if (is_pair_shard(path)) return cmd_inspect_pairs(path, tok_dir);
  return cmd_inspect_images(path);
}

/* Options of text/wos/inspect: --tokenizer, --val-fraction, --name, --threads, --field (as
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
    const char *names[] = {"--tokenizer", "--val-fraction", "--name", "--threads", "--field"};
    int which = -1;
    const char *val = NULL;
    for (int k = 0; k < 5; k++) {
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
    if (which == 4) c->o.jsonl_field = val;
    if (which == 3) {
      char *end;
      long t = strtol(val, &end, 10);
      if (end == val || *end || t < 1 || t > 64) {
        snprintf(msg, sizeof msg, "--threads '%s': expected a whole number in 1..64", val);
        return fail(msg);
      }
      c->o.threads = (int)t;
    }
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

/* A whole number in [lo, hi] for option name. */
static int parse_int(const char *name, const char *val, long long lo, long long hi,
                     long long *out) {
  char *end, msg[256];
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (end == val || *end || errno || v < lo || v > hi) {
    snprintf(msg, sizeof msg, "%s '%s': expected a whole number in [%lld, %lld]", name, val, lo,
             hi);
    return fail(msg);
  }
  *out = v;
  return 0;
}

static int cmd_translation(int argc, char **argv) {
  dt_transprep_opts o = {.vocab_size = 16000, .max_len = 256, .src = "zh", .tgt = "en",
                         .progress = 1};
  const char *pos[2];
  int npos = 0, only_pos = 0;
  char msg[512];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || !a[1]) {
      if (npos == 2) return fail("translation takes two arguments: SRC_DIR OUT (see dtrain-prep --help)");
      pos[npos++] = a;
      continue;
    }
    if (!strcmp(a, "--")) {
      only_pos = 1;
      continue;
    }
    const char *names[] = {"--vocab", "--max-len", "--src", "--tgt", "--limit"};
    int which = -1;
    const char *val = NULL;
    for (int k = 0; k < (int)DT_ARRAY_LEN(names); k++) {
      size_t l = strlen(names[k]);
      if (!strncmp(a, names[k], l) && (a[l] == '\0' || a[l] == '=')) {
        which = k;
        val = a[l] == '=' ? a + l + 1 : NULL;
      }
    }
    if (which < 0) {
      snprintf(msg, sizeof msg, "unknown option '%s' for translation (see dtrain-prep --help)", a);
      return fail(msg);
    }
    if (!val) {
      if (i + 1 >= argc) {
        snprintf(msg, sizeof msg, "%s needs a value (see dtrain-prep --help)", names[which]);
        return fail(msg);
      }
      val = argv[++i];
    }
    long long v = 0;
    if (which == 0 && parse_int("--vocab", val, 260, 65536, &v)) return DT_EXIT_USER;
    if (which == 1 && parse_int("--max-len", val, 3, 1 << 30, &v)) return DT_EXIT_USER;
    if (which == 4 && parse_int("--limit", val, 1, INT64_MAX, &v)) return DT_EXIT_USER;
    if (which == 0) o.vocab_size = (int)v;
    if (which == 1) o.max_len = (int)v;
    if (which == 2) o.src = val;
    if (which == 3) o.tgt = val;
    if (which == 4) o.limit = v;
  }
  if (npos != 2) return fail("translation takes two arguments: SRC_DIR OUT (see dtrain-prep --help)");
  dt_error err;
  dt_transprep_report r;
  double t0 = dt_now();
  if (dt_prep_translation(pos[0], pos[1], &o, &r, &err)) return fail(err.msg);
  printf("tokenizer %s/tokenizer: %d ids (3 specials, 256 bytes, %d merges) learned from %.1f MB "
         "in %.2f s\n", pos[1], r.vocab, r.merges, (double)r.train_bytes / 1e6, r.train_secs);
  for (int i = 0; i < 3; i++) {
    const dt_transprep_split *s = &r.split[i];
    printf("wrote %s/%s.h5: %lld pairs kept of %lld, %lld dropped too long, %lld dropped empty; "
           "tokens %s %lld, %s %lld\n", pos[1], s->name, (long long)s->pairs, (long long)s->lines,
           (long long)s->dropped_too_long, (long long)s->dropped_empty, o.src,
           (long long)s->src_tokens, o.tgt, (long long)s->tgt_tokens);
  }
  printf("done in %.2f s (bpe %.2f s, encoding %.2f s)\n", dt_now() - t0, r.train_secs,
         r.encode_secs);
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
  if (!strcmp(cmd, "translation")) return cmd_translation(argc, argv);
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
