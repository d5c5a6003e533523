"""test_e2e.py — nginx (TLS) + sparkd (FastCGI) on loopback, driven over HTTPS
by the official `openai` client and by curl; the request table of
shared/HOSTILE.md row by row; client disconnects; 429; SIGTERM drain; raw
FastCGI abuse; and the time nginx + FastCGI add to a one-token completion.

Runtime on the 2-core CI machine: ~60-90 s (normal build). Under the
sanitizer build (SPARKD_BUILD ends with -san) the request table, FastCGI
abuse, a short completion, the disconnect and the drain still run; the
openai-client suite, 429 and timing parts are skipped.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import http.client
import statistics

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import fcgi_client  # noqa: E402

SAN = os.environ.get("SPARKD_BUILD", "").rstrip("/").endswith("-san")
R = harness.Report()
KEY = harness.API_KEY
MODEL = "gemma-3-270m"


def curl(st, path, body=None, headers=None, method=None, auth=True, raw=False, timeout=60):
    """(status, headers dict (lower-case), body bytes) using curl over HTTPS."""
    cmd = ["curl", "-sS", "--cacert", st.cert, "-o", "-", "-D", "/dev/stderr", "--max-time", str(timeout)]
    if auth:
        cmd += ["-H", "Authorization: Bearer " + KEY]
    for h in headers or []:
        cmd += ["-H", h]
    if method:
        cmd += ["-X", method]
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    p = subprocess.run(cmd + [st.base + path], input=data, capture_output=True)
    heads = p.stderr.decode(errors="replace").split("\r\n")
    status = 0
    hd = {}
    for line in heads:
        m = re.match(r"HTTP/[\d.]+ (\d+)", line)
        if m:
            status = int(m.group(1))
            hd = {}
        elif ":" in line:
            k, _, v = line.partition(":")
            hd[k.strip().lower()] = v.strip()
    return status, hd, p.stdout


def err_shape(body):
    try:
        j = json.loads(body)
        e = j["error"]
        return isinstance(e["message"], str) and "type" in e and "code" in e and "/" not in e["message"].split(" ")[0]
    except Exception:
        return False


def no_paths(body):
    return b"/tmp/" not in body and b"/work/" not in body and b".gguf" not in body


def request_table(st):
    """shared/HOSTILE.md, Requests: each row -> (name, path, body, want status)."""
    C, P = "/v1/chat/completions", "/v1/completions"
    msg = [{"role": "user", "content": "hi"}]
    long_prompt = "hello " * 700  # ~700 tokens > context 512
    rows = [
        ("body not JSON", C, b"this is not json", 400),
        ("body not an object", C, b"[1,2,3]", 400),
        ("body nested deeper than 64", C, b'{"model":"x","messages":' + b"[" * 65 + b"]" * 65 + b"}", 400),
        ("body larger than max_body_bytes (sparkd 413)", C, b'{"model":"' + b"a" * (1536 * 1024) + b'"}', 413),
        ("body larger than nginx client_max_body_size (nginx 413)", C, b'{"x":"' + b"a" * (3 << 20) + b'"}', 413),
        ("invalid UTF-8 in a string", C, b'{"model":"gemma-3-270m","messages":[{"role":"user","content":"\xff\xfe"}]}', 400),
        ("duplicate keys (policy: refuse)", C, b'{"model":"gemma-3-270m","model":"gemma-3-270m","messages":[{"role":"user","content":"hi"}]}', 400),
        ("missing messages", C, {"model": MODEL}, 400),
        ("empty messages", C, {"model": MODEL, "messages": []}, 400),
        ("missing prompt", P, {"model": MODEL}, 400),
        ("empty prompt", P, {"model": MODEL, "prompt": ""}, 400),
        ("unknown model", C, {"model": "gpt-9", "messages": msg}, 404),
        ("wrong type: model", C, {"model": 5, "messages": msg}, 400),
        ("wrong type: messages", C, {"model": MODEL, "messages": "hi"}, 400),
        ("wrong type: message content", C, {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, 400),
        ("wrong type: role", C, {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("wrong type: temperature", C, {"model": MODEL, "messages": msg, "temperature": "hot"}, 400),
        ("wrong type: max_tokens", P, {"model": MODEL, "prompt": "a", "max_tokens": "5"}, 400),
        ("wrong type: max_tokens float", P, {"model": MODEL, "prompt": "a", "max_tokens": 5.5}, 400),
        ("wrong type: stream", C, {"model": MODEL, "messages": msg, "stream": "yes"}, 400),
        ("wrong type: stop", C, {"model": MODEL, "messages": msg, "stop": 5}, 400),
        ("wrong type: seed", C, {"model": MODEL, "messages": msg, "seed": "x"}, 400),
        ("wrong type: stream_options", C, {"model": MODEL, "messages": msg, "stream_options": 1}, 400),
        ("wrong type: prompt", P, {"model": MODEL, "prompt": {"a": 1}}, 400),
        ("prompt token id out of range", P, {"model": MODEL, "prompt": [1, 999999999]}, 400),
        ("prompt longer than the context", P, {"model": MODEL, "prompt": long_prompt}, 400),
        ("chat prompt longer than the context", C, {"model": MODEL, "messages": [{"role": "user", "content": long_prompt}]}, 400),
        ("max_tokens = 0", P, {"model": MODEL, "prompt": "a", "max_tokens": 0}, 400),
        ("max_tokens < 0", P, {"model": MODEL, "prompt": "a", "max_tokens": -5}, 400),
        ("max_completion_tokens = 0", C, {"model": MODEL, "messages": msg, "max_completion_tokens": 0}, 400),
        ("n past the limit of 8", C, {"model": MODEL, "messages": msg, "n": 9}, 400),
        ("n past the limit (completions)", P, {"model": MODEL, "prompt": "a", "n": 64}, 400),
        ("wrong type: n", C, {"model": MODEL, "messages": msg, "n": "2"}, 400),
        ("wrong type: n float", P, {"model": MODEL, "prompt": "a", "n": 2.5}, 400),
        ("best_of > 1", P, {"model": MODEL, "prompt": "a", "n": 2, "best_of": 3}, 400),
        ("n huge", C, {"model": MODEL, "messages": msg, "n": 10 ** 12}, 400),
        ("n = 0", C, {"model": MODEL, "messages": msg, "n": 0}, 400),
        ("n negative", C, {"model": MODEL, "messages": msg, "n": -1}, 400),
        ("logprobs beyond cap (completions)", P, {"model": MODEL, "prompt": "a", "logprobs": 21}, 400),
        ("logprobs negative (completions)", P, {"model": MODEL, "prompt": "a", "logprobs": -1}, 400),
        ("top_logprobs beyond cap", C, {"model": MODEL, "messages": msg, "logprobs": True, "top_logprobs": 21}, 400),
        ("top_logprobs negative", C, {"model": MODEL, "messages": msg, "logprobs": True, "top_logprobs": -1}, 400),
        ("top_logprobs without logprobs", C, {"model": MODEL, "messages": msg, "top_logprobs": 2}, 400),
        ("top_k beyond vocabulary", C, {"model": MODEL, "messages": msg, "top_k": 10 ** 7}, 400),
        ("top_k negative (< -1)", C, {"model": MODEL, "messages": msg, "top_k": -2}, 400),
        ("NaN literal", C, b'{"model":"gemma-3-270m","messages":[{"role":"user","content":"x"}],"temperature":NaN}', 400),
        ("Infinity literal", C, b'{"model":"gemma-3-270m","messages":[{"role":"user","content":"x"}],"top_p":Infinity}', 400),
        ("overflowing float 1e999", C, b'{"model":"gemma-3-270m","messages":[{"role":"user","content":"x"}],"temperature":1e999}', 400),
        ("temperature out of range", C, {"model": MODEL, "messages": msg, "temperature": 7}, 400),
        ("top_p out of range", C, {"model": MODEL, "messages": msg, "top_p": -0.5}, 400),
        ("presence_penalty out of range", C, {"model": MODEL, "messages": msg, "presence_penalty": 3}, 400),
        ("stop: too many", C, {"model": MODEL, "messages": msg, "stop": ["a", "b", "c", "d", "e"]}, 400),
        ("stop: too long", C, {"model": MODEL, "messages": msg, "stop": ["x" * 65]}, 400),
        ("stop: empty string", C, {"model": MODEL, "messages": msg, "stop": [""]}, 400),
        ("stop: not strings", C, {"model": MODEL, "messages": msg, "stop": [1]}, 400),
        ("tools: not an array", C, {"model": MODEL, "messages": msg, "tools": {"a": 1}}, 400),
        ("tools: missing function", C, {"model": MODEL, "messages": msg, "tools": [{"type": "function"}]}, 400),
        ("tools: bad name", C, {"model": MODEL, "messages": msg,
                                "tools": [{"type": "function", "function": {"name": "a b;rm"}}]}, 400),
        ("tools: parameters not an object", C, {"model": MODEL, "messages": msg,
                                                "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}, 400),
        ("tools: schema huge", C, {"model": MODEL, "messages": msg, "tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "description": "d" * 5000}}}]}, 400),
        ("suffix on a model without FIM tokens", P, {"model": MODEL, "prompt": "a", "suffix": "b"}, 400),
        ("infill: neither input_prefix nor input_suffix", "/infill", {"prompt": "a"}, 400),
        ("infill: input_prefix not a string", "/infill", {"input_prefix": ["a"], "input_suffix": "b"}, 400),
        ("infill: input_suffix not a string", "/infill", {"input_prefix": "a", "input_suffix": 5}, 400),
        ("infill: n_predict not an integer", "/infill", {"input_prefix": "a", "input_suffix": "b", "n_predict": "9"}, 400),
        ("infill: unknown model", "/infill", {"model": "gpt-9", "input_prefix": "a", "input_suffix": "b"}, 404),
        ("infill on a model without FIM tokens", "/infill", {"input_prefix": "a", "input_suffix": "b"}, 400),
        ("logit_bias id past the vocabulary", C, {"model": MODEL, "messages": msg, "logit_bias": {"99999999": 5}}, 400),
        ("response_format json_schema without a schema", C, {"model": MODEL, "messages": msg,
                                                             "response_format": {"type": "json_schema", "json_schema": {}}}, 400),
        ("tool_choice required without tools", C, {"model": MODEL, "messages": msg, "tool_choice": "required"}, 400),
        ("top_p = 0", C, {"model": MODEL, "messages": msg, "top_p": 0}, 400),
        ("stream_options without stream", C, {"model": MODEL, "messages": msg, "stream_options": {"include_usage": True}}, 400),
        ("chat_template_kwargs.tools (would skip the tool checks)", C, {"model": MODEL, "messages": msg,
         "chat_template_kwargs": {"tools": [{"type": "function", "function": {"name": "a b;rm"}}]}}, 400),
    ]
    return rows


def run_table(st, label):
    results = []
    for name, path, body, want in request_table(st):
        status, hd, b = curl(st, path, body)
        good = status == want and err_shape(b) and no_paths(b)
        R.ok(good, "%srequest table: %s -> %d" % (label, name, want), "got %d %s" % (status, b[:300]))
        results.append((name, status))
    # auth rows
    for name, hdr, want in [("auth header missing", None, 401), ("auth key wrong", "Bearer sk-e2e-" + "y" * 24, 401),
                            ("auth key wrong length", "Bearer x", 401), ("auth scheme not Bearer", "Basic " + KEY, 401)]:
        status, hd, b = curl(st, "/v1/models", auth=False, headers=[("Authorization: " + hdr)] if hdr else [])
        R.ok(status == want and err_shape(b) and hd.get("www-authenticate") == "Bearer",
             "%srequest table: %s -> %d" % (label, name, want), "got %d %s" % (status, b[:200]))
        results.append((name, status))
    # no cumulative kill switch: still healthy, still serving
    status, _, _ = curl(st, "/health", auth=False)
    R.ok(status == 200, label + "health stays 200 after the hostile table")
    status, _, b = curl(st, "/v1/completions", {"model": MODEL, "prompt": "Hello", "max_tokens": 1, "temperature": 0})
    R.ok(status == 200 and json.loads(b)["usage"]["completion_tokens"] == 1, label + "a valid request still works after the table", b[:200])
    return results


def check_context_message(st, label):
    status, _, b = curl(st, "/v1/completions", {"model": MODEL, "prompt": "hello " * 700})
    m = json.loads(b)["error"]["message"] if status == 400 else ""
    R.ok(re.search(r"512 tokens.*has \d+ tokens", m) is not None, label + "context overflow names both token counts", m)


def clamp_tests(st, label):
    # ~500-token prompt in a 512 context: absent and huge max_tokens clamp to what is left
    ids = json.loads(curl(st, "/tokenize", {"content": "hello " * 505})[2])["tokens"][:505]
    for name, extra in [("absent", {}), ("huge", {"max_tokens": 10 ** 12})]:
        body = {"model": MODEL, "prompt": ids, "temperature": 0, "ignore_eos": True, **extra}
        status, _, b = curl(st, "/v1/completions", body, timeout=120)
        ok = status == 200
        if ok:
            j = json.loads(b)
            ok = j["usage"]["prompt_tokens"] == 505 and j["usage"]["completion_tokens"] == 7 and j["choices"][0]["finish_reason"] == "length"
        R.ok(ok, "%smax_tokens %s -> clamped to the context (7 tokens)" % (label, name), b[:300])
    # a ~500-token prefill outlasts keepalive_ms (200 ms here): the stream must
    # open with SSE comments before the first token
    # (a prompt of its own, so no cached prefix shortens the prefill)
    ids2 = json.loads(curl(st, "/tokenize", {"content": "world " * 505})[2])["tokens"][:505]
    status, hd, events, raw = stream_raw(st, {"model": MODEL, "prompt": ids2, "max_tokens": 1, "stream": True})
    R.ok(status == 200 and raw.startswith(b": keep-alive\n\n") and events[-1] == b"[DONE]",
         "%skeep-alive comments during a long prefill" % label, raw[:200])


def fastcgi_abuse(st, label):
    def fresh():
        return fcgi_client.Conn(st.sock, timeout=20)
    body = json.dumps({"model": MODEL, "prompt": "a", "max_tokens": 1}).encode()
    cases = []
    env = fcgi_client.env_for("POST", "/v1/completions", body, KEY)
    env["CONTENT_LENGTH"] = str(len(body) + 50)
    cases.append(("CONTENT_LENGTH larger than the body", env, body, 400))
    env = fcgi_client.env_for("POST", "/v1/completions", body, KEY)
    env["CONTENT_LENGTH"] = "5"
    cases.append(("CONTENT_LENGTH smaller than the body", env, body, 400))
    env = fcgi_client.env_for("POST", "/v1/completions", body, KEY)
    env["CONTENT_LENGTH"] = "12abc"
    cases.append(("CONTENT_LENGTH not a number", env, body, 400))
    env = fcgi_client.env_for("POST", "/v1/completions", body, KEY)
    env["CONTENT_LENGTH"] = str(1 << 40)
    cases.append(("CONTENT_LENGTH huge", env, body, 413))
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "", "CONTENT_LENGTH": "0", "HTTP_AUTHORIZATION": "Bearer " + KEY}
    cases.append(("empty PATH_INFO and no URI", env, b"", 400))
    for name, env, b, want in cases:
        try:
            c = fresh()
            status, hd, rb = c.request(env, b)
            c.close()
        except Exception as e:  # noqa: BLE001
            status, rb = -1, str(e).encode()
        R.ok(status == want and err_shape(rb), "%sFastCGI: %s -> %d" % (label, name, want), "got %s %s" % (status, rb[:200]))
    # oversized / overflowing parameter lengths: a name length of 2^31-1 in a
    # short record (CVE-2025-23016's shape); the record layer must reject the request
    # and the process must live on
    for name, raw in [("param name length 0x7fffffff", b"\xff\xff\xff\xff\x01" + b"A" * 16),
                      ("param value length past the record", b"\x04\xff\x00\x00\x10" + b"PATH" + b"x" * 8),
                      ("param lengths cut mid-header", b"\x80\x00")]:
        try:
            c = fresh()
            c.request({}, b"", raw_params=raw)
            c.close()
        except Exception:
            pass
        status, _, _ = curl(st, "/health", auth=False)
        R.ok(status == 200 and st.sparkd.poll() is None, "%sFastCGI: %s -> rejected, process alive" % (label, name))


def stream_raw(st, body, read_chunks=None, close_after=None):
    """Streams over one HTTPS connection; returns (status, headers, [events], raw text)."""
    conn = http.client.HTTPSConnection("127.0.0.1", st.port, context=st.ssl_ctx(), timeout=60)
    conn.request("POST", "/v1/completions" if "prompt" in body else "/v1/chat/completions", json.dumps(body),
                 {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    r = conn.getresponse()
    events, raw, buf = [], b"", b""
    while True:
        line = r.readline()
        if not line:
            break
        raw += line
        if line.startswith(b"data: "):
            events.append(line[6:].strip())
            if events[-1] == b"[DONE]":
                raw += r.readline()  # the blank line that ends the event
                break
            if close_after and len(events) >= close_after:
                conn.sock.close()
                conn.close()
                return r.status, dict(r.getheaders()), events, raw
    conn.close()
    return r.status, dict(r.getheaders()), events, raw


def disconnect_test(st, label):
    m0 = metric(st, "sparkd_client_gone_total")
    status, hd, events, raw = stream_raw(st, {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 200,
                                              "ignore_eos": True, "stream": True}, close_after=3)
    t0 = time.time()
    line = None
    while time.time() - t0 < 15 and not line:
        m = re.findall(r"client gone after (\d+) tokens sent; cancelled at (\d+) generated; generation ended at (\d+) \((-?\d+) after the cancel\)", st.log())
        line = m[-1] if m else None
        time.sleep(0.1)
    R.ok(line is not None, label + "disconnect: server logged the cancel", st.log()[-500:])
    if line:
        sent, at, end, after = map(int, line)
        print("# disconnect: %d tokens sent, cancel at %d generated, ended at %d (%d after the cancel), of 200 asked" % (sent, at, end, after))
        R.ok(0 <= after <= 1 and end < 200, label + "disconnect: generation stopped within one step of the cancel",
             "%d steps after" % after)
    R.ok(metric(st, "sparkd_client_gone_total") == m0 + 1, label + "disconnect: counted in /metrics sparkd_client_gone_total")
    status, _, _ = curl(st, "/health", auth=False)
    R.ok(status == 200, label + "disconnect: health still 200")


def metric(st, name):
    status, _, b = curl(st, "/metrics")
    for line in b.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def n_choices(st, label):
    """n > 1 on the real model (sampling at temperature 1): choice i samples with
    seed + i, so choice 0 equals a request of n = 1 with the seed and choice 1 one
    with seed + 1; the choices are independent sequences that ran together."""
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.0, "seed": 1234,
            "ignore_eos": True}
    solo = []
    for sd in (1234, 1235):
        status, _, b = curl(st, "/v1/completions", dict(body, seed=sd))
        solo.append(json.loads(b)["choices"][0]["text"] if status == 200 else None)
    status, _, b = curl(st, "/v1/completions", dict(body, n=2))
    j = json.loads(b) if status == 200 else {}
    ch = j.get("choices", [])
    R.ok(status == 200 and [c["index"] for c in ch] == [0, 1] and [c["text"] for c in ch] == solo and
         solo[0] != solo[1] and j["usage"]["completion_tokens"] == 16,
         "%sn = 2: choice i == the solo run with seed + i, usage counts both" % label, (solo, b[:400]))


def sse_framing(st, label):
    status, hd, events, raw = stream_raw(st, {"model": MODEL, "prompt": "The sky is", "max_tokens": 4, "temperature": 0,
                                              "stream": True, "stream_options": {"include_usage": True}})
    R.ok(status == 200 and hd.get("Content-Type") == "text/event-stream", label + "SSE: 200 text/event-stream", hd)
    R.ok(hd.get("Cache-Control") == "no-cache" and "Content-Length" not in hd, label + "SSE: no-cache, no Content-Length")
    frames = raw.decode().split("\n\n")
    R.ok(frames[-1] == "" and all(f.startswith("data: ") or f.startswith(":") for f in frames[:-1]),
         label + "SSE: every event is 'data: ...' + blank line", raw[:300])
    R.ok(events and events[-1] == b"[DONE]", label + "SSE: ends with data: [DONE]")
    js = [json.loads(e) for e in events[:-1]]
    R.ok(all(j["object"] == "text_completion" for j in js) and js[-1]["choices"] == [] and
         js[-1]["usage"]["completion_tokens"] == 4 and all(j.get("usage", 0) is None for j in js[:-1]),
         label + "SSE: include_usage -> usage only in a final chunk with no choices", js[-1])
    text = "".join(j["choices"][0]["text"] for j in js[:-1])
    status, _, b = curl(st, "/v1/completions", {"model": MODEL, "prompt": "The sky is", "max_tokens": 4, "temperature": 0})
    R.ok(json.loads(b)["choices"][0]["text"] == text, label + "SSE text == non-streamed text (greedy)", (text, b[:200]))
    return text


def openai_suite(st):
    try:
        import openai
    except ImportError:
        R.ok(False, "openai client importable")
        return
    # the client's own HTTP stack (httpx2 in openai 3.x, httpx before), trusting the throwaway cert
    mk = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient

    def client(key):
        return openai.OpenAI(base_url=st.base + "/v1", api_key=key, max_retries=0,
                             http_client=mk(verify=st.cert, timeout=120))
    cl = client(KEY)
    models = cl.models.list()
    R.ok([m.id for m in models.data] == [MODEL], "openai: models.list", models)
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."}]
    r = cl.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0)
    R.ok(r.object == "chat.completion" and r.choices[0].message.role == "assistant" and
         r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length", "openai: chat non-streaming", r)
    # the prompt the server built == jinja2's rendering of our template, tokenized
    import jinja2
    src = open(os.path.join(harness.ROOT, "etc", "templates", "gemma3.jinja")).read()
    text = jinja2.Environment().from_string(src).render(messages=msgs, add_generation_prompt=True, bos_token="<bos>")
    _, _, b = curl(st, "/tokenize", {"content": text})
    R.ok(r.usage.prompt_tokens == len(json.loads(b)["tokens"]), "chat prompt == jinja2 rendering of the template",
         (r.usage.prompt_tokens, text))
    chunks = list(cl.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
    stext = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    R.ok(stext == r.choices[0].message.content and chunks[-1].usage.completion_tokens == 6,
         "openai: chat streaming == non-streaming, usage in the last chunk", (stext, r.choices[0].message.content))
    R.ok(chunks[0].choices[0].delta.role == "assistant", "openai: first chunk carries the role")
    c = cl.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=4, temperature=0, logprobs=2)
    R.ok(c.object == "text_completion" and len(c.choices[0].logprobs.tokens) == 4 and
         len(c.choices[0].logprobs.top_logprobs[0]) == 2, "openai: completions with logprobs", c)
    sc = list(cl.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=4, temperature=0, stream=True))
    R.ok("".join(x.choices[0].text for x in sc if x.choices) == c.choices[0].text, "openai: completions streaming == non-streaming")
    r2 = cl.chat.completions.create(model=MODEL, messages=msgs, max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
    lp = r2.choices[0].logprobs.content
    R.ok(len(lp) == 3 and len(lp[0].top_logprobs) == 3 and lp[0].top_logprobs[0].logprob >= lp[0].top_logprobs[1].logprob,
         "openai: chat logprobs + top_logprobs", lp)
    # all sampling parameters accepted together
    r3 = cl.chat.completions.create(model=MODEL, messages=msgs, max_completion_tokens=3, temperature=0.7, top_p=0.9,
                                    seed=42, presence_penalty=0.5, frequency_penalty=0.5, stop=["\n\n"],
                                    extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1})
    r4 = cl.chat.completions.create(model=MODEL, messages=msgs, max_completion_tokens=3, temperature=0.7, top_p=0.9,
                                    seed=42, presence_penalty=0.5, frequency_penalty=0.5, stop=["\n\n"],
                                    extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1})
    R.ok(r3.choices[0].message.content == r4.choices[0].message.content, "openai: every sampling parameter; same seed, same text")
    # stop string: cut before it, finish_reason stop
    full = cl.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=8, temperature=0).choices[0].text
    stop = full.strip()[:2] if len(full.strip()) >= 2 else None
    if stop:
        s = cl.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, stop=[stop])
        R.ok(s.choices[0].finish_reason == "stop" and stop not in s.choices[0].text and full.startswith(s.choices[0].text),
             "openai: stop string cuts the text, finish_reason stop", (full, stop, s.choices[0].text))
    for name, exc, fn in [
        ("n past 8 -> BadRequestError", openai.BadRequestError, lambda: cl.chat.completions.create(model=MODEL, messages=msgs, n=9)),
        ("unknown model -> NotFoundError", openai.NotFoundError, lambda: cl.chat.completions.create(model="nope", messages=msgs)),
        ("max_tokens 0 -> BadRequestError", openai.BadRequestError, lambda: cl.completions.create(model=MODEL, prompt="x", max_tokens=0)),
        ("wrong key -> AuthenticationError", openai.AuthenticationError,
         lambda: client("wrong").models.list()),
    ]:
        try:
            fn()
            R.ok(False, "openai: " + name, "no exception")
        except exc as e:
            R.ok(isinstance(e.body, dict) and "message" in e.body, "openai: " + name)
        except Exception as e:  # noqa: BLE001
            R.ok(False, "openai: " + name, repr(e))


def small_endpoints(st, label):
    status, hd, b = curl(st, "/health", auth=False)
    R.ok(status == 200 and json.loads(b) == {"status": "ok"}, label + "GET /health 200")
    _, _, b = curl(st, "/tokenize", {"content": "Hello world", "with_pieces": True})
    toks = json.loads(b)["tokens"]
    R.ok([t["piece"] for t in toks] == ["Hello", " world"], label + "POST /tokenize with pieces", b)
    _, _, b2 = curl(st, "/detokenize", {"tokens": [t["id"] for t in toks]})
    R.ok(json.loads(b2) == {"content": "Hello world"}, label + "POST /detokenize round trip", b2)
    status, hd, b = curl(st, "/v1/chat/completions", method="GET")
    R.ok(status == 405 and hd.get("allow") == "POST" and err_shape(b), label + "GET on a POST route -> 405 + Allow")
    status, _, b = curl(st, "/v1/nothing")
    R.ok(status == 404 and err_shape(b), label + "unknown /v1 path -> 404 (sparkd)")
    status, _, b = curl(st, "/etc/passwd")
    R.ok(status == 404 and err_shape(b), label + "path outside the API -> 404 (nginx)")
    status, _, b = curl(st, "/metrics", auth=False)
    R.ok(status == 401, label + "/metrics needs the key unless metrics_public")


def prom_check(st, label):
    status, hd, b = curl(st, "/metrics")
    ok = status == 200 and hd.get("content-type", "").startswith("text/plain; version=0.0.4")
    try:
        from prometheus_client.parser import text_string_to_metric_families
        fams = {f.name: f for f in text_string_to_metric_families(b.decode())}
        need = ["sparkd_requests", "sparkd_prompt_tokens", "sparkd_generation_tokens", "sparkd_time_to_first_token_seconds",
                "sparkd_inter_token_latency_seconds", "sparkd_queue_depth", "sparkd_kv_usage_ratio", "sparkd_errors"]
        missing = [n for n in need if n not in fams]
        ttft = fams["sparkd_time_to_first_token_seconds"]
        cnt = [s.value for s in ttft.samples if s.name.endswith("_count")][0]
        R.ok(ok and not missing and cnt > 0 and fams["sparkd_time_to_first_token_seconds"].type == "histogram",
             label + "/metrics parses with prometheus_client; all families present", missing or b[:300])
    except Exception as e:  # noqa: BLE001
        R.ok(False, label + "/metrics parses with prometheus_client", repr(e))


def busy_test(st):
    """max_seqs 2, max_queue 2: six concurrent streams, the overflow gets 429."""
    t0 = time.time()
    while time.time() - t0 < 10 and (metric(st, "sparkd_running_requests") or metric(st, "sparkd_queue_depth")):
        time.sleep(0.1)
    R.ok(metric(st, "sparkd_running_requests") == 0 and metric(st, "sparkd_queue_depth") == 0,
         "no request left running or queued by the earlier tests (%.1f s to settle)" % (time.time() - t0))
    res = []

    def one():
        try:
            status, hd, ev, raw = stream_raw(st, {"model": MODEL, "prompt": "Count:", "max_tokens": 12, "ignore_eos": True,
                                                  "stream": True})
            res.append((status, hd.get("Retry-After")))
        except Exception as e:  # noqa: BLE001
            res.append((str(e), None))
    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join()
    # max_queue counts requests not yet admitted to a slot, so how many of
    # the six fit depends on whether the scheduler admitted the first ones
    # before the later ones arrived: between max_queue + 1 and max_seqs + max_queue
    n429 = [r for r in res if r[0] == 429]
    n200 = sum(r[0] == 200 for r in res)
    R.ok(3 <= n200 <= 4 and len(n429) == 6 - n200 and all(r[1] == "1" for r in n429),
         "more requests than slots + queue -> 429 with Retry-After", res)


def timing(st):
    """One-token completion: HTTPS via nginx vs FastCGI direct vs the engine alone (server log)."""
    body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 1, "temperature": 0}).encode()
    conn = http.client.HTTPSConnection("127.0.0.1", st.port, context=st.ssl_ctx(), timeout=30)
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    fc = fcgi_client.Conn(st.sock)
    env = fcgi_client.env_for("POST", "/v1/completions", body, KEY)

    def engine_ms():
        m = re.findall(r"engine ([\d.]+) ms", st.log())
        return float(m[-1])
    https, direct = [], []
    for i in range(24):
        t = time.perf_counter()
        conn.request("POST", "/v1/completions", body, h)
        r = conn.getresponse()
        r.read()
        wall = (time.perf_counter() - t) * 1e3
        time.sleep(0.05)
        if i >= 4:
            https.append(wall - engine_ms())
        t = time.perf_counter()
        status, _, _ = fc.request(env, body)
        wall = (time.perf_counter() - t) * 1e3
        time.sleep(0.05)
        if i >= 4:
            direct.append(wall - engine_ms())
    conn.close()
    fc.close()
    eng = [float(x) for x in re.findall(r"1 generated tokens, engine ([\d.]+) ms", st.log())[-20:]]
    print("# timing (one-token completion, 20 runs, medians): engine submit->done %.2f ms; "
          "added by HTTPS+nginx+FastCGI %.2f ms (p90 %.2f); added by FastCGI alone (unix socket, no nginx) %.2f ms"
          % (statistics.median(eng), statistics.median(https), sorted(https)[17], statistics.median(direct)))
    R.ok(statistics.median(https) < 50, "nginx+FastCGI overhead on a one-token completion < 50 ms",
         statistics.median(https))


def drain_test(st, label):
    """SIGTERM during a stream: /health 503, the stream still finishes, exit 0."""
    out = {}

    def streamer():
        out["r"] = stream_raw(st, {"model": MODEL, "prompt": "Once", "max_tokens": 12, "ignore_eos": True, "stream": True})
    t = threading.Thread(target=streamer)
    t.start()
    time.sleep(0.5)
    st.sparkd.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    status, _, b = curl(st, "/health", auth=False)
    R.ok(status == 503 and err_shape(b), label + "SIGTERM: /health 503 while draining", (status, b))
    status, hd, b = curl(st, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1})
    R.ok(status == 503 and err_shape(b), label + "SIGTERM: new requests 503 while draining", (status, b))
    t.join(60)
    s, hd, events, raw = out.get("r", (0, {}, [], b""))
    R.ok(s == 200 and events and events[-1] == b"[DONE]", label + "SIGTERM: the in-flight stream finishes", raw[-200:])
    try:
        rc = st.sparkd.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rc = None
    R.ok(rc == 0, label + "SIGTERM: sparkd exits 0 after the drain", rc)
    log = st.log()
    R.ok("ERROR: AddressSanitizer" not in log and "runtime error" not in log and "LeakSanitizer" not in log,
         label + "no sanitizer report in the server log", log[-1500:])


def config_errors():
    import tempfile
    d = tempfile.mkdtemp()
    cases = [("[server]\nworkers = 4\nbogus = 1\n", "3: unknown key 'bogus'"),
             ("[server]\n[nonsense]\nx = 1\n", "3: unknown section [nonsense]"),
             ("[limits]\nmax_queue = -3\n", "2: max_queue: -3"),
             ("[model]\npath = /nonexistent/model.gguf\n", None)]
    for text, want in cases:
        p = os.path.join(d, "bad.ini")
        open(p, "w").write(text)
        r = subprocess.run([harness.BIN, "serve", "--config", p, "--listen", "unix:" + os.path.join(d, "s.sock")],
                           capture_output=True, text=True, timeout=30)
        ok = r.returncode != 0 and (want is None or (p + ":" + want) in r.stderr)
        R.ok(ok, "config error exits non-zero with file:line: %r" % (want or "missing model"), r.stderr[-300:])


def main():
    t_all = time.time()
    config_errors()
    st = harness.Stack()
    try:
        t = st.start().wait_ready()
        label = "[san] " if SAN else ""
        small_endpoints(st, label)
        run_table(st, label)
        check_context_message(st, label)
        fastcgi_abuse(st, label)
        sse_framing(st, label)
        n_choices(st, label)
        if not SAN:
            clamp_tests(st, label)
            openai_suite(st)
            busy_test(st)
            timing(st)
        disconnect_test(st, label)
        prom_check(st, label)
        drain_test(st, label)
    finally:
        st.stop()
    print("# e2e took %.1f s" % (time.time() - t_all))
    sys.exit(1 if R.failed else 0)


if __name__ == "__main__":
    main()
