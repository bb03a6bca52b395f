/* hf_gpt2.c: dtrain's GPT-2 parameter table <-> Hugging Face GPT2LMHeadModel
 * tensors in safetensors. The names match after HF's "transformer." prefix;
 * Conv1D weights are transposed. */
#include "hf_gpt2.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"

#define PREFIX "transformer."

/* HF's Conv1D keeps (in, out); dtrain's linear kernels take (out, in). */
static int is_conv1d(const dt_param *p) {
  static const char *ends[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                               ".mlp.c_proj.weight"};
  size_t l = strlen(p->name);
  for (size_t i = 0; i < DT_ARRAY_LEN(ends); i++) {
    size_t e = strlen(ends[i]);
    if (p->ndims == 2 && l > e && !strcmp(p->name + l - e, ends[i])) return 1;
  }
  return 0;
}

/* The attention-mask buffers older transformers (and OpenAI's hub files)
 * store: h.N.attn.bias, h.N.attn.masked_bias. dtrain's attention is causal by
 * construction, so they carry nothing to import. */
static int is_mask_buffer(const char *name) {
  if (strncmp(name, "h.", 2)) return 0;
  const char *s = name + 2;
  if (!(*s >= '0' && *s <= '9')) return 0;
  while (*s >= '0' && *s <= '9') s++;
  return !strcmp(s, ".attn.bias") || !strcmp(s, ".attn.masked_bias");
}

static void hf_shape(const dt_param *p, int64_t *shape) {
  for (int d = 0; d < p->ndims; d++) shape[d] = p->shape[d];
  if (is_conv1d(p)) shape[0] = p->shape[1], shape[1] = p->shape[0];
}

static void shape_text(char *buf, size_t size, int nd, const int64_t *shape) {
  int o = snprintf(buf, size, "(");
  for (int d = 0; d < nd && o < (int)size; d++)
    o += snprintf(buf + o, size - (size_t)o, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (o < (int)size) snprintf(buf + o, size - (size_t)o, ")");
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *read_text(const char *path, size_t *len, dt_error *err) {
  FILE *fp = dt_fopen_regular(path, err);
  if (!fp) return NULL;
  size_t cap = 4096, n = 0;
  char *s = dt_malloc(cap);
  size_t k;
  while ((k = fread(s + n, 1, cap - n, fp)) > 0) {
    n += k;
    if (n == cap) {
      s = realloc(s, cap *= 2);
      DT_CHECK_ALLOC(s);
    }
  }
  /* a failed read is not the end of the text: parsing what came before it
   * would report a JSON error the file does not have */
  if (ferror(fp)) {
    dt_error_set(err, "%s: read failed: %s", path, strerror(errno));
    fclose(fp);
    return free(s), NULL;
  }
  fclose(fp);
  *len = n;
  return s;
}

/* An integer in config.json. Python writes some as floats (256.0): those are
 * taken when exactly integral (and within a double's exact integers); 256.5
 * is not an integer. */
static int json_integer(const dt_json *v, long long *out) {
  if (v->type != DT_JSON_NUMBER) return 0;
  if (v->is_int) return *out = v->i, 1;
  if (!(fabs(v->num) <= 9007199254740992.0) || v->num != floor(v->num)) return 0;
  *out = (long long)v->num;
  return 1;
}

/* config.json beside the weights must describe the model dtrain builds: a
 * different n_head has the same tensor shapes but another function, so it
 * is checked here rather than discovered as a worse loss. */
static int check_hf_config(const char *path, const dt_config *cfg, dt_error *err) {
  size_t len;
  char *text = read_text(path, &len, err);
  if (!text) return -1;
  dt_json *j = dt_json_parse(text, len, path, err);
  free(text);
  if (!j) return -1;
  int rc = 0;
  if (j->type != DT_JSON_OBJECT) rc = dt_error_set(err, "%s: not a JSON object", path);
  const dt_json *mt = dt_json_get(j, "model_type");
  if (!rc && mt && (mt->type != DT_JSON_STRING || strcmp(mt->str, "gpt2")))
    rc = dt_error_set(err, "%s: model_type is %s, not \"gpt2\"", path,
                      mt->type == DT_JSON_STRING ? mt->str : "not a string");
  const struct { const char *hf, *ours; long want; } ints[] = {
      {"n_layer", "model.n_layer", cfg->model_n_layer},
      {"n_head", "model.n_head", cfg->model_n_head},
      {"n_embd", "model.n_embd", cfg->model_n_embd},
      {"vocab_size", "model.vocab_size", cfg->model_vocab_size},
      {"n_positions", "model.block_size", cfg->model_block_size},
  };
  for (size_t i = 0; !rc && i < DT_ARRAY_LEN(ints); i++) {
    const dt_json *v = dt_json_get(j, ints[i].hf);
    long long x;
    if (!v) continue; /* the defaults of GPT2Config; the tensor shapes still decide */
    if (!json_integer(v, &x))
      rc = dt_error_set(err, "%s: %s is not an integer", path, ints[i].hf);
    else if (x != ints[i].want)
      rc = dt_error_set(err, "%s: %s = %lld, but %s = %ld (set %s=%lld)", path, ints[i].hf, x,
                        ints[i].ours, ints[i].want, ints[i].ours, x);
  }
  /* what models/gpt.c computes: tanh GELU, LayerNorm eps 1e-5, 4C MLP,
   * attention scaled by 1/sqrt(head size), the LM head tied to wte */
  const dt_json *act = dt_json_get(j, "activation_function");
  if (!rc && act &&
      (act->type != DT_JSON_STRING ||
       (strcmp(act->str, "gelu_new") && strcmp(act->str, "gelu_pytorch_tanh"))))
    rc = dt_error_set(err, "%s: activation_function is %s; dtrain's GPT-2 uses the tanh GELU "
                      "(gelu_new)", path, act->type == DT_JSON_STRING ? act->str : "not a string");
  const dt_json *eps = dt_json_get(j, "layer_norm_epsilon");
  if (!rc && eps && (eps->type != DT_JSON_NUMBER || fabs(eps->num - 1e-5) > 1e-12))
    rc = dt_error_set(err, "%s: layer_norm_epsilon is not 1e-05, which dtrain's GPT-2 uses", path);
  const dt_json *inner = dt_json_get(j, "n_inner");
  long long n_inner;
  if (!rc && inner && inner->type != DT_JSON_NULL &&
      !(json_integer(inner, &n_inner) && n_inner == 4 * (long long)cfg->model_n_embd))
    rc = dt_error_set(err, "%s: n_inner is not null or 4 * n_embd, which dtrain's GPT-2 uses",
                      path);
  const struct { const char *key; int want; } flags[] = {
      {"tie_word_embeddings", 1},
      {"scale_attn_weights", 1},
      {"scale_attn_by_inverse_layer_idx", 0},
      {"add_cross_attention", 0},
  };
  for (size_t i = 0; !rc && i < DT_ARRAY_LEN(flags); i++) {
    const dt_json *v = dt_json_get(j, flags[i].key);
    if (v && (v->type != DT_JSON_BOOL || (int)v->num != flags[i].want))
      rc = dt_error_set(err, "%s: %s must be %s for dtrain's GPT-2", path, flags[i].key,
                        flags[i].want ? "true" : "false");
  }
  dt_json_free(j);
  return rc;
}

/* PATH -> the safetensors file; a directory must be a Hugging Face model
 * directory with one model.safetensors (and config.json, if any, is checked). */
static int resolve(const char *path, const dt_config *cfg, char *file, size_t size,
                   dt_error *err) {
  if (!is_dir(path)) {
    snprintf(file, size, "%s", path);
    return 0;
  }
  char p[4200];
  snprintf(file, size, "%s/model.safetensors", path);
  struct stat st;
  if (stat(file, &st) != 0) {
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    if (stat(p, &st) == 0)
      return dt_error_set(err, "%s: weights sharded over several safetensors files are not "
                          "supported; save with a larger max_shard_size", path);
    snprintf(p, sizeof p, "%s/pytorch_model.bin", path);
    if (stat(p, &st) == 0)
      return dt_error_set(err, "%s: has pytorch_model.bin but no model.safetensors; save it with "
                          "save_pretrained(dir, safe_serialization=True)", path);
    return dt_error_set(err, "%s: no model.safetensors in this directory", path);
  }
  snprintf(p, sizeof p, "%s/config.json", path);
  if (stat(p, &st) == 0 && check_hf_config(p, cfg, err)) return -1;
  return 0;
}

/* The model's expected shapes, named after what the config sets them. */
static int shape_error(const char *file, const char *tname, const dt_st_tensor *t,
                       const dt_param *p, const dt_config *cfg, dt_error *err) {
  char got[160], want[160];
  int64_t ws[DT_PARAM_MAXDIMS];
  hf_shape(p, ws);
  shape_text(got, sizeof got, t->ndims, t->shape);
  shape_text(want, sizeof want, p->ndims, ws);
  return dt_error_set(err,
                      "%s: tensor '%s' has shape %s, but the model expects %s (model.n_embd = %ld, "
                      "model.vocab_size = %ld, model.block_size = %ld)",
                      file, tname, got, want, cfg->model_n_embd, cfg->model_vocab_size,
                      cfg->model_block_size);
}

/* A NaN or infinity in a weight would only show as a non-finite loss at step
 * 1, naming neither file nor tensor. Checked after the conversion to floats,
 * so F16/BF16 infinities and F64 values beyond a float's range count too;
 * k is the element's index in the file's layout. */
static int check_finite(const dt_st_file *f, int i, const float *x, size_t n, dt_error *err) {
  for (size_t k = 0; k < n; k++)
    if (!isfinite(x[k]))
      return dt_error_set(err, "%s: tensor '%s' holds %g at element %zu (weights must be finite)",
                          f->path, f->tensors[i].name, (double)x[k], k);
  return 0;
}

/* Reads tensor i of f into parameter p of flat, transposing Conv1D weights. */
static int read_param(dt_st_file *f, int i, const dt_param *p, float *flat, dt_error *err) {
  float *dst = flat + p->offset;
  float *buf = is_conv1d(p) ? dt_malloc(p->count * sizeof(float)) : dst;
  int rc = dt_st_read_f32(f, i, buf, err);
  if (!rc) rc = check_finite(f, i, buf, p->count, err);
  if (buf != dst) {
    const int64_t rows = p->shape[0], cols = p->shape[1]; /* dtrain's (out, in) */
    for (int64_t c = 0; !rc && c < cols; c++)
      for (int64_t r = 0; r < rows; r++) dst[r * cols + c] = buf[c * rows + r];
    free(buf);
  }
  return rc;
}

/* lm_head.weight, when a file has it, must be wte: dtrain has no untied head. */
static int check_lm_head(dt_st_file *f, int i, const dt_param *wte, const float *flat,
                         dt_error *err) {
  const dt_st_tensor *t = &f->tensors[i];
  int same = t->ndims == 2 && t->shape[0] == wte->shape[0] && t->shape[1] == wte->shape[1];
  float *w = NULL;
  if (same) {
    w = dt_malloc(wte->count * sizeof(float));
    if (dt_st_read_f32(f, i, w, err)) return free(w), -1;
    same = memcmp(w, flat + wte->offset, wte->count * sizeof(float)) == 0;
  }
  free(w);
  if (!same)
    return dt_error_set(err, "%s: tensor '%s' differs from wte.weight; dtrain ties the LM head to "
                        "the token embedding (tie_word_embeddings = false is not supported)",
                        f->path, t->name);
  return 0;
}

int dt_hf_gpt2_import(const char *path, const dt_config *cfg, const dt_param *params,
                      int nparams, float *flat, char *file, size_t file_size, dt_error *err) {
  char st_path[4200];
  if (resolve(path, cfg, st_path, sizeof st_path, err)) return -1;
  if (file) snprintf(file, file_size, "%s", st_path);
  dt_st_file f;
  if (dt_st_open(&f, st_path, err)) return -1;
  int *seen = dt_malloc(((size_t)nparams + 1) * sizeof(int)); /* tensor index per parameter */
  for (int k = 0; k < nparams; k++) seen[k] = -1;
  int lm_head = -1, wte = -1, rc = 0;
  for (int i = 0; !rc && i < f.ntensors; i++) {
    const dt_st_tensor *t = &f.tensors[i];
    const size_t pl = strlen(PREFIX);
    const char *name = strncmp(t->name, PREFIX, pl) ? t->name : t->name + pl;
    if (!strcmp(t->name, "lm_head.weight")) {
      lm_head = i;
      continue;
    }
    if (is_mask_buffer(name)) continue;
    int k = 0;
    while (k < nparams && strcmp(params[k].name, name)) k++;
    if (k == nparams) {
      rc = dt_error_set(err,
                        "%s: unexpected tensor '%s': dtrain's GPT-2 with model.n_layer = %ld has "
                        "no such parameter",
                        st_path, t->name, cfg->model_n_layer);
      break;
    }
    if (seen[k] >= 0) {
      rc = dt_error_set(err, "%s: tensors '%s' and '%s' are both %s", st_path,
                        f.tensors[seen[k]].name, t->name, params[k].name);
      break;
    }
    seen[k] = i;
    int64_t want[DT_PARAM_MAXDIMS];
    hf_shape(&params[k], want);
    int ok = t->ndims == params[k].ndims;
    for (int d = 0; ok && d < t->ndims; d++) ok = t->shape[d] == want[d];
    if (!ok) rc = shape_error(st_path, t->name, t, &params[k], cfg, err);
    else rc = read_param(&f, i, &params[k], flat, err);
    if (!strcmp(params[k].name, "wte.weight")) wte = k;
  }
  int missing = 0, first = -1;
  for (int k = 0; !rc && k < nparams; k++)
    if (seen[k] < 0) missing++, first = first < 0 ? k : first;
  if (missing)
    rc = dt_error_set(err, "%s: missing tensor '" PREFIX "%s'%s (model.n_layer = %ld)", st_path,
                      params[first].name,
                      missing > 1 ? " and others" : "", cfg->model_n_layer);
  if (!rc && lm_head >= 0 && wte >= 0) rc = check_lm_head(&f, lm_head, &params[wte], flat, err);
  free(seen);
  dt_st_close(&f);
  return rc;
}

int dt_hf_gpt2_export(const char *path, const dt_param *params, int nparams, const float *flat,
                      dt_error *err) {
  dt_st_out *out = dt_calloc((size_t)nparams + 1, sizeof *out);
  char (*names)[DT_PARAM_NAME + 16] = dt_calloc((size_t)nparams + 1, sizeof *names);
  float **owned = dt_calloc((size_t)nparams + 1, sizeof *owned);
  for (int k = 0; k < nparams; k++) {
    const dt_param *p = &params[k];
    snprintf(names[k], sizeof names[k], PREFIX "%s", p->name);
    out[k].name = names[k];
    out[k].ndims = p->ndims;
    int64_t s[DT_PARAM_MAXDIMS];
    hf_shape(p, s);
    for (int d = 0; d < p->ndims; d++) out[k].shape[d] = s[d];
    out[k].data = flat + p->offset;
    if (is_conv1d(p)) {
      const int64_t rows = p->shape[0], cols = p->shape[1];
      float *t = owned[k] = dt_malloc(p->count * sizeof(float));
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) t[c * rows + r] = flat[p->offset + r * cols + c];
      out[k].data = t;
    }
  }
  /* save_pretrained's metadata, so transformers loads the file as its own */
  static const char *const meta[] = {"format", "pt"};
  int rc = dt_st_write_f32(path, out, nparams, meta, 1, err);
  for (int k = 0; k < nparams; k++) free(owned[k]);
  free(owned), free(names), free(out);
  return rc;
}

int dt_hf_gpt2_write_config(const char *path, const dt_config *cfg, dt_error *err) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return dt_error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
  /* GPT-2's <|endoftext|> is 50256; a smaller vocabulary has no such token,
   * so its last id stands in (as tests/oracle's tiny models do) */
  long eos = cfg->model_vocab_size > 50256 ? 50256 : cfg->model_vocab_size - 1;
  fprintf(fp,
          "{\n"
          "  \"activation_function\": \"gelu_new\",\n"
          "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
          "  \"attn_pdrop\": %g,\n"
          "  \"bos_token_id\": %ld,\n"
          "  \"embd_pdrop\": %g,\n"
          "  \"eos_token_id\": %ld,\n"
          "  \"initializer_range\": 0.02,\n"
          "  \"layer_norm_epsilon\": 1e-05,\n"
          "  \"model_type\": \"gpt2\",\n"
          "  \"n_ctx\": %ld,\n"
          "  \"n_embd\": %ld,\n"
          "  \"n_head\": %ld,\n"
          "  \"n_inner\": null,\n"
          "  \"n_layer\": %ld,\n"
          "  \"n_positions\": %ld,\n"
          "  \"resid_pdrop\": %g,\n"
          "  \"scale_attn_by_inverse_layer_idx\": false,\n"
          "  \"scale_attn_weights\": true,\n"
          "  \"tie_word_embeddings\": true,\n"
          "  \"torch_dtype\": \"float32\",\n"
          "  \"use_cache\": true,\n"
          "  \"vocab_size\": %ld\n"
          "}\n",
          cfg->model_dropout, eos, cfg->model_dropout, eos, cfg->model_block_size,
          cfg->model_n_embd, cfg->model_n_head, cfg->model_n_layer, cfg->model_block_size,
          cfg->model_dropout, cfg->model_vocab_size);
  int ok = fflush(fp) == 0 && !ferror(fp);
  ok = fclose(fp) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return dt_error_set(err, "%s: write failed: %s", path, strerror(errno));
  }
  return 0;
}
