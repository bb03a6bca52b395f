#!/usr/bin/env python3
"""Writes tests/fixtures/bleu_sacrebleu.txt: hypothesis/reference sets with the
corpus BLEU and chrF sacreBLEU gives them (its defaults: 13a, mixed case, smooth
'exp'; chrF char order 6, word order 0, beta 2), and strings with their 13a
tokenization, for tests/test_bleu.c.

    pip install sacrebleu
    python3 tests/oracle/make_bleu_fixture.py [DATA_DIR]   # default $DTRAIN_DATA or data/

The small sets are written to exercise the tokenizer and the corner cases of the
score; the realistic set takes references from DATA_DIR/wmt-zh-en/test.en and
makes hypotheses from them by seeded perturbations, so the fixture holds every
line it needs and the test reads nothing else.

The format is line-based so the C test needs no JSON parser: a tab separates a
tag from its fields; strings escape backslash, tab, newline, carriage return and
other invisible characters (\\xHH, \\uHHHH, \\UHHHHHHHH), anything else is UTF-8.
    tok  INPUT  TOKENIZED          13a tokenization of INPUT (after rstrip, as BLEU does)
    set  NAME  NREFS               a set: then per segment one 'hyp' line and NREFS 'ref' lines
    bleu SCORE BP SYS_LEN REF_LEN P1..P4 C1..C4 T1..T4
    line STRING                    sacreBLEU's str() of the BLEU score
    chrf SCORE
    end
"""
import os
import random
import sys
import unicodedata

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'fixtures', 'bleu_sacrebleu.txt')


def esc(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '\\':
            out.append('\\\\')
        elif ch == '\t':
            out.append('\\t')
        elif ch == '\n':
            out.append('\\n')
        elif ch == '\r':
            out.append('\\r')
        elif o < 0x20 or o == 0x7f:
            out.append('\\x%02x' % o)
        elif ch != ' ' and (ch.isspace() or unicodedata.category(ch) in ('Cc', 'Cf', 'Zl', 'Zp', 'Zs', 'Mn')):
            out.append('\\u%04x' % o if o < 0x10000 else '\\U%08x' % o)
        else:
            out.append(ch)
    return ''.join(out)


# ---- small sets: (name, hyps, refs) with refs as one list per reference stream ----

PUNCT = [
    ('Hello, world! How are you?', 'Hello, world! How are you today?'),
    ('He said: "No way" (twice) [sic] {ok} <tag> a/b a|b a~b a^b a_b a`b.',
     'He said: "No way!" (twice) [sic] {ok} <tag> a/b a|b.'),
    ("It's John's book; isn't it?", "It is John's book, isn't it?"),
    ('Wait... what?! Really?!', 'Wait... what? Really!'),
    ('Prices: $5, 10% off & more #deal @shop *now* +1 =2', 'Prices: $5, 10% off & more #deal @shop'),
    ('e-mail me at a.b@c.com, or visit www.x.org/y?z=1&w=2.', 'e-mail me at a.b@c.com or visit www.x.org.'),
    ("'single' quotes and ''double'' ones", "'single' quotes and \"double\" ones"),
    ('a.,b ,.c .,.d,,e..f', 'a., b , . c'),
    ('End with a period .', 'End with a period.'),
    ('Mr.Smith met Dr. Who at 5 p.m. in the U.S.A.', 'Mr. Smith met Dr. Who at 5 p.m. in the U.S.A.'),
]

NUMBERS = [
    ('It costs 1,000.50 dollars, or 3.14 each.', 'It costs 1,000.50 dollars or 3.14 each.'),
    ('From 1990-2000 and 1987 - 1991, pages 3-5.', 'From 1990 - 2000 and 1987-1991, pages 3-5.'),
    ('Version 2.0.1, x.5, .5 and 5. and ,5 and 5,', 'Version 2.0.1, .5 and 5.'),
    ('10,000,000 people; 1.5m; 2-3 times; -5 degrees; 5- items', '10,000,000 people; 1.5 m; 2 - 3 times'),
    ('The 13th meeting on the 30th, at 9:30 a.m., 2018.', 'The 13th meeting was held on the 30th at 9:30 a.m. in 2018.'),
    ('A1-B2, 3a-4b, a1.b2, 1.a, a.1, 1,a, a,1', 'A1 - B2, 3a-4b, a1.b2'),
    ('Call 555-1234 or +86-10-6512-3456.', 'Call 555-1234 or +86 10 6512 3456.'),
]

QUOTES_ENTITIES = [
    ('He said &quot;hello&quot; &amp; left &lt;quickly&gt;.', 'He said "hello" & left <quickly>.'),
    ('AT&amp;T and &amp;lt;b&amp;gt; and &apos;x&apos; and &#39;y&#39; &nbsp;z',
     'AT&T and <b> and \'x\' and \'y\' z'),
    ('Text <skipped> with a <skipped>skip and <skip<skipped>ped>.', 'Text with a skip and.'),
    ('A hyphen-\nated word and a line\nbreak, then --\n\nend.', 'A hyphenated word and a line break, then - end.'),
    ('“Curly quotes” and ‘single’ and «guillemets» and „low“.', '"Curly quotes" and \'single\' and guillemets.'),
    ('Semi&amp colon &AMP; &quot &quot;;', 'Semi& colon &AMP; &quot ";'),
]

HYPHENS = [
    ('A well-known, state-of-the-art system -- really.', 'A well-known state-of-the-art system - really.'),
    ('Em — dash, en – dash, minus − sign, - alone, x- and -y.', 'Em - dash, en - dash, minus - sign.'),
    ('The 2019-nCoV, COVID-19 and H1N1-type viruses.', 'The 2019 - nCoV, COVID-19 and H1N1-type viruses.'),
    ('Hyphen at the end -', 'Hyphen at the end - '),
]

UNICODE = [
    ('Café naïve résumé — Zürich, São Paulo.', 'Café naive résumé - Zürich, Sao Paulo.'),
    ('中国人民 银行 2018年，增长6.5%。', '中国人民银行 2018年，增长 6.5%。'),
    ('Emoji 😀 and 👍🏽, a 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 word.', 'Emoji 😀 and 👍, a Unicode word.'),
    ('no\u00a0break\u3000ideographic\u2028line\u2029para\u2009thin\u202fnarrow end',
     'no break ideographic line para thin narrow end'),
    ('zero\u200bwidth\ufeffbom and com\u0301bining e\u0301', 'zero width bom and combining é'),
    ('ctl\x1cfs\x1dgs\x1ers\x1fus\x85nel\x0bvt\x0cff\rcr tail \t\u3000 ', 'ctl fs gs rs us nel vt ff cr tail'),
    ('Ελληνικά, русский: «привет», עברית.', 'Ελληνικά, русский: «привет».'),
]

EMPTY = [
    ('', 'A reference for an empty hypothesis.'),
    ('   ', 'Another one.'),
    ('Something here.', ''),
    ('The cat sat on the mat.', 'The cat sat on the mat.'),
    ('\t\n', 'Whitespace only.'),
    ('The dog ran.', 'The dog ran away quickly.'),
]

BREVITY = [
    ('The cat.', 'The cat sat on the mat in the sun all day long.'),
    ('A short one', 'A short one that should be a good deal longer than this.'),
    ('Yes, the meeting was held.', 'Yes, the meeting was held in Guangzhou on the 30th of the month.'),
]

SMOOTH4 = [  # 1-, 2- and 3-gram matches, never a 4-gram one
    ('the quick brown dog jumps', 'the quick brown fox jumps'),
    ('a b c x a b c', 'a b c d e f'),
    ('one two three four', 'one two three five'),
]

SHORT = [  # no hypothesis has four words: the 4-gram total is 0
    ('the cat', 'the cat sat'),
    ('on the mat', 'on the mat'),
    ('hi', 'hi there'),
]

NO_MATCH = [
    ('completely different words', 'nothing shared at all here'),
    ('xyz', 'abc def'),
]

ALL_EMPTY = [('', 'some reference'), ('', 'another reference')]

CLIPPING = [
    ('the the the the the the the', 'the cat is on the mat'),
    ('is is is cat cat on on on the mat mat', 'the cat is on the mat'),
]

TWO_REFS = (
    ['It is a guide to action which ensures that the military always obeys the commands of the party.',
     'He read the book because he was interested in world history.',
     'short'],
    [['It is a guide to action that ensures that the military will forever heed Party commands.',
      'He was interested in world history because he read the book.',
      'a short one'],
     ['It is the guiding principle which guarantees the military forces always being under the command of the Party.',
      'He read the book because he was interested in world history.',
      'short answer']],
)

EXTRA_TOKENS = [
    '', ' ', 'a', '.', ',', '-', '5', '5.', '.5', '5,', ',5', '5-', '-5', 'a.', '.a', 'a,b', 'a.b',
    '1.2.3', '1,2,3', '...', '. . .', '--', '5--5', 'x-y', '1-2-3', "don't", "o'clock", '(a)', '[b]',
    '{c}', '<d>', 'a&b', 'a&amp;b', '&quot;&quot;', '&lt;&gt;', '&amp;amp;', '<skipped>', 'a<skipped>b',
    'a-\nb', 'a\nb', 'a-\n', 'trailing spaces   ', 'trailing\u3000', '  leading', 'tab\tinside',
    '$1.50', '3.14,', ',3.14', 'U.S.', 'e.g.,', 'i.e.', 'a/b/c', 'a\\b', 'x^2', 'a_b', 'a`b', 'a~b',
    'a|b', 'a@b', 'a#b', 'a%b', 'a*b', 'a+b', 'a=b', 'a;b', 'a:b', 'a?b', 'a!b', 'a"b', "a'b",
    '中文，标点。', '１２３．４５', '“”‘’', '…', 'ａ．ｂ', '5\u00a0000', '1 000,5', 'é.', '.é', '9.é', 'é.9',
]


def wmt_set(data_dir, n=300):
    """References from test.en (every sixth line), hypotheses by seeded edits."""
    path = os.path.join(data_dir, 'wmt-zh-en', 'test.en')
    with open(path, encoding='utf-8', newline='\n') as f:
        lines = [l.rstrip('\n') for l in f]
    refs = [l for l in lines[::6] if l.strip()][:n]
    rng = random.Random(5)
    vocab = sorted({w for l in refs for w in l.split()})
    hyps = []
    for i, ref in enumerate(refs):
        words = ref.split()
        if i % 50 == 7:
            hyps.append('')
            continue
        out = []
        for w in words:
            r = rng.random()
            if r < 0.08:
                continue  # drop
            if r < 0.16:
                out.append(rng.choice(vocab))  # replace
            elif r < 0.20:
                out.extend([w, rng.choice(vocab)])  # insert
            else:
                out.append(w)
        for _ in range(len(out) // 10):  # local reordering
            if len(out) > 1:
                j = rng.randrange(len(out) - 1)
                out[j], out[j + 1] = out[j + 1], out[j]
        if rng.random() < 0.15:
            out = out[:max(1, int(len(out) * 0.6))]  # truncation: hypotheses run short
        hyps.append(' '.join(out))
    return hyps, [refs]


def main():
    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('DTRAIN_DATA', 'data')
    sets = []
    for name, pairs in [('punctuation', PUNCT), ('numbers', NUMBERS),
                        ('quotes_entities', QUOTES_ENTITIES), ('hyphens', HYPHENS),
                        ('unicode', UNICODE), ('empty_lines', EMPTY), ('brevity', BREVITY),
                        ('smooth_4gram', SMOOTH4), ('short_no_4grams', SHORT),
                        ('no_match', NO_MATCH), ('all_empty_hyp', ALL_EMPTY),
                        ('clipping', CLIPPING)]:
        sets.append((name, [h for h, _ in pairs], [[r for _, r in pairs]]))
    sets.append(('two_refs',) + TWO_REFS)
    sets.append(('wmt19_test_300',) + wmt_set(data_dir))

    tok = Tokenizer13a()
    strings = list(EXTRA_TOKENS)
    for _, hyps, refs in sets[:-1]:
        strings += hyps + [r for stream in refs for r in stream]
    seen, tok_lines = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            tok_lines.append('tok\t%s\t%s\n' % (esc(s), esc(tok(s.rstrip()))))

    out = []
    bleu_sig = chrf_sig = None
    for name, hyps, refs in sets:
        bleu, chrf = BLEU(), CHRF()
        b = bleu.corpus_score(hyps, refs)
        c = chrf.corpus_score(hyps, refs)
        sig = str(bleu.get_signature())
        if len(refs) == 1:
            bleu_sig, chrf_sig = sig, str(chrf.get_signature())
        out.append('set\t%s\t%d\n' % (name, len(refs)))
        for i, h in enumerate(hyps):
            out.append('hyp\t%s\n' % esc(h))
            for stream in refs:
                out.append('ref\t%s\n' % esc(stream[i]))
        fields = [repr(float(b.score)), repr(float(b.bp)), str(b.sys_len), str(b.ref_len)]
        fields += [repr(float(p)) for p in b.precisions]
        fields += [str(int(x)) for x in b.counts] + [str(int(x)) for x in b.totals]
        out.append('bleu\t%s\n' % '\t'.join(fields))
        out.append('line\t%s\n' % esc(str(b)))
        out.append('chrf\t%s\n' % repr(float(c.score)))
        out.append('end\n')
        print('%-16s %s | %s' % (name, b, c), file=sys.stderr)

    head = ['# Written by tests/oracle/make_bleu_fixture.py; do not edit (format in that script).\n',
            '# sacrebleu %s\n' % sacrebleu.__version__,
            '# BLEU signature: %s\n' % bleu_sig,
            '# chrF signature: %s\n' % chrf_sig,
            '# wmt19_test_300: references are every sixth line of wmt-zh-en/test.en\n']
    with open(OUT, 'w', encoding='utf-8', newline='\n') as f:
        f.writelines(head + tok_lines + out)
    print('wrote %s: %d tokenizer strings, %d sets, %d bytes' %
          (os.path.relpath(OUT), len(tok_lines), len(sets), os.path.getsize(OUT)), file=sys.stderr)


if __name__ == '__main__':
    main()
