/* transformer.h: incremental decoding with the encoder-decoder Transformer
 * (models/transformer.c), for greedy and beam search. Training goes through
 * dt_model's forward_backward like every model; this is the inference side.
 *
 * A decode state holds K = n * beam hypotheses: hypothesis k belongs to source
 * sentence k / beam. dt_transformer_encode runs the encoder once and keeps
 * each decoder layer's cross-attention keys and values; each
 * dt_transformer_decode_step feeds one token per hypothesis (position
 * dt_transformer_decode_len: bos first) and returns the next-token logits,
 * appending the self-attention keys and values to the cache. Beam search
 * reorders the cache with dt_transformer_decode_reorder after choosing the
 * survivors. The logits equal the teacher-forced forward's at that position.
 * Every pointer argument is device memory of the model's backend. */
#ifndef DT_TRANSFORMER_H
#define DT_TRANSFORMER_H

#include "model.h"

typedef struct dt_transformer_decode dt_transformer_decode;

/* A state for up to max_sent sentences of up to max_src source tokens, beam
 * hypotheses each, decoding at most max_steps tokens (<= model.block_size).
 * NULL with err when a size does not fit the model. */
dt_transformer_decode *dt_transformer_decode_create(dt_model *m, int max_sent, int beam,
                                                    int max_src, int max_steps, dt_error *err);
void dt_transformer_decode_free(dt_transformer_decode *d);

/* Encodes src (n, ts) with src_len (n) (1..ts) and resets the state to step
 * 0 with K = n * beam hypotheses. */
void dt_transformer_encode(dt_transformer_decode *d, const int32_t *src, const int32_t *src_len,
                           int n, int ts);

/* One step: tokens (K) the last token of each hypothesis. Returns logits
 * (K, V), valid until the next call. */
const float *dt_transformer_decode_step(dt_transformer_decode *d, const int32_t *tokens);

/* Hypothesis k continues from parent[k] (K int32, parents of the same
 * sentence): gathers the self-attention cache. */
void dt_transformer_decode_reorder(dt_transformer_decode *d, const int32_t *parent);

/* Tokens fed so far (the position of the next step). */
int dt_transformer_decode_len(const dt_transformer_decode *d);

#endif
