/* transprep.h: aligned translation files -> a joint byte-level BPE (trained on
 * train) and HDF5 shards of variable-length pairs (dtrain-prep translation). */
#ifndef DT_TRANSPREP_H
#define DT_TRANSPREP_H

#include <stdint.h>

#include "dt.h"

#define DT_PAIRS_FORMAT "dtrain-pairs-v1"

/* SRC_DIR holds {train,dev,test}.{src,tgt} (UTF-8, one sentence per line,
 * line i of .src translates line i of .tgt). OUT gets
 *   tokenizer/encoder.json, tokenizer/vocab.bpe  (bpetrain.h: <pad>=0,
 *       <bos>=1, <eos>=2, byte c = 3+c, then merges; dt_bpe_load reads it)
 *   train.h5 (from train.*), valid.h5 (dev.*), test.h5 (test.*), each with
 *   /src_tokens, /tgt_tokens uint16 [total]  ids of each sentence, no bos/eos
 *   /src_offsets, /tgt_offsets int64 [N+1]    pair i is tokens[off[i]:off[i+1]]
 *   /kept_lines int64 [N]                      pair i's 0-based line in the files
 * and root attributes format, split, vocab_size, pad_id, bos_id, eos_id,
 * pairs, lines, dropped_too_long, dropped_empty, max_len, src_lang, tgt_lang,
 * src_file, tgt_file (basenames), src_bytes, tgt_bytes, src_sha256,
 * tgt_sha256 (of the whole files), src_tokens, tgt_tokens (counts),
 * tokenizer. A pair is dropped when a side is empty (only ASCII whitespace)
 * or when a side's tokens + 2 (bos, eos) exceed max_len. Lines lose a
 * trailing '\r', the first line a UTF-8 BOM. Invalid UTF-8 and files of
 * different line counts are errors naming file:line; every input is read and
 * checked before OUT is touched, and outputs are written as *.tmp and renamed
 * at the end. */

typedef struct dt_transprep_opts {
  int vocab_size;      /* ids in all, specials included; 260..65536 */
  int max_len;         /* tokens per side with bos and eos; >= 3 */
  const char *src, *tgt; /* language suffixes: "zh", "en" */
  int64_t limit;       /* > 0: only the first `limit` lines of each file */
  int progress;        /* lines on stderr about every second */
} dt_transprep_opts;

typedef struct dt_transprep_split {
  const char *name;    /* "train", "valid", "test" */
  int64_t lines, pairs, dropped_too_long, dropped_empty, src_tokens, tgt_tokens;
} dt_transprep_split;

typedef struct dt_transprep_report {
  int vocab, merges;
  int64_t train_bytes, pieces;
  double train_secs, encode_secs;
  dt_transprep_split split[3];
} dt_transprep_report;

int dt_prep_translation(const char *src_dir, const char *out_dir, const dt_transprep_opts *o,
                        dt_transprep_report *rep, dt_error *err);

#endif
