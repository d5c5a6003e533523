"""tok_strings.py — the strings the tokenizer parity tests feed to both our
tokenizer and HF's: hand-picked hard cases, then seeded generated ones per
category (CJK, Arabic, Devanagari, emoji ZWJ sequences, combining marks,
whitespace runs, tabs/newlines, digit runs, source code, special-token
look-alikes, invalid UTF-8), then seeded random mixes of all of them.
strings() is deterministic (same list on every machine). Invalid UTF-8 cases
are `bytes`; every other case is a `str`."""
import random

ENGLISH = [
    "Hello world", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "I'm sure you'll see they've done it; we'd go, but he's not.", "DON'T SHOUT. I'M HERE, YOU'LL SEE.",
    "it'S weird'LL mixed'Re case'VE", "rock 'n' roll 'tis the season", "O'Reilly's", "quotes 'single' and \"double\"",
    "e-mail: someone@example.com, https://example.org/path?q=1&x=y#frag",
    "Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal.",
    "a", "A", " a", "a ", " ", "", "  ", "\n", "\t", "hello\nworld", "hello\n\nworld\n\n\n", "trailing spaces   ",
    "   leading spaces", "mixed \t tabs\t\tand  spaces", "line1\r\nline2\r\n", "\r", "\r\r\n\n", "end.\n",
    "multiple     internal      spaces", "UPPER lower Title MiXeD", "supercalifragilisticexpialidocious",
    "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "Ça va? Très bien, merci.",
    "naïve café résumé coöperate", "Straße groß Fußgänger", "Ångström Øre Æble",
]
CODE = [
    "int main(void) { return 0; }", "#include <stdio.h>\n\nint main(int argc, char **argv)\n{\n    printf(\"%d\\n\", argc);\n}\n",
    "def f(x):\n    return x * 2  # double\n", "for (size_t i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "if (a && b || !c) x = y ^ z; else x >>= 2;", '{"key": [1, 2.5, true, null], "nested": {"a": "b"}}',
    "<html><body><div class=\"x\">hi</div></body></html>", "SELECT * FROM users WHERE id = 42;",
    "x = [i**2 for i in range(10) if i % 2 == 0]", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "    indented four\n        indented eight\n", "\t\tdouble tab\n\t\t\ttriple tab", "a->b->c; p = &q; *p++ = 0;",
    "// comment\n/* block\n * comment */", "lambda x: x if x else None", "$ ls -la | grep '^d' > out.txt 2>&1",
    "git commit -m 'fix: handle edge-case #123'", "0x1F 0xdeadbeef 0b1010 1e-9 3.14159 -42 +7",
]
CJK = [
    "日本語のテキスト", "你好，世界！", "我爱北京天安门。", "안녕하세요 세계", "한국어 텍스트입니다", "東京は日本の首都です。",
    "中文English混合text", "カタカナ ひらがな 漢字", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "「引用」『二重』【括弧】",
]
EMOJI = [
    "🤖", "👋 hello", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "👍🏽", "🇺🇸🇯🇵🇩🇪", "❤️‍🔥", "🧑🏿‍💻 coder", "😀😃😄😁",
    "emoji in text 🎉 party 🎉🎉", "⭐️✨🌟", "🫠🫡🫥", "keycap 1️⃣ #️⃣",
]
SCRIPTS = [
    "مرحبا بالعالم", "السَّلَامُ عَلَيْكُمْ", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया", "हिन्दी भाषा", "สวัสดีชาวโลก",
    "Привет, мир!", "Ελληνικά γράμματα", "Հայերեն", "ქართული", "ትግርኛ", "ᚠᚢᚦᚨᚱᚲ", "𝕳𝖊𝖑𝖑𝖔 𝔐𝔞𝔱𝔥",
    "Tiếng Việt có dấu", "Zürich Köln Düsseldorf",
]
COMBINING = [
    "e\u0301", "cafe\u0301", "n\u0303o", "a\u0308\u0304", "Z\u0351\u0352\u0353\u0354a\u0355\u0356l\u0357g\u0358o\u0359",
    "\u0301 leading combining", "o\u0323\u0302", "o\u0302\u0323", "\u1100\u1161\u11a8", "\u1100\u1161",
    "A\u030a", "\u212b", "\u2126 ohm", "\u0041\u0327\u0301", "q\u0307\u0323", "ḍ̇", "\u0958\u0959",
    "x" + "\u0300" * 30, "\u00e9\u0301", "\ufb01 ligature \ufb02", "\u2460\u2461 circled", "\u00bd \u2153",
    # composition exclusions only: NFC makes the text longer than it was (3 -> 6 bytes a char)
    "\u0958\u0959\u095a" * 40, "\ufb2c" * 30, "\u0958", "a\u0958b",
]
WHITESPACE = [" " * k + "x" for k in range(1, 41)] + ["x" + " " * k + "y" for k in (2, 3, 7, 16, 31, 32, 33, 40, 64)] + [
    "\t" * k + "x" for k in (1, 2, 5, 31, 32, 40)] + ["\n" * k + "x" for k in (1, 2, 3, 10, 31, 32, 35)] + [
    "x\u00a0y", "x\u3000y", "x\u2009y", "x\u200by", "x\u2028y", "x\u0085y", " \n \n ", "\n \t \r\n ",
    "a \n b", "a\t\nb", "  \t  ", " " * 100, "\t \t \t", "x \ny", "x  \n  y"]
DIGITS = [
    "1", "12", "123", "1234", "12345", "1234567890", "3.14159265358979", "1,234,567.89", "2024-01-15",
    "phone: +1 (555) 123-4567", "v1.2.3-rc4", "١٢٣٤٥ arabic digits", "४२ devanagari", "Ⅻ roman", "10^9 2³ x₁",
    "000000000000000000000000", "9" * 50,
]
SPECIAL_LOOKING = [
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>", "<start_of_tur", "<<start_of_turn>>",
    "<bos>hello<eos>", "<pad><unk><mask>", "<unused0> <unused99> <unused6241>", "<b>bold</b> <i>it</i> <table>",
    "[multimodal]", "<start_of_image><end_of_image>", "<|im_start|>system\nYou are helpful.<|im_end|>\n",
    "<|im_start|>user", "<|endoftext|>", "<|im_end|><|im_end|>", "<think>\nreasoning\n</think>\n\nanswer",
    "<tool_call>{\"name\": \"f\"}</tool_call>", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|reserved_special_token_5|>", "<|eot_id", "|im_end|>", "</s><s>", "<0x41>", "<0x00>", "<0xFF><0xZZ><0x-1>",
    "<0x0A>\n<0x20> ", "text<0xE3><0x81><0x82>text", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
]
ODD = [
    "\u0000nul", "bell\u0007", "\u007f del", "\ufeffBOM", "\ufffd replacement", "\ue000 private use", "\U0010fffd",
    "\u200d zwj alone", "\u00ad soft hyphen", "\u2029 para sep", "\U0001f600" * 20, "a" * 300, "ab" * 150,
    "ſ long s 'ſ", "İstanbul ıi", "ΣΑΣ σας", "ǅ ǈ titlecase",
]


SPECIAL_NAMES = [
    "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<start_of_image>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|eom_id|>", "<|python_tag|>", "<|reserved_special_token_0|>", "<|start|>", "<|channel|>", "<|message|>",
    "<|end|>", "<|return|>", "<|call|>", "<|constrain|>", "<|startoftext|>", "<|endofprompt|>",
    "<|reserved_200000|>", "<|reserved_201087|>", "<0x41>",
]
WORDS = ("the of and to in is that for it as with was on be by at this from or an are not but have "
         "which they you we his her one all there been more if can would will about when who has "
         "Model Token Server Request ERROR Warning JSON HTTP GPU CUDA Llama Qwen Gemma OpenAI").split()
CODE_LINES = [
    "def {f}({a}, {b}):", "    return {a} {op} {b}", "int {f}(int {a}, int {b}) {{ return {a} {op} {b}; }}",
    "for (int {a} = 0; {a} < {n}; ++{a}) {{", "    {a}[{b}] = {f}({a}, {n});", "}}", "{a} = [{n}, {n}, {n}]",
    "if {a} {op}= {b}:", "    print(f\"{{{a}}} {{{b}!r}}\")", "const {a} = ({b}) => {b} {op} {n};",
    "#define {F}({a}) (({a}) {op} {n})", "// TODO({f}): fix {a}->{b}", "/* {f} */", "SELECT {a}, {b} FROM t_{f};",
    "let {a}: Vec<u32> = vec![{n}; {n}];", "<div id=\"{f}\">{a}</div>", "  - {f}: {{{a}: {n}}}", "\t{a}\t:= {b}",
]


def _gen(rng):
    """Generated cases per category, 130 each (deterministic for a seeded rng)."""
    cats = []
    # CJK: Han, kana, Hangul syllables and jamo, fullwidth forms, CJK punctuation
    cjk = [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x1100, 0x11FF), (0xFF01, 0xFF5E),
           (0x3000, 0x303F), (0x20000, 0x2A6DF)]
    cats.append(["".join(chr(rng.randint(*rng.choice(cjk))) if rng.random() > 0.1 else rng.choice(" ,.!?\n1a")
                         for _ in range(rng.randint(1, 24))) for _ in range(130)])
    # Arabic and Devanagari: letters, marks (harakat, matras, virama), digits, punctuation
    ar = [(0x0621, 0x064A), (0x064B, 0x0652), (0x0660, 0x0669), (0x06F0, 0x06F9), (0x060C, 0x060C)]
    dv = [(0x0905, 0x0939), (0x093E, 0x094D), (0x0966, 0x096F), (0x0964, 0x0965), (0x0900, 0x0903)]
    for ranges in (ar, dv):
        cats.append([" ".join("".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 8)))
                              for _ in range(rng.randint(1, 6))) for _ in range(130)])
    # emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors
    base = [0x1F468, 0x1F469, 0x1F9D1, 0x1F466, 0x1F467, 0x2764, 0x1F525, 0x1F3F3, 0x1F308, 0x1F4BB, 0x1F52C,
            0x1F680, 0x1F33E, 0x1F373, 0x2695, 0x1F91D, 0x1F600, 0x1FAE0]
    em = []
    for _ in range(130):
        seq = []
        for _ in range(rng.randint(1, 4)):
            parts = [chr(rng.choice(base)) + (chr(rng.randint(0x1F3FB, 0x1F3FF)) if rng.random() < 0.3 else "")
                     + ("\ufe0f" if rng.random() < 0.3 else "") for _ in range(rng.randint(1, 4))]
            seq.append("\u200d".join(parts))
        if rng.random() < 0.3:
            seq.append(chr(0x1F1E6 + rng.randint(0, 25)) + chr(0x1F1E6 + rng.randint(0, 25)))
        if rng.random() < 0.2:
            seq.append(rng.choice("0123456789#*") + "\ufe0f\u20e3")
        em.append(rng.choice(["", " ", "hi "]).join(seq) + rng.choice(["", " ok", "\n"]))
    cats.append(em)
    # combining marks stacked on Latin, Greek, Cyrillic, Hebrew bases (NFC-relevant)
    marks = list(range(0x0300, 0x036F)) + list(range(0x0591, 0x05C7)) + [0x1AB0, 0x1DC0, 0x20D0, 0x302A, 0x3099]
    bases = "aeiounAEIOUcCsSzZαωΑиИשל "
    cats.append(["".join(rng.choice(bases) + "".join(chr(rng.choice(marks)) for _ in range(rng.randint(0, 4)))
                         for _ in range(rng.randint(1, 10))) for _ in range(130)])
    # whitespace runs: spaces, tabs, newlines, CR, NBSP, ideographic and other Unicode spaces
    ws = [" ", " ", " ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\u200b", "\u000b", "\u000c"]
    cats.append(["".join((rng.choice(WORDS) if rng.random() < 0.4 else "") + "".join(rng.choice(ws) for _ in range(
        rng.randint(1, 40))) for _ in range(rng.randint(1, 4))) for _ in range(130)])
    # tabs and newlines in code-like indentation
    cats.append(["".join(rng.choice(["\t", "    ", "\n", "\n\n", "\t\t", " \n", "\n\t"]) + rng.choice(WORDS)
                         for _ in range(rng.randint(1, 8))) + rng.choice(["", "\n", "\t", "\n\n\n"])
                 for _ in range(130)])
    # digit runs: long ASCII runs, separators, other scripts' digits, superscripts, fractions
    dig = [lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 80))),
           lambda: "{:,}".format(rng.randint(0, 10 ** 15)), lambda: "%.*f" % (rng.randint(0, 12), rng.random() * 1e6),
           lambda: "".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(rng.randint(1, 12))),
           lambda: "".join(chr(0x0966 + rng.randint(0, 9)) for _ in range(rng.randint(1, 12))),
           lambda: "".join(chr(0xFF10 + rng.randint(0, 9)) for _ in range(rng.randint(1, 12))),
           lambda: "x" + "".join(rng.choice("⁰¹²³⁴⁵⁶⁷⁸⁹₀₁₂½¾Ⅻ") for _ in range(rng.randint(1, 6))),
           lambda: "%d-%02d-%02dT%02d:%02d:%02dZ" % tuple(rng.randint(0, 99) for _ in range(6))]
    cats.append([" ".join(rng.choice(dig)() for _ in range(rng.randint(1, 4))) for _ in range(130)])
    # source code lines in several languages
    ops = ["+", "-", "*", "/", "%", "<<", ">>", "&&", "||", "==", "!=", "->", "::", "**"]

    def line():
        a, b, f = rng.choice(WORDS).lower(), rng.choice(WORDS).lower(), rng.choice(WORDS).lower()
        return rng.choice(CODE_LINES).format(a=a + "_x", b=b + "y", f=f + "Fn", F=f.upper(), op=rng.choice(ops),
                                             n=rng.randint(0, 100000))
    cats.append(["\n".join(line() for _ in range(rng.randint(1, 6))) for _ in range(130)])
    # special-token look-alikes: real names, cut, doubled, case-flipped, spaced, glued to text
    def mangle(tk):
        r = rng.random()
        if r < 0.2:
            return tk
        if r < 0.35:
            return tk[:rng.randint(1, len(tk) - 1)]
        if r < 0.5:
            return tk[rng.randint(1, len(tk) - 1):]
        if r < 0.6:
            return tk.upper()
        if r < 0.7:
            return tk.replace("|", "| ", 1)
        if r < 0.8:
            return "<" + tk + ">"
        if r < 0.9:
            return tk + tk
        return tk.replace("_", "-")
    cats.append(["".join(mangle(rng.choice(SPECIAL_NAMES)) + rng.choice(["", " ", "x", "\n", "user", "assistant"])
                         for _ in range(rng.randint(1, 5))) for _ in range(130)])
    # invalid UTF-8 (bytes): stray continuation bytes, truncated sequences, overlongs,
    # surrogates, code points past U+10FFFF, C0/C1/F5..FF, mixed into valid text
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
           b"\xf5", b"\xff", b"\xfe", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\xe3\x81", b"\xf0\x9f",
           b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xf8\x88\x80\x80\x80"]
    good = [w.encode() for w in WORDS] + ["日本", "é", "🤖", "مرحبا", " ", "\n"]
    good = [g if isinstance(g, bytes) else g.encode() for g in good]
    cats.append([b"".join(rng.choice(bad) if rng.random() < 0.4 else rng.choice(good) for _ in range(
        rng.randint(1, 10))) + rng.choice(bad) for _ in range(130)])
    return cats


TOTAL = 2000


def strings():
    out = []
    for group in (ENGLISH, CODE, CJK, EMOJI, SCRIPTS, COMBINING, WHITESPACE, DIGITS, SPECIAL_LOOKING, ODD):
        out.extend(group)
    pool = ENGLISH + CODE + CJK + EMOJI + SCRIPTS + COMBINING + DIGITS + SPECIAL_LOOKING + ODD
    seps = [" ", "", "\n", "  ", "\t", "\n\n", " \n", ". ", ", "]
    rng = random.Random(20240611)
    gen = _gen(random.Random(20260701))
    for g in gen:
        out.extend(g)
    pool += [x for g in gen[:-1] for x in g[:20]]
    while len(out) < TOTAL:
        k = rng.randint(2, 5)
        parts = [rng.choice(pool) for _ in range(k)]
        s = ""
        for p in parts:
            s += p + rng.choice(seps)
        if rng.random() < 0.3:
            i = rng.randint(0, len(s))
            s = s[:i] + " " * rng.randint(1, 9) + s[i:]
        out.append(s)
    return out
