"""parse_tool.py — drives build/tests/tool_parse (sparkd's output parser) for the reference
tests in tests/parse: many texts per process, each fed in chunks of a given size, and sums
up the events it prints (one JSON object a line, END after each text)."""
import json
import os
import subprocess


def run_parser(build, fmt, texts, chunk):
    """Events per text: tool_parse FMT CHUNK --batch over length-prefixed texts."""
    data = b"".join(b"%d\n" % len(t) + t for t in texts)
    tool = os.path.join(build, "tests", "tool_parse")
    p = subprocess.run([tool, fmt, str(chunk), "--batch"], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    if p.returncode != 0:
        raise RuntimeError("tool_parse rc=%d: %s" % (p.returncode, p.stderr.decode("utf-8", "replace")[-2000:]))
    results, cur = [], []
    for line in p.stdout.split(b"\n")[:-1]:
        if line == b"END":
            results.append(cur)
            cur = []
        else:
            cur.append(json.loads(line.decode("utf-8", "surrogateescape")))
    if len(results) != len(texts):
        raise RuntimeError("tool_parse answered %d of %d" % (len(results), len(texts)))
    return results


def summary(events):
    """(reasoning, content, [(name, args text)], problems) of one text's events."""
    r, c, tools, problems = b"", b"", [], []
    for ev in events:
        x = ev.get("x", "").encode("utf-8", "surrogateescape")
        if "x" in ev:
            try:
                x.decode("utf-8")
            except UnicodeDecodeError:
                problems.append("delta is not valid UTF-8: %r" % x)
        if ev["t"] == "reasoning":
            r += x
        elif ev["t"] == "content":
            c += x
        elif ev["t"] == "tool_start":
            if ev["i"] != len(tools):
                problems.append("tool index %d, expected %d" % (ev["i"], len(tools)))
            tools.append([ev["name"], b"", False])
        elif ev["t"] == "tool_args":
            tools[-1][1] += x
        elif ev["t"] == "tool_end":
            tools[-1][2] = True
    for t in tools:
        if not t[2]:
            problems.append("tool call %s never ended" % t[0])
    dec = lambda b: b.decode("utf-8", "replace")  # noqa: E731
    return dec(r), dec(c), [(n, dec(a)) for n, a, _ in tools], problems
