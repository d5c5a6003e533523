#!/usr/bin/env python3
"""test_opencode.py — etc/deploy/opencode-config.sh (INSTALL.md section 5): the OpenCode provider
config it writes for a running sparkd is valid JSON in OpenCode's provider shape, names
the model id /v1/models serves with the INI's context and output limits, and the official
`openai` client pointed at the config's baseURL and model (as OpenCode's
@ai-sdk/openai-compatible would be) gets a chat answer and a streamed one. A second INI
without [model] id gets the file name; two INIs give two providers. Normal pass only; ~10 s."""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
import shiplib as S  # noqa: E402
import harness  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

GEN = os.path.join(S.ROOT, "etc", "deploy", "opencode-config.sh")


def main():
    if S.SAN:
        ok(True, "OpenCode config checks run in the normal pass only")
        return 0
    import openai
    st = harness.Stack().start()
    try:
        r = S.run([GEN, st.base + "/v1", st.ini])
        cfg = json.loads(r.stdout) if r.returncode == 0 else {}
        ok(r.returncode == 0 and cfg.get("$schema") == "https://opencode.ai/config.json", "valid JSON, OpenCode schema",
           r.stderr)
        prov = cfg.get("provider", {}).get("sparkd", {})
        ok(prov.get("npm") == "@ai-sdk/openai-compatible" and prov["options"]["apiKey"] == "{env:SPARKD_API_KEY}",
           "provider: openai-compatible, key from the environment")
        models = prov.get("models", {})
        served = json.loads(st.get("/v1/models", headers={"Authorization": "Bearer " + harness.API_KEY})[2])
        ids = [m["id"] for m in served["data"]]
        ok(list(models) == ids, "the config's model id is what /v1/models serves (%s)" % ids, (list(models), ids))
        lim = models.get(ids[0], {}).get("limit", {})
        ok(lim == {"context": 512, "output": 256}, "limits from the INI ([model] context, [limits] max_tokens)", lim)
        mk = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient
        cl = openai.OpenAI(base_url=prov["options"]["baseURL"], api_key=harness.API_KEY, max_retries=0,
                           http_client=mk(verify=st.cert, timeout=120))
        c = cl.chat.completions.create(model=ids[0], messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       temperature=0)
        ok(c.choices[0].message.content is not None and c.usage.completion_tokens > 0,
           "the official openai client, configured from it, gets a chat answer")
        parts = [ch.choices[0].delta.content or "" for ch in cl.chat.completions.create(
            model=ids[0], messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, stream=True)
            if ch.choices]
        ok("".join(parts) == c.choices[0].message.content, "... and the same answer streamed")
    finally:
        st.stop()
    d = tempfile.mkdtemp(prefix="sparkd-oc-", dir=os.path.join(S.ROOT, "build"))
    ini2 = os.path.join(d, "b.ini")
    with open(ini2, "w") as f:
        f.write("[model]\npath = /m/Qwen3-8B-Q8_0.gguf\ncontext = 32768 ; trained 40960\n[limits]\nmax_tokens = 65536\n")
    r = S.run([GEN, "https://a/v1=" + os.path.join(S.ROOT, "etc", "sparkd.ini"), "https://b/v1=" + ini2])
    cfg = json.loads(r.stdout)
    p = cfg["provider"]
    ok(sorted(p) == ["sparkd-Qwen3-8B-Q8_0", "sparkd-gemma-3-270m"] and
       p["sparkd-Qwen3-8B-Q8_0"]["models"]["Qwen3-8B-Q8_0"]["limit"] == {"context": 32768, "output": 32768} and
       p["sparkd-Qwen3-8B-Q8_0"]["options"]["baseURL"] == "https://b/v1",
       "two INIs: two providers; no id -> file name; output capped at the context", json.dumps(p)[:600])
    os.unlink(ini2)
    os.rmdir(d)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
