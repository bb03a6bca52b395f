/* bpetrain.h: trains a byte-level BPE on text and saves it as GPT-2's two
 * files (encoder.json + vocab.bpe), which dt_bpe_load reads back unchanged. */
#ifndef DT_BPETRAIN_H
#define DT_BPETRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"

/* Ids of a trained vocabulary: the specials first (pad = 0, so a zeroed
 * buffer is padding), then the 256 bytes in byte order (byte c is id 3 + c),
 * then one id per new token in the order the merges made them. */
#define DT_BPE_PAD_ID 0
#define DT_BPE_BOS_ID 1
#define DT_BPE_EOS_ID 2
#define DT_BPE_N_SPECIAL 3
#define DT_BPE_FIRST_BYTE 3
#define DT_BPE_BASE_VOCAB (DT_BPE_N_SPECIAL + 256)
/* No token grows longer than this many bytes (SentencePiece caps pieces too):
 * long Han runs would otherwise turn whole frequent phrases into tokens. */
#define DT_BPE_MAX_TOKEN_BYTES 64
/* A pair seen fewer times than this is never merged: training stops there
 * even when the vocabulary is not full yet. */
#define DT_BPE_MIN_PAIR_COUNT 2

typedef struct dt_bpe_trainer dt_bpe_trainer;

dt_bpe_trainer *dt_bpe_trainer_new(void);
void dt_bpe_trainer_free(dt_bpe_trainer *t);

/* Splits text with GPT-2's pre-tokenizer (dt_bpe_piece_end) and counts each
 * piece; merges never cross pieces, exactly as dt_bpe_encode applies them. */
void dt_bpe_trainer_add(dt_bpe_trainer *t, const char *text, size_t len);

/* Bytes added so far and distinct pieces. */
int64_t dt_bpe_trainer_bytes(const dt_bpe_trainer *t);
int64_t dt_bpe_trainer_pieces(const dt_bpe_trainer *t);

/* Learns merges until the vocabulary (specials, bytes, new tokens) holds
 * vocab_size ids or no pair occurs DT_BPE_MIN_PAIR_COUNT times. Each step
 * merges the most frequent pair, counted over all pieces with their
 * frequencies; ties go to the pair with the smaller left id, then the smaller
 * right id, so the result depends on the text only. A merge whose bytes an
 * earlier token already has reuses that id. progress: a line on stderr every
 * second. Returns the vocabulary size reached. Call once. */
int dt_bpe_trainer_train(dt_bpe_trainer *t, int vocab_size, int progress);

/* The result: tokens (ids 0..vocab-1) and merges in the order learned. */
int dt_bpe_trainer_vocab(const dt_bpe_trainer *t);
const char *dt_bpe_trainer_token(const dt_bpe_trainer *t, int32_t id, size_t *bytes);
int dt_bpe_trainer_merges(const dt_bpe_trainer *t);
void dt_bpe_trainer_merge(const dt_bpe_trainer *t, int i, int32_t *left, int32_t *right,
                          int64_t *count);

/* Writes DIR/encoder.json and DIR/vocab.bpe (DIR must exist). vocab.bpe's
 * first line is "#version: 0.2 dtrain-bpe specials=<pad>,<bos>,<eos>". */
int dt_bpe_trainer_save(const dt_bpe_trainer *t, const char *dir, dt_error *err);

#endif
