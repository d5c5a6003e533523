#!/usr/bin/env python3
"""test_structured.py — structured output through the HTTP API on a real model
(the default Gemma 3 270M on the CPU engine), sampled at temperature 1 so the
grammar's mask is what keeps the output valid: response_format json_schema
(chat) and text.format (responses) outputs validate with the jsonschema package
(nobody here wrote it); json_object outputs parse; bad and hostile schemas get
400 naming the offending keyword's path, within a bounded time; a forced tool
call on a model without a tool syntax is a 400. Both passes (~30 s)."""
import json
import os
import sys
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, ".."))
import harness  # noqa: E402
from testlib import exit_code, ok  # noqa: E402

MODEL = "gemma-3-270m"
SAN = os.environ.get("SPARKD_BUILD", "").rstrip("/").endswith("-san")
SCHEMAS = [
    {"type": "object", "properties": {"answer": {"enum": ["yes", "no", "maybe"]},
                                      "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
     "required": ["answer", "confidence"], "additionalProperties": False},
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                      "tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                                               "minItems": 1, "maxItems": 3}},
     "required": ["city", "tags"], "additionalProperties": False},
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "code": {"anyOf": [{"type": "integer", "minimum": 0,
                                                                                     "maximum": 999}, {"type": "null"}]}},
     "required": ["ok", "code"], "additionalProperties": False},
]


def post(st, path, body, timeout=300):
    c = http.client.HTTPSConnection("127.0.0.1", st.port, context=st.ssl_ctx(), timeout=timeout)
    c.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + harness.API_KEY,
                                               "Content-Type": "application/json"})
    r = c.getresponse()
    b = r.read()
    c.close()
    return r.status, b


def main():
    import jsonschema
    st = harness.Stack()
    try:
        st.start()
        n = 0 if SAN else 2  # samples per schema (the -san pass checks one round of each path)
        for i, schema in enumerate(SCHEMAS):
            for k in range(max(n, 1)):
                s, b = post(st, "/v1/chat/completions", {
                    "model": MODEL, "temperature": 1.0, "seed": 100 * i + k, "max_tokens": 80,
                    "messages": [{"role": "user", "content": "Answer in JSON."}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "s%d" % i, "schema": schema,
                                                                               "strict": True}}})
                try:
                    j = json.loads(b)
                    text = j["choices"][0]["message"]["content"]
                    jsonschema.validate(json.loads(text), schema)
                    good = s == 200 and j["choices"][0]["finish_reason"] == "stop"
                except Exception as e:  # noqa: BLE001
                    good, text = False, "%s %s" % (e, b[:300])
                ok(good, "chat json_schema %d (seed %d, temperature 1): the output validates" % (i, 100 * i + k), text)
        s, b = post(st, "/v1/responses", {"model": MODEL, "input": "Answer in JSON.", "temperature": 1.0,
                                         "max_output_tokens": 80, "store": False,
                                         "text": {"format": {"type": "json_schema", "name": "s0", "schema": SCHEMAS[0]}}})
        try:
            j = json.loads(b)
            jsonschema.validate(json.loads(j["output"][0]["content"][0]["text"]), SCHEMAS[0])
            good = s == 200 and j["status"] == "completed"
        except Exception as e:  # noqa: BLE001
            good = False
        ok(good, "responses text.format json_schema: the output validates", b[:400])
        s, b = post(st, "/v1/chat/completions", {"model": MODEL, "temperature": 0, "max_tokens": 120,
                                                 "messages": [{"role": "user", "content": "Describe a cat in JSON."}],
                                                 "response_format": {"type": "json_object"}})
        j = json.loads(b)
        text = j["choices"][0]["message"]["content"]
        fin = j["choices"][0]["finish_reason"]
        good = s == 200 and (fin == "length" or isinstance(json.loads(text), dict))
        ok(good and text.lstrip().startswith("{"), "chat json_object: an object (finish %s)" % fin, text[:300])

        # bad and hostile schemas: 400 naming the path, quickly
        rows = [
            ("minItems 10^9", {"type": "array", "items": {"type": "integer"}, "minItems": 1000000000}, "minItems"),
            ("unsupported keyword", {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}},
             "uniqueItems"),
            ("a type that does not exist", {"type": "strnig"}, "type"),
            ("huge enum", {"enum": ["v%d" % i for i in range(30000)]}, None),
            ("nested 40 deep", json.loads('{"type":"array","items":' * 40 + '{"type":"integer"}' + '}' * 40), None),
            ("pattern that blows up a backtracking engine", {"type": "string", "pattern": "^(a+)+b$"}, None),
        ]
        for name, schema, path in rows:
            t0 = time.time()
            s, b = post(st, "/v1/chat/completions", {"model": MODEL, "max_tokens": 8, "temperature": 0,
                                                     "messages": [{"role": "user", "content": "x"}],
                                                     "response_format": {"type": "json_schema",
                                                                         "json_schema": {"name": "h", "schema": schema}}})
            dt = time.time() - t0
            try:
                e = json.loads(b).get("error") or {}
            except Exception:  # noqa: BLE001
                e = {}
            if path:
                good = s == 400 and path in e.get("message", "") and e.get("param") == "response_format"
            else:  # either refused with a message or served; never a crash or a hang
                good = (s == 400 and e.get("message")) or s == 200
            ok(good and dt < 30, "hostile schema: %s -> %d in %.1f s" % (name, s, dt), b[:300])
        s, b = post(st, "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                 "tools": [{"type": "function", "function": {"name": "f"}}],
                                                 "tool_choice": "required"})
        ok(s == 400 and "tool-call syntax" in json.loads(b)["error"]["message"],
           "a forced tool call on a model without a tool syntax -> 400", b[:300])
        s, _ = post(st, "/v1/chat/completions", {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        ok(s == 200, "the server still serves after the hostile schemas")
    finally:
        import signal
        st.sparkd.send_signal(signal.SIGTERM)
        st.sparkd.wait(timeout=60)
        log = st.log()
        ok("ERROR: AddressSanitizer" not in log and "runtime error" not in log and "LeakSanitizer" not in log,
           "no sanitizer report in the server log", log[-1500:])
        st.stop()
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
