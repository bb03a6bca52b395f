/* hf_gpt2.h: GPT-2 weights in Hugging Face's naming, as safetensors, to and
 * from dtrain's parameter table (models/gpt.c): import for model.init_from,
 * export for dtrain-export. HF's GPT2LMHeadModel names tensors
 * transformer.wte.weight, transformer.h.N.attn.c_attn.weight, ... and keeps
 * Conv1D weights as (in, out), where dtrain keeps (out, in). */
#ifndef DT_HF_GPT2_H
#define DT_HF_GPT2_H

#include <stddef.h>

#include "config.h"
#include "param.h"

/* Fills flat (laid out by params) from path: a .safetensors file, or a
 * directory holding model.safetensors and config.json (checked against cfg's
 * model.* keys). Accepts names with and without the "transformer." prefix
 * (OpenAI's hub weights have none), F32/F16/BF16/F64 data, ignores the
 * attention-mask buffers (h.N.attn.bias, h.N.attn.masked_bias), and
 * lm_head.weight when it equals wte (dtrain ties them). Missing, unknown,
 * misshapen or non-finite (NaN, Inf) tensors: -1 with err naming the file and
 * tensor. file (if non-NULL) gets the safetensors file read. */
int dt_hf_gpt2_import(const char *path, const dt_config *cfg, const dt_param *params,
                      int nparams, float *flat, char *file, size_t file_size, dt_error *err);

/* Writes flat as GPT2LMHeadModel's save_pretrained does: every parameter
 * once, prefixed "transformer.", Conv1D weights transposed back to (in, out),
 * no lm_head.weight (tied), __metadata__ {"format": "pt"}. */
int dt_hf_gpt2_export(const char *path, const dt_param *params, int nparams, const float *flat,
                      dt_error *err);

/* Writes a config.json for cfg that GPT2LMHeadModel.from_pretrained reads. */
int dt_hf_gpt2_write_config(const char *path, const dt_config *cfg, dt_error *err);

#endif
