/* textprep.h: text -> GPT-2 token shards (train.h5, val.h5), and loading a
 * token shard back for the GPT data loader. */
#ifndef DT_TEXTPREP_H
#define DT_TEXTPREP_H

#include <stdint.h>

#include "dt.h"

#define DT_TOKENS_FORMAT "dtrain-tokens-v1"

/* A token shard holds /tokens uint16 (count), chunked and compressed, and root
 * attributes format, vocab_size, eot, tokenizer ("gpt2"), count, documents,
 * name and source (the inputs, one per line). Documents are separated by eot. */

typedef struct dt_textprep_opts {
  const char *tokenizer_dir; /* holds encoder.json and vocab.bpe */
  double val_fraction;       /* in (0, 0.5]; 0.005 by default */
  const char *name;          /* stored as attribute "name"; NULL: derived from the inputs */
  int progress;              /* a line on stderr every second */
  int threads;               /* encoding threads; 0 = the cores online, at most 16 */
  const char *jsonl_field;   /* the key of a .jsonl line's document; NULL: "text" */
} dt_textprep_opts;

/* The default tokenizer directory: $DTRAIN_DATA/gpt2-tokenizer, else
 * data/gpt2-tokenizer (relative to the working directory). */
const char *dt_textprep_default_tokenizer(void);

/* Tokenizes .txt and .txt.gz files (a directory: every such file under it,
 * sorted by path; each file is one document; a leading UTF-8 BOM is dropped)
 * into OUT/train.h5 and OUT/val.h5. Every k-th document goes to val
 * (k = round(1/val_fraction), documents k-1, 2k-1, ...; the last one when
 * there are fewer than k), so val holds about val_fraction of the tokens and
 * at least one document; a single document is split by tokens, its last
 * ceil(val_fraction * n) tokens going to val. Everything is checked and
 * tokenized before a shard is written (a corpus of more than 2^28 ids, or
 * $DTRAIN_PREP_SPILL_TOKENS, keeps them in OUT/tokens.spill.tmp meanwhile,
 * removed at the end); shards are written as NAME.tmp and renamed, so a
 * failure leaves earlier ones as they were. */
int dt_prep_text(const char *out_dir, const char *const *inputs, int n_inputs,
                 const dt_textprep_opts *o, dt_error *err);

/* The Web of Science abstracts under SRC: Data1k.txt (TSV with the header
 * "Y1 Y2 Y Domain area keywords Abstract", column Abstract) and every X.txt
 * below SRC (one abstract per line: WOS1000/, WOS-more/, WOS11967/, ...),
 * whitespace collapsed, one document per abstract, duplicates dropped (the
 * first copy kept), split and written as dt_prep_text does. */
int dt_prep_wos(const char *src, const char *out_dir, const dt_textprep_opts *o, dt_error *err);

/* Writes a token shard at path (no tmp/rename: callers do that). */
typedef struct dt_token_meta {
  int64_t vocab_size, eot, documents;
  const char *tokenizer, *name, *source;
} dt_token_meta;
int dt_token_shard_write(const char *path, const uint16_t *tokens, int64_t n,
                         const dt_token_meta *meta, dt_error *err);

/* Loads a token shard: checks the format attribute, the shape and type of
 * /tokens, count, and that every id is below vocab_size (the first bad
 * position is named). *tokens is malloc'ed. */
int dt_token_shard_load(const char *path, int vocab_size, uint16_t **tokens, int64_t *n,
                        dt_error *err);

/* A token shard as training reads it. Where /tokens is stored whole and
 * little-endian (what dt_token_shard_write writes) the file is mapped, not
 * read: every rank of a node shares the page cache, only the windows a run
 * touches are read from disk, and a corpus larger than memory trains; the
 * ids are then checked against limit as they are used. Otherwise (a
 * compressed shard, or ids the writer's vocabulary allows beyond the
 * model's) it is read and every id checked, as dt_token_shard_load. */
typedef struct dt_token_map {
  const uint16_t *tokens;
  int64_t count;
  int64_t limit;  /* every id is below it (checked, or the writer's vocab_size) */
  int mapped;
  void *base;     /* the mapping (page-aligned) and its length */
  size_t len;
} dt_token_map;
int dt_token_shard_map(const char *path, int vocab_size, dt_token_map *map, dt_error *err);
void dt_token_map_free(dt_token_map *map);

/* Whether an HDF5 file says it is a token shard (format attribute); 0 for
 * anything else, including unreadable files. */
int dt_token_shard_is(const char *path);

#endif
