#!/usr/bin/env python3
"""test_clients.py — the client libraries coding agents use, pinned from PyPI
(build.sh: CLIENT_PKGS into build/venv-clients; instructor, whose jiter pin
excludes the newest openai, into build/venv-instructor), against one nginx (TLS)
+ sparkd stack serving the scripted Qwen3 model (tests/engine_script: real
template and tokenizer, scripted tokens). Each client's checks are a script in
tests/api/clients/ run by that client's own Python; this file prints their lines
and a client x feature table. Normal pass only (~40 s)."""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, ".."))
import harness  # noqa: E402
import make_script_models  # noqa: E402
from testlib import exit_code, ok  # noqa: E402

BUILD = os.environ.get("SPARKD_BUILD", os.path.join(harness.ROOT, "build"))
MODELS = os.path.join(harness.ROOT, "build", "script-models")
VENV = os.path.join(harness.ROOT, "build", "venv-clients", "bin", "python3")
VENV_INSTRUCTOR = os.path.join(harness.ROOT, "build", "venv-instructor", "bin", "python3")
CLIENTS = [("openai", "client_openai.py", VENV), ("anthropic", "client_anthropic.py", VENV),
           ("openai-agents", "client_agents.py", VENV), ("litellm", "client_litellm.py", VENV),
           ("langchain-openai", "client_langchain.py", VENV), ("pydantic-ai", "client_pydantic_ai.py", VENV),
           ("instructor", "client_instructor.py", VENV_INSTRUCTOR)]
FINAL = "It is 5C and sunny in Oslo."
SCRIPTS = {  # Qwen3's own output syntax
    "hello": "Hello! How can I help?<|im_end|>",
    "call": "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
            "{\"city\": \"Oslo\"}}\n</tool_call><|im_end|>",
    "final": "<think>\n\n</think>\n\n%s<|im_end|>" % FINAL,
    # a forced call: the server wrote '<tool_call>\n{"name": "NAME", "arguments": ' already
    "forced_weather": "{\"city\": \"Oslo\", \"temp_c\": 5}}\n</tool_call><|im_end|>",
    # structured output (response_format json_schema)
    "json_weather": "{\"city\": \"Oslo\", \"temp_c\": 5}<|im_end|>",
}


def main():
    if BUILD.rstrip("/").endswith("-san"):
        ok(True, "client libraries run in the normal pass only")
        return 0
    if not os.path.exists(VENV) or not os.path.exists(VENV_INSTRUCTOR):
        ok(False, "client venvs build/venv-clients and build/venv-instructor exist (build.sh)")
        return exit_code()
    make_script_models.build(MODELS)
    d = tempfile.mkdtemp(prefix="sparkd-client-scripts-")
    for k, v in SCRIPTS.items():
        open(os.path.join(d, k + ".txt"), "w").write(v)
    os.environ["SPARKD_SCRIPT_DIR"] = d
    harness.BIN = os.path.join(BUILD, "tests", "sparkd_scripted")
    st = harness.Stack(ini_extra={"model": {"path": os.path.join(MODELS, "qwen3.gguf"), "id": "qwen3", "context": "4096",
                                            "chat_template_file": os.path.join(MODELS, "qwen3.jinja")},
                                  "server": {"workers": "16"}, "engine": {"max_seqs": "4"}}, max_conns=16)
    table = []
    try:
        st.start()
        env = dict(os.environ, SPARKD_CLIENT_BASE=st.base, SPARKD_CLIENT_KEY=harness.API_KEY, SPARKD_CLIENT_MODEL="qwen3",
                   SPARKD_CLIENT_CERT=st.cert, SSL_CERT_FILE=st.cert, REQUESTS_CA_BUNDLE=st.cert,
                   PYTHONPATH=os.path.join(HERE, "clients"), OPENAI_API_KEY=harness.API_KEY, LITELLM_LOG="ERROR")
        for client, script, py in CLIENTS:
            r = subprocess.run([py, os.path.join(HERE, "clients", script)], env=env, capture_output=True, text=True,
                               timeout=300)
            lines = [l for l in r.stdout.splitlines() if l.startswith(("ok - ", "not ok - ", "# pending - "))]
            for l in lines:
                print(l, flush=True)
                feature = l.split(": ", 1)[1].split("  ")[0].split(" (the server")[0] if ": " in l else l
                table.append((client, feature, "pass" if l.startswith("ok - ") else
                              "PENDING" if l.startswith("# pending") else "FAIL"))
            if not lines:
                ok(False, "%s: the client script ran" % client, (r.stdout + r.stderr)[-800:])
                table.append((client, "(did not run)", "FAIL"))
    finally:
        st.stop()
        shutil.rmtree(d, ignore_errors=True)
    print("# client x feature")
    for client, feature, res in table:
        print("#   %-17s %-52s %s" % (client, feature, res))
    return exit_code() or (1 if any(r == "FAIL" for _, _, r in table) else 0)


if __name__ == "__main__":
    sys.exit(main())
