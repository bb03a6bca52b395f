#!/usr/bin/env python3
"""make_gpt2_fixture.py: writes tests/fixtures/gpt2_tiny.h5, the oracle for
tests/test_gpt.c, from Hugging Face transformers' GPT2LMHeadModel on PyTorch.

A tiny GPT-2 (2 layers, 4 heads, 32 hidden, 97 tokens, 16 positions, tanh
GELU, no dropout) with seeded weights (HF's init, then every bias and
LayerNorm tensor nudged off 0/1), one batch of random tokens, and:
  /weights/<name>   every parameter as HF stores it (Conv1D weights are (C, OC))
  /tokens, /targets (B, T) int32, targets are the next tokens
  /logits (B, T, V), /loss () the mean cross-entropy
  /grads/<name>     d loss / d parameter (wte's includes the tied LM head's)
  /updated/<name>   the weights after one AdamW step (two param groups:
                    weight decay only on 2-D weights)
Root attributes: the config, the AdamW settings and the library versions.

    pip install torch transformers h5py
    python3 tests/oracle/make_gpt2_fixture.py [OUT.h5]
"""
import os
import sys

import h5py
import numpy as np
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

SEED = 1234
B, T = 2, 12
CFG = dict(n_layer=2, n_head=4, n_embd=32, vocab_size=97, n_positions=16)
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fixtures", "gpt2_tiny.h5")
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    config = GPT2Config(**CFG, activation_function="gelu_new", resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        tie_word_embeddings=True, bos_token_id=CFG["vocab_size"] - 1,
                        eos_token_id=CFG["vocab_size"] - 1)
    model = GPT2LMHeadModel(config).float()
    # HF starts biases at 0 and LayerNorms at (1, 0); perturb every 1-D tensor so
    # a model that drops or swaps one of them cannot match by accident
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.train()  # dropout is 0 anyway; train() is what a training step runs in
    assert model.lm_head.weight is model.transformer.wte.weight, "LM head must be tied"

    # one sequence of B*T+1 random tokens cut into inputs and next-token targets
    seq = torch.randint(0, CFG["vocab_size"], (B, T + 1), dtype=torch.int64)
    tokens, targets = seq[:, :T].contiguous(), seq[:, 1:].contiguous()

    # every trainable tensor once (the tied lm_head.weight is wte.weight)
    params = [(n, p) for n, p in model.named_parameters()]
    names = [n for n, _ in params]
    assert "lm_head.weight" not in names, names
    weights = {n: p.detach().clone() for n, p in params}

    logits = model(input_ids=tokens).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                             targets.reshape(-1))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in params}

    decay = [p for n, p in params if p.dim() == 2]
    no_decay = [p for n, p in params if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    opt.step()
    updated = {n: p.detach().clone() for n, p in params}

    def f32(t):
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))

    tmp = out + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k, v in CFG.items():
            f.attrs[k] = np.int64(v)
        f.attrs["layer_norm_epsilon"] = 1e-5
        f.attrs["activation_function"] = "gelu_new"
        f.attrs["batch"] = np.int64(B)
        f.attrs["seq_len"] = np.int64(T)
        f.attrs["seed"] = np.int64(SEED)
        f.attrs["adamw_lr"] = ADAMW["lr"]
        f.attrs["adamw_beta1"] = ADAMW["betas"][0]
        f.attrs["adamw_beta2"] = ADAMW["betas"][1]
        f.attrs["adamw_eps"] = ADAMW["eps"]
        f.attrs["adamw_weight_decay"] = ADAMW["weight_decay"]
        f.attrs["param_names"] = "\n".join(names)
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = str(transformers.__version__)
        f.attrs["made_by"] = "tests/oracle/make_gpt2_fixture.py"
        f["tokens"] = tokens.numpy().astype(np.int32)
        f["targets"] = targets.numpy().astype(np.int32)
        f["logits"] = f32(logits)
        f["loss"] = np.float32(loss.item())
        for n in names:
            f["weights/" + n] = f32(weights[n])
            f["grads/" + n] = f32(grads[n])
            f["updated/" + n] = f32(updated[n])
    os.replace(tmp, out)
    print(f"wrote {os.path.basename(out)}: {len(names)} tensors, loss {loss.item():.6f}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
