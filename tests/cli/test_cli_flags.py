#!/usr/bin/env python3
"""test_cli_flags.py — the command line's option table as a user meets it, on the glibc
build and on the static musl build (their getopt_long are different code):

- the same greedy continuation from `run` spelled llama-cli's way (--model=, --prompt=,
  --n-predict=, -c, -ngl 99, --temp=0) and sparkd's (-m -p -n --temp 0);
- `COMMAND --help` for every command lists that command's options only, exit 0;
- errors exit 2 and say what is wrong: an unknown option, an option of another command,
  a missing value, a bad number, --api-key on the command line;
- `serve` with llama-server flags: --host/--port (FastCGI over TCP, spoken to here with a
  FastCGI client), --alias (the id /v1/models lists), --api-key-file (the key works; a
  world-readable file is refused), -np, -c as the context (the served context_length);
  and the old `serve -c FILE` still starts, with a warning.
Normal pass only; ~20 s."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from testlib import ok, exit_code  # noqa: E402
import fcgi_client  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
MODEL = os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
BINS = [os.path.join(ROOT, "build", "sparkd"), os.path.join(ROOT, "build", "sparkd-static")]
KEY = "sk-file-" + "z" * 24


def sd(b, *args, timeout=300):
    return subprocess.run([b] + list(args), capture_output=True, text=True, errors="replace", timeout=timeout)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tcp_request(port, path, auth=None):
    c = fcgi_client.Conn.__new__(fcgi_client.Conn)
    c.s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        return c.request(fcgi_client.env_for("GET", path, auth=auth), keep=False)
    finally:
        c.close()


def serve_tcp(b, extra, d):
    port = free_port()
    ini = os.path.join(d, "s.ini")
    with open(ini, "w") as f:
        f.write("[server]\nworkers = 4\nthreads = 2\n[model]\npath = %s\nchat_template_file =\n" % MODEL)
    p = subprocess.Popen([b, "serve", "--config=" + ini, "--host", "127.0.0.1", "--port", str(port)] + extra,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    log = ""
    while time.time() - t0 < 60 and p.poll() is None:
        line = p.stderr.readline()
        log += line
        if "sparkd: ready" in line:
            break
    return p, port, log


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    if BUILD.rstrip("/").endswith("-san"):
        print("ok - CLI flag checks run in the normal pass only")
        return 0
    for b in BINS:
        tag = os.path.basename(b)
        ref = sd(b, "run", "-m", MODEL, "-p", "Monday, Tuesday,", "-n", "6", "--temp", "0", "-t", "2")
        llama = sd(b, "run", "--model=" + MODEL, "--prompt=Monday, Tuesday,", "--n-predict=6", "-c", "256", "-ngl",
                   "99", "--temp=0", "--threads=2")
        ok(ref.returncode == 0 and llama.returncode == 0 and ref.stdout == llama.stdout and "Thursday" in ref.stdout,
           "%s run: llama-cli spellings = sparkd's (%r)" % (tag, ref.stdout.strip()), ref.stderr + llama.stderr)
        for cmd, has, lacks in (("run", ["--prompt", "--seed", "--ctx-size"], ["--config", "--listen"]),
                                ("info", ["--parallel", "--memory-limit", "--kv"], ["--prompt", "--temp"]),
                                ("bench", ["--load-only", "--repetitions"], ["--config", "--seed"]),
                                ("serve", ["--config", "--host", "--api-key-file", "--alias", "--n-gpu-layers"],
                                 ["--prompt", "--print-ids"]),
                                ("verify", ["--manifest"], ["--model"]),
                                ("selftest", ["--quick", "--model-only", "--kv", "--tp"], ["--prompt", "--listen"])):
            r = sd(b, cmd, "--help")
            ok(r.returncode == 0 and all(h in r.stdout for h in has) and not any(x in r.stdout for x in lacks),
               "%s %s --help lists its own options" % (tag, cmd), r.stdout)
        for args, want in ((["run", "--bogus"], "unknown option '--bogus' for run"),
                           (["serve", "-p", "x"], "-p is not an option of serve"),
                           (["run", "-m"], "-m needs a value"),
                           (["run", "-m", MODEL, "-n", "many"], "bad value 'many' for -n"),
                           (["serve", "--api-key", "sk-x"], "--api-key puts the key where every user sees it"),
                           (["frob"], "unknown command 'frob'")):
            r = sd(b, *args)
            ok(r.returncode == 2 and want in r.stderr, "%s %s: exit 2, '%s'" % (tag, " ".join(args[:2]), want),
               (r.returncode, r.stderr))

    d = tempfile.mkdtemp(prefix="sparkd-cli-", dir=os.path.join(ROOT, "build"))
    kf = os.path.join(d, "keys")
    with open(kf, "w") as f:
        f.write("# sparkd keys\n%s\n" % KEY)
    os.chmod(kf, 0o600)
    for b in BINS:
        tag = os.path.basename(b)
        p, port, log = serve_tcp(b, ["--alias", "my-model", "--api-key-file", kf, "-np", "2", "-c", "300"], d)
        try:
            ok("sparkd: ready" in log and ("127.0.0.1:%d" % port) in log, "%s serve --host/--port: FastCGI on TCP" % tag,
               log[-500:])
            st, _, body = tcp_request(port, "/v1/models", auth=KEY)
            ids = [m.get("id") for m in json.loads(body).get("data", [])] if st == 200 else []
            ok(st == 200 and ids == ["my-model"], "%s --alias names the model; --api-key-file's key works" % tag,
               (st, body[:300]))
            st, _, _ = tcp_request(port, "/v1/models", auth="sk-wrong")
            ok(st == 401, "%s a key not in the file: 401" % tag, st)
            ok("context 300, 2 sequences" in log, "%s -c is the context, -np the sequences" % tag, log[-400:])
        finally:
            stop(p)
    os.chmod(kf, 0o644)
    r = sd(BINS[0], "serve", "--model", MODEL, "--api-key-file", kf, "--listen", "unix:" + os.path.join(d, "x.sock"))
    ok(r.returncode == 1 and "readable by every user" in r.stderr, "a world-readable key file is refused", r.stderr)
    ini = os.path.join(d, "old.ini")
    with open(ini, "w") as f:
        f.write("[server]\nlisten = unix:%s\nthreads = 2\n[model]\npath = %s\nchat_template_file =\n" % (
            os.path.join(d, "o.sock"), MODEL))
    p = subprocess.Popen([BINS[0], "serve", "-c", ini], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = ""
    t0 = time.time()
    while time.time() - t0 < 60 and p.poll() is None:
        line = p.stderr.readline()
        log += line
        if "sparkd: ready" in line:
            break
    stop(p)
    ok("warning: serve -c" in log and "sparkd: ready" in log, "the old serve -c FILE starts, with a warning", log[-400:])
    subprocess.run(["rm", "-rf", d])
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
