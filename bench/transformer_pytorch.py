#!/usr/bin/env python3
"""The PyTorch bar for dtrain's translation Transformer (issue 5).

Trains torch.nn.Transformer on exactly the data dtrain trains on -- the pair
shards written by `dtrain-prep translation` (train.h5, valid.h5, test.h5) --
with the same model, batching, loss, optimizer and schedule as a dtrain config
(default configs/transformer-wmt19.ini), for a wall-clock training budget;
then beam search on test.h5 (dtrain's decode.* settings: beam 4, GNMT length
penalty 0.6, at most 1.5 * source + 10 tokens), detokenized with the run's BPE
tokenizer and scored with sacrebleu against the test shard's own targets.

    python3 bench/transformer_pytorch.py --data DATA_DIR --minutes 30 --out results.jsonl

Matched to dtrain (models/transformer.c, launch/train.c, runtime/pairdata.c,
runtime/beam.c): d_model/heads/layers/FFN/ReLU/post-LN from the config, one
embedding table for source, target and the output projection (no output bias),
embeddings scaled by sqrt(d_model) plus sinusoidal positions, no final
LayerNorm after a post-LN stack (the paper; nn.Transformer's own is removed),
Xavier-uniform projections and N(0, d^-1/2) embeddings; label-smoothed
cross-entropy averaged over the batch's target tokens; Adam with the
inverse-sqrt schedule (linear warmup to optim.lr over warmup_steps, then
lr * sqrt(warmup / step)); batches of length-sorted pairs of at most
train.batch_tokens padded tokens (0: no cap) and train.batch_size sentences, a
multiple of train.batch_multiple, in a seeded shuffled order per epoch. The
encoder reads src + eos, the decoder bos + tgt and predicts tgt + eos.
Dropout is model.dropout (the paper's P_drop, --dropout overrides it) where
dtrain puts it: on the embedding sums and every sublayer's output, none on the
attention probabilities or after the FFN activation. On CUDA the forward runs
under bf16 autocast with fp32 weights and fused Adam, on the CPU in fp32.

Arguments after the options are dtrain-style overrides (section.key=value):
the model, train, optim and decode keys below are applied, others are ignored
(and listed), so bench/transformer.sh can hand both systems the same ones.
Tokens/s counts target tokens (with eos) per second of training, as dtrain's
tok/s does. Appends one JSON line with the results to --out.
"""
import argparse
import configparser
import datetime
import json
import math
import os
import platform
import random
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- config

USED_KEYS = {
    "model": ["dropout", "n_embd", "n_head", "n_enc_layer", "n_dec_layer", "d_ff", "norm", "activation",
              "pos", "share_embeddings", "block_size", "vocab_size"],
    "train": ["batch_size", "batch_tokens", "batch_multiple", "label_smoothing", "seed",
              "device"],
    "optim": ["lr", "warmup_steps", "beta1", "beta2", "eps", "weight_decay", "schedule",
              "grad_clip", "name"],
    "decode": ["beam", "len_penalty", "max_len_a", "max_len_b", "batch"],
    "log": ["every"],
}
DEFAULTS = {  # dtrain's defaults (runtime/config.c) for keys a config may leave out
    "model.dropout": "0", "model.n_embd": "768", "model.n_head": "12", "model.n_enc_layer": "6",
    "model.n_dec_layer": "6", "model.d_ff": "2048", "model.norm": "post",
    "model.activation": "relu", "model.pos": "sinusoidal", "model.share_embeddings": "true",
    "model.block_size": "1024", "train.batch_size": "64", "train.batch_tokens": "0",
    "train.batch_multiple": "8", "train.label_smoothing": "0.1", "train.seed": "1234",
    "train.device": "auto", "optim.lr": "1e-3", "optim.warmup_steps": "0", "optim.beta1": "0.9",
    "optim.beta2": "0.999", "optim.eps": "1e-8", "optim.weight_decay": "0",
    "optim.schedule": "cosine", "optim.grad_clip": "0", "optim.name": "adam",
    "decode.beam": "4", "decode.len_penalty": "0.6", "decode.max_len_a": "1.5",
    "decode.max_len_b": "10", "decode.batch": "32", "log.every": "50",
}


def load_config(path, overrides):
    cp = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    cp.read(path)
    cfg = dict(DEFAULTS)
    for sec in cp.sections():
        for k, v in cp.items(sec):
            cfg[f"{sec}.{k}"] = v.strip()
    ignored = []
    for o in overrides:
        if "=" not in o or "." not in o.split("=", 1)[0]:
            sys.exit(f"transformer_pytorch.py: bad override '{o}' (section.key=value)")
        k, v = o.split("=", 1)
        sec, key = k.split(".", 1)
        if key in USED_KEYS.get(sec, []):
            cfg[k] = v
        else:
            ignored.append(o)
    if ignored:
        print("ignored (dtrain-only) overrides: " + " ".join(ignored))
    return cfg


def cfg_int(cfg, k):
    return int(float(cfg[k]))


def cfg_bool(cfg, k):
    return cfg[k].lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------- data

def attr(f, name):
    return int(np.asarray(f.attrs[name]).reshape(-1)[0])


class Pairs:
    """One pair shard: sentences as numpy arrays, without bos/eos."""

    def __init__(self, path):
        with h5py.File(path, "r") as f:
            st, so = f["src_tokens"][:].astype(np.int64), f["src_offsets"][:]
            tt, to = f["tgt_tokens"][:].astype(np.int64), f["tgt_offsets"][:]
            self.kept = f["kept_lines"][:] if "kept_lines" in f else None
            self.vocab, self.pad = attr(f, "vocab_size"), attr(f, "pad_id")
            self.bos, self.eos = attr(f, "bos_id"), attr(f, "eos_id")
        self.src = [st[so[i]:so[i + 1]] for i in range(len(so) - 1)]
        self.tgt = [tt[to[i]:to[i + 1]] for i in range(len(to) - 1)]
        self.n = len(self.src)

    def src_len(self, i):  # + eos
        return len(self.src[i]) + 1

    def tgt_len(self, i):  # bos + target
        return len(self.tgt[i]) + 1


def make_batches(P, max_tokens, max_sentences, multiple, max_len):
    """runtime/pairdata.c's dt_pair_batches_make: length-sorted pairs cut
    greedily into batches of n * longest side <= max_tokens, n <= max_sentences,
    trimmed to a multiple of `multiple`. Returns (batches, skipped)."""
    skipped = 0
    usable = []
    for i in range(P.n):
        if P.src_len(i) > max_len or P.tgt_len(i) > max_len:
            skipped += 1
        else:
            usable.append(i)
    usable.sort(key=lambda i: (max(P.src_len(i), P.tgt_len(i)), P.tgt_len(i), P.src_len(i), i))
    batches, i, m = [], 0, len(usable)
    while i < m:
        n, longest = 0, 0
        while i + n < m and n < max_sentences:
            p = usable[i + n]
            lg = max(longest, P.src_len(p), P.tgt_len(p))
            if (n + 1) * lg > max_tokens:
                break
            longest, n = lg, n + 1
        keep = n - n % multiple
        if keep == 0:
            drop = n if n > 0 else 1
            skipped += drop
            i += drop
            continue
        batches.append(usable[i:i + keep])
        i += keep
    return batches, skipped


def fill(P, idx):
    """runtime/pairdata.c's dt_pair_fill: src + eos | bos + tgt | tgt + eos (-1 pad)."""
    n = len(idx)
    S = max(P.src_len(i) for i in idx)
    T = max(P.tgt_len(i) for i in idx)
    src = np.full((n, S), P.pad, np.int64)
    tok = np.full((n, T), P.pad, np.int64)
    y = np.full((n, T), -1, np.int64)
    for r, i in enumerate(idx):
        s, t = P.src[i], P.tgt[i]
        src[r, :len(s)] = s
        src[r, len(s)] = P.eos
        tok[r, 0] = P.bos
        tok[r, 1:len(t) + 1] = t
        y[r, :len(t)] = t
        y[r, len(t)] = P.eos
    return torch.from_numpy(src), torch.from_numpy(tok), torch.from_numpy(y)


# ---------------------------------------------------------------- tokenizer

def bytes_to_unicode():
    """GPT-2's byte <-> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class Detokenizer:
    """ids -> text with OUT/tokenizer/encoder.json (GPT-2 format); specials dropped."""

    def __init__(self, tokdir):
        with open(os.path.join(tokdir, "encoder.json"), encoding="utf-8") as f:
            enc = json.load(f)
        byte_dec = {c: b for b, c in bytes_to_unicode().items()}
        self.pieces = {}
        for piece, i in enc.items():
            if piece.startswith("<") and piece.endswith(">") and len(piece) > 2:
                self.pieces[i] = b""  # <pad> <bos> <eos>
            else:
                self.pieces[i] = bytes(byte_dec[c] for c in piece)

    def __call__(self, ids):
        return b"".join(self.pieces[int(i)] for i in ids).decode("utf-8", errors="replace")


# ---------------------------------------------------------------- model

def sinusoids(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe.float()


class Seq2Seq(nn.Module):
    def __init__(self, V, D, H, Le, Ld, Fd, max_pos, pre, learned, shared, act, dropout, pad):
        super().__init__()
        self.D, self.pad = D, pad
        self.tr = nn.Transformer(d_model=D, nhead=H, num_encoder_layers=Le, num_decoder_layers=Ld,
                                 dim_feedforward=Fd, dropout=dropout, activation=act,
                                 batch_first=True, norm_first=pre)
        self.tr.encoder.enable_nested_tensor = False  # padded tensors throughout
        # dtrain's (the paper's, fairseq transformer_wmt_en_de's) dropout: on the
        # embedding sums and each sublayer's output only, none on the attention
        # probabilities or after the FFN activation
        for layer in list(self.tr.encoder.layers) + list(self.tr.decoder.layers):
            layer.self_attn.dropout = 0.0
            if hasattr(layer, "multihead_attn"):
                layer.multihead_attn.dropout = 0.0
            layer.dropout.p = 0.0
        if not pre:  # the paper's post-LN stacks end in a LayerNorm already
            self.tr.encoder.norm = None
            self.tr.decoder.norm = None
        self.src_emb = nn.Embedding(V, D)
        self.tgt_emb = self.src_emb if shared else nn.Embedding(V, D)
        self.out = None if shared else nn.Linear(D, V, bias=False)
        for e in {self.src_emb, self.tgt_emb}:
            nn.init.normal_(e.weight, 0.0, D ** -0.5)
        if self.out is not None:
            nn.init.xavier_uniform_(self.out.weight)
        if learned:
            self.src_pos = nn.Parameter(torch.randn(max_pos, D) * D ** -0.5)
            self.tgt_pos = nn.Parameter(torch.randn(max_pos, D) * D ** -0.5)
        else:
            self.register_buffer("pe", sinusoids(max_pos, D), persistent=False)
            self.src_pos = self.tgt_pos = None
        self.drop = nn.Dropout(dropout)
        self.scale = math.sqrt(D)

    def embed(self, emb, pos, x):
        p = (self.pe if pos is None else pos)[: x.shape[1]]
        return self.drop(emb(x) * self.scale + p)

    def encode(self, src):
        mask = src == self.pad
        return self.tr.encoder(self.embed(self.src_emb, self.src_pos, src),
                               src_key_padding_mask=mask), mask

    def decode(self, tok, mem, mem_mask, last_only=False):
        T = tok.shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tok.device), 1)
        h = self.tr.decoder(self.embed(self.tgt_emb, self.tgt_pos, tok), mem, tgt_mask=causal,
                            tgt_key_padding_mask=tok == self.pad,
                            memory_key_padding_mask=mem_mask)
        w = self.tgt_emb.weight if self.out is None else self.out.weight
        return F.linear(h[:, -1] if last_only else h, w)

    def forward(self, src, tok):
        mem, mask = self.encode(src)
        return self.decode(tok, mem, mask)


# ---------------------------------------------------------------- beam search

@torch.inference_mode()
def beam_search(model, P, idx, K, alpha, len_a, len_b, max_steps, max_src, dev, autocast):
    """runtime/beam.c's dt_beam_search for one group of sentences: every row
    expands by all tokens (pad and bos never), candidates taken best first;
    one ending in eos (or any at the last step) is finished with score /
    ((5 + len) / 6)^alpha, len counting eos; a sentence is done after K
    finished hypotheses; the best finished one is the output."""
    B = len(idx)
    ls = [min(len(P.src[i]), max_src - 1) for i in idx]
    ts = max(ls) + 1
    src = torch.full((B, ts), P.pad, dtype=torch.long)
    for r, i in enumerate(idx):
        src[r, :ls[r]] = torch.from_numpy(P.src[i][:ls[r]])
        src[r, ls[r]] = P.eos
    src = src.to(dev)
    max_len = max(1, int(min(float(max_steps), len_a * (ts - 1) + len_b)))
    with autocast():
        mem, mask = model.encode(src)
    R = B * K
    mem = mem.repeat_interleave(K, 0)
    mask = mask.repeat_interleave(K, 0)
    hist = torch.full((R, 1), P.bos, dtype=torch.long, device=dev)
    score = torch.full((R,), -math.inf, dtype=torch.float64)
    score[::K] = 0.0
    done = [False] * B
    nfin = [0] * B
    best = [-math.inf] * B
    best_tok = [[] for _ in range(B)]
    for t in range(max_len):
        with autocast():
            logits = model.decode(hist, mem, mask, last_only=True)
        lp = F.log_softmax(logits.float(), -1)
        lp[:, P.pad] = -math.inf
        if P.bos != P.eos:
            lp[:, P.bos] = -math.inf
        cand = score.to(dev)[:, None] + lp.double()
        top, ti = cand.view(B, K * lp.shape[1]).topk(2 * K, -1)
        top, ti = top.cpu().tolist(), ti.cpu().tolist()
        V = lp.shape[1]
        parents, tokens, nscore = list(range(R)), [P.eos] * R, [-math.inf] * R
        h_cpu = None
        last_step = t + 1 == max_len
        all_done = True
        for b in range(B):
            live = 0
            if not done[b]:
                for x, j in zip(top[b], ti[b]):
                    if live >= K or done[b]:
                        break
                    if x == -math.inf:
                        continue
                    row, tok = b * K + j // V, j % V
                    if tok == P.eos or last_step:
                        ns = x / (((5.0 + t + 1) / 6.0) ** alpha if alpha else 1.0)
                        if ns > best[b]:
                            if h_cpu is None:
                                h_cpu = hist.cpu().tolist()
                            best[b] = ns
                            best_tok[b] = h_cpu[row][1:] + ([] if tok == P.eos else [tok])
                        nfin[b] += 1
                        if nfin[b] >= K:
                            done[b] = True
                        continue
                    r = b * K + live
                    live += 1
                    parents[r], tokens[r], nscore[r] = row, tok, x
                if not done[b] and live > 0 and alpha == 0.0:
                    if max(nscore[b * K:b * K + live]) <= best[b]:
                        done[b] = True
                if live == 0:
                    done[b] = True
            for k in range(0 if done[b] else live, K):
                r = b * K + k
                parents[r], tokens[r], nscore[r] = r, P.eos, -math.inf
            all_done &= done[b]
        pi = torch.tensor(parents, device=dev)
        hist = torch.cat([hist[pi], torch.tensor(tokens, device=dev)[:, None]], 1)
        score = torch.tensor(nscore, dtype=torch.float64)
        if all_done:
            break
    return best_tok


# ---------------------------------------------------------------- main

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dtrain-prep translation output directory")
    ap.add_argument("--config", default=os.path.join(here, "..", "configs",
                                                     "transformer-wmt19.ini"))
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    ap.add_argument("--dropout", type=float, default=None,
                    help="default: model.dropout of the config (dtrain's placement)")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: train.device, auto)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--test-limit", type=int, default=0,
                    help="translate only the first N test pairs (0 = all)")
    ap.add_argument("--hyp", default=None, help="write the test translations here")
    ap.add_argument("--out", default=None, help="append one JSON line of results here")
    ap.add_argument("overrides", nargs="*", help="section.key=value (dtrain-style)")
    a = ap.parse_args()

    cfg = load_config(a.config, a.overrides)
    if a.dropout is None:
        a.dropout = float(cfg["model.dropout"])
    want = a.device or cfg["train.device"]
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(want)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cuda = dev.type == "cuda"
    if cuda:
        desc = torch.cuda.get_device_name(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        desc = f"CPU, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    seed = cfg_int(cfg, "train.seed")
    random.seed(seed)
    torch.manual_seed(seed)

    t_load = time.perf_counter()
    train = Pairs(os.path.join(a.data, "train.h5"))
    valid = Pairs(os.path.join(a.data, "valid.h5"))
    test = Pairs(os.path.join(a.data, "test.h5"))
    V = train.vocab
    if cfg.get("model.vocab_size") and cfg_int(cfg, "model.vocab_size") != V:
        print(f"note: model.vocab_size = {cfg['model.vocab_size']} in the config; the shards' "
              f"{V} is used")
    D, H = cfg_int(cfg, "model.n_embd"), cfg_int(cfg, "model.n_head")
    max_len = cfg_int(cfg, "model.block_size")
    btok = cfg_int(cfg, "train.batch_tokens") or (1 << 62)
    bsz, mult = cfg_int(cfg, "train.batch_size"), cfg_int(cfg, "train.batch_multiple")
    batches, skipped = make_batches(train, btok, bsz, mult, max_len)
    vbatches, _ = make_batches(valid, btok, bsz, 1, max_len)
    ntgt = [sum(train.tgt_len(i) for i in b) for b in batches]
    tb = [tuple(x.to(dev) for x in fill(train, b)) for b in batches]
    vb = [tuple(x.to(dev) for x in fill(valid, b)) for b in vbatches]
    print(f"data: {sum(map(len, batches))} train pairs in {len(batches)} batches "
          f"({skipped} left out), {len(vbatches)} valid batches, {test.n} test pairs; "
          f"vocab {V}; loaded in {time.perf_counter() - t_load:.1f} s")

    model = Seq2Seq(V, D, H, cfg_int(cfg, "model.n_enc_layer"), cfg_int(cfg, "model.n_dec_layer"),
                    cfg_int(cfg, "model.d_ff"), max_len, cfg["model.norm"] == "pre",
                    cfg["model.pos"] == "learned", cfg_bool(cfg, "model.share_embeddings"),
                    cfg["model.activation"], a.dropout, train.pad).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    lr0, W = float(cfg["optim.lr"]), cfg_int(cfg, "optim.warmup_steps")
    if cfg["optim.schedule"] != "inverse_sqrt" or cfg["optim.name"] != "adam":
        print(f"note: optim.name = {cfg['optim.name']}, optim.schedule = {cfg['optim.schedule']}; "
              f"this script always runs Adam with the inverse-sqrt schedule")
    opt = torch.optim.Adam(model.parameters(), lr=lr0,
                           betas=(float(cfg["optim.beta1"]), float(cfg["optim.beta2"])),
                           eps=float(cfg["optim.eps"]),
                           weight_decay=float(cfg["optim.weight_decay"]),
                           **({"fused": True} if cuda else {}))
    clip = float(cfg["optim.grad_clip"])
    smoothing = float(cfg["train.label_smoothing"])
    log_every = cfg_int(cfg, "log.every")

    def lr_at(s):  # launch/train.c's lr_at for inverse_sqrt
        if s < W:
            return lr0 * (s + 1) / W
        return lr0 * math.sqrt(max(W, 1) / (s + 1))

    print(f"device: {desc}; torch {torch.__version__}; "
          f"{'bf16 autocast' if cuda else 'fp32'}")
    print(f"model: nn.Transformer d_model {D}, {H} heads, {cfg['model.n_enc_layer']}+"
          f"{cfg['model.n_dec_layer']} layers, FFN {cfg['model.d_ff']}, {cfg['model.norm']}-LN, "
          f"dropout {a.dropout}; {nparams} parameters")
    budget = a.minutes * 60.0
    step, epoch, tokens, loss_v = 0, 0, 0, float("nan")
    model.train()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    t_log, tok_log = t0, 0
    out_of_time = False
    while not out_of_time:
        order = list(range(len(batches)))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        for b in order:
            lr = lr_at(step)
            for g in opt.param_groups:
                g["lr"] = lr
            src, tok, y = tb[b]
            with autocast():
                logits = model(src, tok)
            loss = F.cross_entropy(logits.float().view(-1, V), y.view(-1), ignore_index=-1,
                                   label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            step += 1
            tokens += ntgt[b]
            tok_log += ntgt[b]
            if step % log_every == 0 or step == 1:
                loss_v = loss.item()  # synchronises
                now = time.perf_counter()
                print(f"step {step:6d} | epoch {epoch + 1} | loss {loss_v:.4f} | lr {lr:.3e} | "
                      f"{tok_log / (now - t_log):8.0f} tok/s | {now - t0:.1f} s", flush=True)
                t_log, tok_log = now, 0
                if not math.isfinite(loss_v):
                    sys.exit(f"step {step}: loss is {loss_v}")
            if time.perf_counter() - t0 >= budget:
                out_of_time = True
                break
        else:
            epoch += 1
    if cuda:
        torch.cuda.synchronize()
    train_time = time.perf_counter() - t0
    epochs_f = epoch + (order.index(b) + 1) / len(order) if out_of_time else epoch
    tps = tokens / train_time
    print(f"done: {step} steps, {epochs_f:.2f} epochs, {train_time:.1f} s training, "
          f"{tps:.0f} tok/s (target tokens)")

    # plain cross-entropy on valid.h5 (not counted in the budget)
    model.eval()
    tot, n = 0.0, 0
    with torch.inference_mode():
        for src, tok, y in vb:
            with autocast():
                logits = model(src, tok)
            tot += F.cross_entropy(logits.float().view(-1, V), y.view(-1), ignore_index=-1,
                                   reduction="sum").item()
            n += int((y >= 0).sum())
    val_loss = tot / n
    print(f"valid: loss {val_loss:.4f}, ppl {math.exp(min(val_loss, 50)):.2f}")

    # beam search on test.h5, in dtrain-translate's groups (sorted by length)
    import sacrebleu
    detok = Detokenizer(os.path.join(a.data, "tokenizer"))
    nt = min(test.n, a.test_limit) if a.test_limit > 0 else test.n
    K, alpha = cfg_int(cfg, "decode.beam"), float(cfg["decode.len_penalty"])
    la, lb = float(cfg["decode.max_len_a"]), cfg_int(cfg, "decode.max_len_b")
    group = cfg_int(cfg, "decode.batch")
    order = sorted(range(nt), key=lambda i: (len(test.src[i]), i))
    hyp_ids = [None] * nt
    t1 = time.perf_counter()
    for g0 in range(0, nt, group):
        idx = order[g0:g0 + group]
        for i, h in zip(idx, beam_search(model, test, idx, K, alpha, la, lb, max_len, max_len,
                                         dev, autocast)):
            hyp_ids[i] = h
    decode_s = time.perf_counter() - t1
    hyps = [detok(h) for h in hyp_ids]
    refs = [detok(test.tgt[i]) for i in range(nt)]
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    print(f"test: {nt} sentences, beam {K}, len_penalty {alpha}, decoded in {decode_s:.1f} s")
    print(f"{bleu}\n{chrf}")
    if a.hyp:
        with open(a.hyp, "w", encoding="utf-8") as f:
            f.writelines(h + "\n" for h in hyps)
    res = {
        "system": "pytorch-nn.Transformer",
        "date": datetime.date.today().isoformat(),
        "device": desc,
        "torch": torch.__version__,
        "precision": "bf16-autocast" if cuda else "fp32",
        "config": os.path.basename(a.config),
        "overrides": a.overrides,
        "dropout": a.dropout,
        "params": nparams,
        "budget_s": budget,
        "train_time_s": round(train_time, 2),
        "steps": step,
        "epochs": round(epochs_f, 3),
        "train_tokens": tokens,
        "tokens_per_s": round(tps, 1),
        "val_loss": round(val_loss, 4),
        "test_sentences": nt,
        "beam": K,
        "len_penalty": alpha,
        "bleu": round(bleu.score, 2),
        "bleu_str": str(bleu),
        "chrf": round(chrf.score, 2),
        "decode_s": round(decode_s, 1),
    }
    if a.out:
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
