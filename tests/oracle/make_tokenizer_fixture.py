#!/usr/bin/env python3
"""Writes tests/fixtures/gpt2_tokens.json: strings and their GPT-2 token ids
as tiktoken encodes them, for tests/test_bpe.c.

tiktoken's own "gpt2" encoding downloads its files; this builds the same
Encoding from the shared encoder.json / vocab.bpe instead (mergeable ranks are
the encoder's tokens turned back into bytes through GPT-2's byte alphabet),
then checks it against ids everyone knows before writing anything.

    pip install tiktoken
    python3 tests/oracle/make_tokenizer_fixture.py [DATA_DIR]   # default $DTRAIN_DATA or data/

DATA_DIR holds gpt2-tokenizer/, wos/ and english/ (real text lines are taken
from the WOS abstracts, the books and Tiny Shakespeare when present).
"""
import glob
import gzip
import json
import os
import sys

import tiktoken

GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = 50256


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2_encoding(tok_dir):
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    with open(os.path.join(tok_dir, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    ranks = {bytes(decoder[c] for c in tok): i for tok, i in encoder.items()
             if tok != "<|endoftext|>"}
    assert encoder["<|endoftext|>"] == EOT and len(encoder) == 50257
    return tiktoken.Encoding(name="gpt2-local", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT})


HANDWRITTEN = [
    "Hello world", "hello world", " Hello world", "Hello, world!", "", " ", "a", "\n",
    # whitespace runs, trailing whitespace
    "\n\n\n", "   x", "x   ", "a  b", "a \n b", "\t\tindented\n", "line one\r\nline two\r\n",
    "trailing space ", "trailing newline\n", "mixed \t \n\t spaces", "  \n  leading", "\u00a0nbsp\u3000ideographic space",
    # numbers
    "123456789", "3.14", "1,000", "-42", "2024-01-01", "v1.2.3", "\u0661\u0662\u0663 Arabic-Indic digits",
    "\u00bd and \u2163 (No, Nl)",
    # contractions (case-sensitive in GPT-2)
    "don't", "I'M", "we'll've", "it's", "You're", "I'd", "they've", "'s", "''s", "rock 'n' roll",
    # punctuation
    "!!!???...", "-- --- ----", "(a) [b] {c}", "a+b=c; x*y/z", "@user #tag $5 %d ^_^ &amp;",
    "\"quoted\" 'single'", "...\n...",
    # Unicode
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9", "cafe\u0301 (combining acute)", "\u4f60\u597d\uff0c\u4e16\u754c\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "emoji \U0001f600\U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001d400\U0001d401 math bold",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e", "Stra\u00dfe \u00c5ngstr\u00f6m \u0141\u00f3d\u017a",
    "\u2018smart quotes\u2019 \u201cdouble\u201d \u2014 dash\u2026",
    # the special token as plain text
    "<|endoftext|>", "a<|endoftext|>b",
]


def real_lines(data):
    out = []
    x = os.path.join(data, "wos", "WOS1000", "X.txt")
    if os.path.exists(x):
        with open(x, encoding="utf-8") as f:
            lines = f.read().split("\n")
        out += [lines[0][:400], lines[1][:300]]
    for name, start in [("british-novels/Austen_Pride.txt.gz", "It is a truth"),
                        ("wss22-books/*2701*.txt.gz", "Call me Ishmael"),
                        ("wss22-books/*84*.txt.gz", None)]:
        paths = sorted(glob.glob(os.path.join(data, "english", "gutenberg", name)))
        if not paths:
            continue
        text = gzip.open(paths[0]).read().decode("utf-8")
        at = text.find(start) if start else 0
        out.append(text[max(at, 0):max(at, 0) + 300])
    ts = os.path.join(data, "tinyshakespeare", "input.txt")
    if os.path.exists(ts):
        with open(ts, encoding="utf-8") as f:
            out.append(f.read(250))
    return out


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DTRAIN_DATA", "data")
    enc = gpt2_encoding(os.path.join(data, "gpt2-tokenizer"))
    known = {"Hello world": [15496, 995], "hello world": [31373, 995], " the": [262],
             "<|endoftext|>": [27, 91, 437, 1659, 5239, 91, 29]}
    for text, ids in known.items():
        got = enc.encode_ordinary(text)
        assert got == ids, f"{text!r}: {got} != {ids}"
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT]
    cases = []
    for text in HANDWRITTEN + real_lines(data):
        ids = enc.encode_ordinary(text)
        assert enc.decode_bytes(ids) == text.encode("utf-8")
        cases.append({"text": text, "hex": text.encode("utf-8").hex(), "ids": ids})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                       "gpt2_tokens.json")
    with open(out, "w", encoding="ascii") as f:
        f.write('{"tokenizer": "gpt2", "made_by": "tests/oracle/make_tokenizer_fixture.py, '
                f'tiktoken {tiktoken.__version__}", "cases": [\n')
        f.write(",\n".join(json.dumps(c) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {os.path.normpath(out)}: {len(cases)} cases, "
          f"{sum(len(c['ids']) for c in cases)} ids")


if __name__ == "__main__":
    main()
