#!/usr/bin/env python3
"""make_hf_import_fixture.py: the oracle for tests/test_hf_io.c, made by Hugging
Face transformers on PyTorch.

Writes into tests/fixtures/:
  hf_gpt2_tiny/           GPT2LMHeadModel.save_pretrained(dir, safe_serialization=True)
                          of a tiny seeded GPT-2 (2 layers, 4 heads, 32 hidden, 97
                          tokens, 16 positions, tanh GELU, no dropout):
                          model.safetensors + config.json (+ generation_config.json)
  hf_gpt2_tiny_logits.h5  /tokens (B, T) int32, /logits (B, T, V) float32: the model's
                          logits in eval mode, for import into dtrain
  st_dtypes.safetensors   the same 2x3 values as F32, F16, BF16 and F64 (each rounded
                          by PyTorch), plus an I64 tensor, written by
                          safetensors.torch.save_file: the reader's conversions
  st_dtypes.json          {tensor: [float32 bit patterns]}: PyTorch's .float() of each

    pip install torch transformers safetensors h5py
    python3 tests/oracle/make_hf_import_fixture.py [FIXTURES_DIR]
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

SEED = 4321
B, T = 3, 16
CFG = dict(n_layer=2, n_head=4, n_embd=32, vocab_size=97, n_positions=16)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures")
    torch.manual_seed(SEED)
    config = GPT2Config(**CFG, activation_function="gelu_new", resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        tie_word_embeddings=True, bos_token_id=CFG["vocab_size"] - 1,
                        eos_token_id=CFG["vocab_size"] - 1)
    model = GPT2LMHeadModel(config).float().eval()
    # HF starts biases at 0 and LayerNorms at (1, 0); perturb every 1-D tensor so
    # an import that drops, swaps or fails to transpose one cannot match by accident
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    assert model.lm_head.weight is model.transformer.wte.weight, "LM head must be tied"

    d = os.path.join(out, "hf_gpt2_tiny")
    if os.path.isdir(d):
        shutil.rmtree(d)
    model.save_pretrained(d, safe_serialization=True)
    with safetensors.safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    print("saved:", " ".join(keys))

    # the logits of the model as saved: reload it, as a user would
    loaded = GPT2LMHeadModel.from_pretrained(d).float().eval()
    tokens = torch.randint(0, CFG["vocab_size"], (B, T), dtype=torch.int64)
    with torch.no_grad():
        logits = loaded(input_ids=tokens).logits
        ref = model(input_ids=tokens).logits
    assert torch.equal(logits, ref), "from_pretrained changed the model"

    tmp = os.path.join(out, "hf_gpt2_tiny_logits.h5.tmp")
    with h5py.File(tmp, "w") as f:
        for k, v in CFG.items():
            f.attrs[k] = np.int64(v)
        f.attrs["seed"] = np.int64(SEED)
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.attrs["safetensors_version"] = str(safetensors.__version__)
        f.attrs["made_by"] = "tests/oracle/make_hf_import_fixture.py"
        f["tokens"] = tokens.numpy().astype(np.int32)
        f["logits"] = np.ascontiguousarray(logits.numpy().astype(np.float32))
    os.replace(tmp, os.path.join(out, "hf_gpt2_tiny_logits.h5"))

    # dtypes: values with exact halves and out-of-range-for-bf16 precision, a
    # subnormal half, an infinity and a negative zero
    x = torch.tensor([[1.0, -2.5, 3.14159265], [6.1e-5, float("inf"), -0.0]], dtype=torch.float32)
    tensors = {"f32": x, "f16": x.half(), "bf16": x.bfloat16(), "f64": x.double(),
               "f16_subnormal": torch.tensor([5.96e-8, -3.0e-5], dtype=torch.float16),
               "i64": torch.arange(4, dtype=torch.int64)}
    safetensors.torch.save_file(tensors, os.path.join(out, "st_dtypes.safetensors"),
                                metadata={"format": "pt", "made_by": "make_hf_import_fixture.py"})
    # the float32 PyTorch makes of each rounded tensor, as bit patterns (exact,
    # and JSON has no infinity)
    expect = {k: [int(b) for b in t.float().numpy().flatten().view(np.uint32)]
              for k, t in tensors.items() if t.is_floating_point()}
    with open(os.path.join(out, "st_dtypes.json"), "w") as f:
        json.dump(expect, f, indent=1)
        f.write("\n")
    print(f"wrote hf_gpt2_tiny/ ({len(keys)} tensors), hf_gpt2_tiny_logits.h5, "
          f"st_dtypes.safetensors; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
