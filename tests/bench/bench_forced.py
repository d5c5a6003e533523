#!/usr/bin/env python3
"""bench_forced.py — wall time of forced tool calls (tool_choice named / "required"
over test_scripted.py's three REQ_TOOLS) through nginx/TLS with the scripted engine,
six requests in a row per case: the first compiles the grammars, the next find them
in the compiled-grammar cache (fcgi/constrain.c). Prints the seconds of each request
and the /metrics grammar-cache lines. Not part of the suite (BENCHMARKS.md).

  SPARKD_ROOT=$PWD SPARKD_BUILD=$PWD/build build/venv/bin/python3 tests/bench/bench_forced.py [qwen3-coder,gpt-oss]"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
import test_scripted as T  # noqa: E402


def main():
    T.make_script_models.build(T.MODELS)
    T.harness.BIN = os.path.join(T.BUILD, "tests", "sparkd_scripted")
    d = tempfile.mkdtemp(prefix="sparkd-scripts-")
    names = (sys.argv[1] if len(sys.argv) > 1 else "qwen3-coder,gpt-oss").split(",")
    for name in names:
        for k, v in T.SCRIPTS[name].items():
            open(os.path.join(d, name + "_" + k + ".txt"), "w").write(v)
    os.environ["SPARKD_SCRIPT_DIR"] = d
    T.harness.Stack.script_dir = d
    for name in names:
        st = T.harness.Stack(ini_extra={"model": {"path": os.path.join(T.MODELS, name + ".gguf"), "id": name,
                                                  "context": "4096",
                                                  "chat_template_file": os.path.join(T.MODELS, name + ".jinja")}})
        st.start()
        try:
            cl = T.client(st)
            for label, tc in (("named plan_trip", {"type": "function", "function": {"name": "plan_trip"}}),
                              ("required 3 tools", "required")):
                ts = []
                for i in range(6):
                    fu = [{"role": "user", "content": "Plan %d. [[script:%s_req_bad]]" % (i, name)}]
                    t0 = time.time()
                    cl.chat.completions.create(model=name, messages=fu, tools=T.REQ_TOOLS, tool_choice=tc, max_tokens=300)
                    ts.append(time.time() - t0)
                print("%s %s: request seconds %s" % (name, label, " ".join("%.3f" % t for t in ts)))
            t0 = time.time()
            cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi [[script:%s_final]]" % name}])
            print("%s unconstrained request: %.3f s" % (name, time.time() - t0))
            _, _, b = st.get("/metrics", headers={"Authorization": "Bearer " + T.KEY})
            print("  " + " ".join(ln for ln in b.decode().splitlines() if ln.startswith("sparkd_grammar")))
        finally:
            st.stop()


if __name__ == "__main__":
    main()
