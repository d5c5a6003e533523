#!/usr/bin/env python3
"""test_deepseek_ref.py — sparkd's DeepSeek tool-call parser against DeepSeek's own
chat templates rendered by jinja2 (nobody here wrote either).

Templates (llama.cpp's copies of each model's tokenizer_config.json template,
from the llama-cpp-python sdist; tests/tmpl/tmpl_refs.py fetches them):
  deepseek-ai-DeepSeek-V3.1            NAME<｜tool▁sep｜>ARGS            -> format deepseek
  deepseek-ai-DeepSeek-R1-Distill-Qwen-32B  function<｜tool▁sep｜>NAME ```json ARGS```,
                                       ARGS = arguments|tojson (object, or the JSON
                                       string of an OpenAI-style string)  -> deepseek-r1
  deepseek-ai-DeepSeek-R1-Distill-Llama-8B  the same with ARGS as the string itself
  llama-cpp-deepseek-r1                llama.cpp's own R1 tool template
  deepseek-ai-DeepSeek-V3.2            DSML markup: <｜DSML｜function_calls>
                                       <｜DSML｜invoke name="NAME"> <｜DSML｜parameter
                                       name="K" string="true|false">V</｜DSML｜parameter>
                                       (strings as they stand, other values as JSON;
                                       string values here include JSON look-alikes,
                                       which must come back as strings)  -> deepseek-v3.2
Each case is an assistant message with 1-3 tool calls (random names, argument
objects with unicode, quotes, newlines, nesting, empty) and, for V3.1, text
before the calls. The conversation is rendered by jinja2 with and without the
assistant message; the difference, less the assistant marker and the
template's empty "<think></think>" in front and "<｜end▁of▁sentence｜>" at the
end (the end token stops generation), is what the model generates. Some cases
put reasoning in front ("<think>R</think>" as the model writes it, or with the
parser opened in reasoning mode, as after a prompt that opened <think>). V3.2's
template writes the reasoning itself (thinking=True, reasoning_content): its
"<think>R</think>" is taken as rendered, or less "<think>" (the generation
prompt's opener) with the parser in reasoning mode; without thinking the
rendered turn opens with "</think>" (the prompt held "<think>"), which is cut.

sparkd's parser (build/tests/tool_parse) reads each text whole and in chunks of
1, 2, 3 and 7 bytes (every special token split inside its UTF-8 bytes).
Expected: the same calls back (names in order, arguments equal as JSON), the
content and reasoning texts, every delta valid UTF-8. The detected format
(parse_detect, through tool_parse --detect) must be deepseek for V3.1 and
deepseek-r1 for the R1 templates.

Prints "ok - deepseek parse parity TEMPLATE N/N chunk K". ~2 s."""
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("SPARKD_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "tmpl"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from testlib import ok, exit_code  # noqa: E402
import tmpl_refs  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parse_tool  # noqa: E402

EOS = "<｜end▁of▁sentence｜>"
ASSISTANT = "<｜Assistant｜>"
NAMES = ["get_weather", "search", "lookup_user", "send_email", "calc", "x", "tool-with-dash", "v2.api_call",
         "a" * 200]
TEXTS = ["Let me check.", "Déjà vu — naïve café", "東京の天気を調べます。", "emoji 🙂🚀👩‍💻", "json-ish {\"a\": [1]}",
         "a < b and <think", "ends with <｜", "```json\n{}\n```", "line one\nline two"]
REASONS = ["The user wants the weather.", "推理：先查天气。", "multi\nline\nreasoning 🙂", "x < y and </thin k>"]


def build_dir():
    return os.environ.get("SPARKD_BUILD") or os.path.join(ROOT, "build")


def rand_args(rng, dsml=False):
    pool = {
        "city": ["Paris", "東京", "São Paulo", "Zürich 🙂"], "n": [0, 1, 42, -7, 3.5, 1e-3],
        "flag": [True, False, None], "tags": [["a", "b"], [], [1, [2, {"c": "d"}]]],
        "nested": [{"k": "v", "deep": {"list": [1, 2, 3]}}, {}],
        "q": ["quote \" and \\ backslash", "line\nbreak", "", "fence ``` inside", "<｜ bar"],
    }
    if dsml:
        # strings that read as JSON (string="true" keeps them strings), padding kept
        pool["s"] = ["42", "true", "null", "[1, 2]", "{\"a\": 1}", " padded \n", "\"quoted\"", "a=\"b\" <x>"]
    keys = rng.sample(sorted(pool), rng.randint(0, 5 if dsml else 4))
    return {k: rng.choice(pool[k]) for k in keys}


def env():
    import jinja2
    import jinja2.sandbox
    e = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                     extensions=["jinja2.ext.loopcontrols"])
    e.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    e.filters["from_json"] = json.loads  # V3.2's template reads string arguments with it
    return e


def completion(tpl, msgs, asst, **kw):
    """What the model generates for asst: the rendering with it less the one without."""
    base = tpl.render(messages=msgs, add_generation_prompt=False, bos_token="<｜begin▁of▁sentence｜>", **kw)
    full = tpl.render(messages=msgs + [asst], add_generation_prompt=False, bos_token="<｜begin▁of▁sentence｜>", **kw)
    if not full.startswith(base):
        raise RuntimeError("rendering with the assistant message does not extend the one without")
    t = full[len(base):]
    if t.startswith(ASSISTANT):
        t = t[len(ASSISTANT):]
    if t.startswith("<think></think>"):
        t = t[len("<think></think>"):]
    # R1-Distill-Llama's template closes the block (and the turn) only after a
    # second call: a single call's turn ends at its <｜tool▁call▁end｜>
    return t[:-len(EOS)] if t.endswith(EOS) else t


# template file, parser format, argument style ("obj": arguments as a mapping (HF);
# "str": as the OpenAI string), content allowed before the calls, most calls per turn
# (R1-Distill-Llama's template writes <｜tool▁calls▁end｜><｜end▁of▁sentence｜> after
# every call past the first, so a third would follow an end token)
TEMPLATES = [
    ("deepseek-ai-DeepSeek-V3.1", "deepseek", ("obj", "str"), True, 3),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1", ("obj", "str"), False, 3),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "deepseek-r1", ("str",), False, 2),
    ("llama-cpp-deepseek-r1", "deepseek-r1", ("obj", "str"), False, 3),
    ("deepseek-ai-DeepSeek-V3.2", "deepseek-v3.2", ("obj", "str"), True, 3),
]


def cases(tname, styles, with_content, max_calls, n):
    """[(text, thinking, expected content, expected reasoning, [(name, args)])]."""
    e = env()
    src = open(os.path.join(tmpl_refs._llama_templates_dir(), tname + ".jinja")).read()
    tpl = e.from_string(src)
    dsml = "DSML" in src
    rng = random.Random(sum(tname.encode()))
    out = []
    for i in range(n):
        calls = [(rng.choice(NAMES), rand_args(rng, dsml)) for _ in range(rng.randint(1, max_calls))]
        style = styles[i % len(styles)]
        tcs = [{"id": "call_%d" % k, "type": "function",
                "function": {"name": nm, "arguments": a if style == "obj" else
                             json.dumps(a, ensure_ascii=bool(rng.randrange(2)))}} for k, (nm, a) in enumerate(calls)]
        content = rng.choice(TEXTS) if with_content and rng.randrange(2) else None
        asst = {"role": "assistant", "content": content, "tool_calls": tcs}
        msgs = [{"role": "user", "content": "Question %d?" % i}]
        reasoning, thinking = "", 0
        r = rng.randrange(3)
        if dsml:
            if r:
                reasoning = rng.choice(REASONS)
                asst["reasoning_content"] = reasoning
            text = completion(tpl, msgs, asst, thinking=bool(r))
            pre = "<think>" if r else "</think>"
            if not text.startswith(pre):
                raise RuntimeError("V3.2's turn does not open with %s: %r" % (pre, text[:80]))
            if r != 1:
                text, thinking = text[len(pre):], int(r == 2)
            out.append((text.encode(), thinking, content or "", reasoning, calls))
            continue
        text = completion(tpl, msgs, asst)
        if r == 1:
            reasoning = rng.choice(REASONS)
            text = "<think>\n" + reasoning + "\n</think>\n\n" + text
        elif r == 2:
            reasoning, thinking = rng.choice(REASONS), 1
            text = reasoning + "\n</think>\n\n" + text
        out.append((text.encode(), thinking, content or "", reasoning, calls))
    return out


def run_parser(fmt, texts, chunk):
    return parse_tool.run_parser(build_dir(), fmt, texts, chunk)


def ours(events):
    """(reasoning, content, [(name, args text)], problems)."""
    return parse_tool.summary(events)

def check_template(tname, fmt, styles, with_content, max_calls, n):
    cs = cases(tname, styles, with_content, max_calls, n)
    for chunk in (1, 2, 3, 7, 1 << 20):
        bad = []
        for thinking in (0, 1):
            sub = [c for c in cs if c[1] == thinking]
            if not sub:
                continue
            res = run_parser(fmt + ("+think" if thinking else ""), [c[0] for c in sub], chunk)
            for (text, _, content, reasoning, calls), evs in zip(sub, res):
                r, c, tools, problems = ours(evs)
                got = []
                for nm, a in tools:
                    try:
                        got.append((nm, json.loads(a)))
                    except ValueError:
                        got.append((nm, "INVALID " + a))
                if problems or r != reasoning or c != content or got != [(nm, a) for nm, a in calls]:
                    bad.append((text.decode()[:300], (reasoning, content, calls), (r, c, got), problems))
        ok(not bad, "deepseek parse parity %s (%s) %d/%d chunk %s" %
           (tname, fmt, n - len(bad), n, "whole" if chunk > 1000 else chunk), bad[:2])


def check_detect():
    tool = os.path.join(build_dir(), "tests", "tool_parse")
    for tname, fmt, _, _, _ in TEMPLATES:
        path = os.path.join(tmpl_refs._llama_templates_dir(), tname + ".jinja")
        p = subprocess.run([tool, "--detect", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        got = p.stdout.decode().strip()
        ok(p.returncode == 0 and got == fmt, "detect %s -> %s" % (tname, fmt), (got, p.stderr[-300:]))


def main():
    try:
        import jinja2  # noqa: F401
    except ImportError:
        ok(False, "jinja2 is installed (build.sh's PY_PKGS)")
        return exit_code()
    check_detect()
    for tname, fmt, styles, with_content, max_calls in TEMPLATES:
        check_template(tname, fmt, styles, with_content, max_calls, 80)
    # poison: the same texts through the Qwen3 parser must not come back as the calls
    cs = cases(*TEMPLATES[0][:1], TEMPLATES[0][2], TEMPLATES[0][3], TEMPLATES[0][4], 20)
    res = run_parser("qwen3", [c[0] for c in cs if not c[1]], 1 << 20)
    ok(all(not ours(evs)[2] for evs in res), "poison: the Qwen3 parser finds none of those calls (the check can fail)")
    # V3.2: the cases hold what they claim (string and non-string parameters, JSON
    # look-alike strings, both reasoning modes), and V3.1's parser finds none of the calls
    v32 = [t for t in TEMPLATES if t[1] == "deepseek-v3.2"][0]
    cs = cases(v32[0], v32[2], v32[3], v32[4], 80)
    txt = b"".join(c[0] for c in cs)
    ok(txt.count(b'string="true"') > 20 and txt.count(b'string="false"') > 20 and b'string="true">42<' in txt and
       any(c[1] for c in cs) and any(c[3] and not c[1] for c in cs),
       "V3.2 cases cover string/non-string parameters, JSON look-alike strings, reasoning both ways")
    res = run_parser("deepseek", [c[0] for c in cs if not c[1]], 1 << 20)
    ok(all(not ours(evs)[2] for evs in res), "poison: the V3.1 parser finds none of V3.2's calls")
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
