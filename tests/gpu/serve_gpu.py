#!/usr/bin/env python3
"""The server on the GPU engine (run by tests/gpu/run.sh on the GPU machine; it has no
nginx, so requests go straight to sparkd's FastCGI socket through tests/e2e/fcgi_client.py):

  - 64 concurrent greedy completions (continuous batching on the CUDA engine) each equal
    its solo run through the same server;
  - a client that disconnects mid-stream is cancelled and the server keeps serving;
  - with max_seqs 2 / max_queue 2, six concurrent requests: the overflow gets 429;
  - SIGTERM during a stream: the stream finishes, new requests get 503, exit status 0.

    SPARKD_BIN=... SPARKD_MODEL=synthetic.gguf python3 tests/gpu/serve_gpu.py
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import fcgi_client as fc  # noqa: E402

BIN = os.environ.get("SPARKD_BIN", "build/sparkd")
MODEL = os.environ["SPARKD_MODEL"]
KEY = "gpu-test-key"
DEVICE = os.environ.get("SPARKD_DEVICE", "cuda")
FAILED = 0


def ok(cond, name, detail=""):
    global FAILED
    print(("ok - " if cond else "not ok - ") + name, flush=True)
    if not cond:
        FAILED += 1
        if detail:
            print("#   " + str(detail)[:600], flush=True)


class Server:
    def __init__(self, max_seqs, max_queue, batched=256):
        self.dir = tempfile.mkdtemp(prefix="sparkd-gpu-")
        self.sock = os.path.join(self.dir, "s.sock")
        self.log = os.path.join(self.dir, "sparkd.log")
        ini = os.path.join(self.dir, "sparkd.ini")
        with open(ini, "w") as f:
            f.write("[server]\nlisten = unix:%s\nworkers = 80\nthreads = 4\n" % self.sock)
            f.write("[model]\npath = %s\nid = synth\ncontext = 1024\n" % MODEL)
            f.write("[engine]\ndevice = %s\n" % DEVICE + "max_seqs = %d\nmax_batched_tokens = %d\n" % (max_seqs, batched))
            f.write("[limits]\nmax_queue = %d\nmax_tokens = 512\n" % max_queue)
            f.write("[timeouts]\ndrain_s = 30\n")
            f.write("[log]\nlevel = info\nrequests = true\n")
            f.write("[auth]\napi_key_sha256 = %s\n" % hashlib.sha256(KEY.encode()).hexdigest())
        self.p = subprocess.Popen([BIN, "serve", "-c", ini], stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        t0 = time.time()
        while time.time() - t0 < 180:
            if self.p.poll() is not None:
                raise RuntimeError("sparkd exited: " + open(self.log).read()[-800:])
            if os.path.exists(self.sock):
                try:
                    st, _, _ = self.req("GET", "/health")
                    if st == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError("sparkd did not become ready: " + open(self.log).read()[-800:])

    def req(self, method, path, body=None, timeout=300):
        data = json.dumps(body).encode() if body is not None else b""
        c = fc.Conn(self.sock, timeout=timeout)
        try:
            return c.request(fc.env_for(method, path, data, auth=KEY), data, keep=False)
        finally:
            c.close()

    def complete(self, prompt, n=16):
        st, hd, b = self.req("POST", "/v1/completions", {"model": "synth", "prompt": prompt, "max_tokens": n,
                                                         "temperature": 0, "ignore_eos": True})
        if st != 200:
            return st, None
        return st, json.loads(b)["choices"][0]["text"]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()


def main():
    prompts = ["Request number %d: the quick brown fox jumps over the lazy dog and then" % i for i in range(64)]
    srv = Server(max_seqs=64, max_queue=64)
    try:
        t0 = time.time()
        solo = [srv.complete(p) for p in prompts]
        t_solo = time.time() - t0
        ok(all(s == 200 for s, _ in solo), "64 solo greedy completions on the GPU engine")
        res = [None] * 64

        def one(i):
            res[i] = srv.complete(prompts[i])
        t0 = time.time()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(64)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        t_conc = time.time() - t0
        same = sum(1 for i in range(64) if res[i] == solo[i])
        ok(same == 64, "64 concurrent greedy streams equal their solo runs (%d/64; solo %.1f s, together %.1f s)"
           % (same, t_solo, t_conc), [(i, res[i], solo[i]) for i in range(64) if res[i] != solo[i]][:3])
        # a client that leaves mid-stream
        c = fc.stream_completion(srv.sock, KEY, "Once upon a time", 400)
        ev, done, _ = fc.read_sse(c, stop_after=3)
        c.close()
        time.sleep(1.0)
        st, txt = srv.complete("After the disconnect", 8)
        log = open(srv.log).read()
        ok(not done and st == 200, "disconnect mid-stream: server keeps serving (%d events read)" % len(ev))
        ok("cancel" in log or "client gone" in log, "disconnect: the server logged the cancel", log[-400:])
    finally:
        srv.stop()
    ok(srv.p.returncode == 0, "sparkd exits 0 after SIGTERM (exit %s)" % srv.p.returncode)
    # 429 and drain on a small server
    srv = Server(max_seqs=2, max_queue=2)
    try:
        statuses = []

        go = threading.Event()

        def plain():
            go.wait()
            st, _, _ = srv.req("POST", "/v1/completions", {"model": "synth", "prompt": "Count:", "max_tokens": 600,
                                                           "temperature": 0, "ignore_eos": True})
            statuses.append(st)
        # long generations (the GPU finishes short ones before the next request arrives),
        # all released at once
        ts = [threading.Thread(target=plain) for _ in range(6)]
        for t in ts:
            t.start()
        go.set()
        for t in ts:
            t.join()
        n429 = statuses.count(429)
        ok(n429 >= 2 and statuses.count(200) + n429 == 6, "six requests on 2 slots + 2 queued: overflow gets 429 (%s)"
           % sorted(statuses))
        # drain
        c = fc.stream_completion(srv.sock, KEY, "Drain me:", 900)
        fc.read_sse(c, stop_after=2)
        srv.p.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        st, _, _ = srv.req("GET", "/health")
        st2, _, _ = srv.req("POST", "/v1/completions", {"model": "synth", "prompt": "x", "max_tokens": 2})
        ev, done, _ = fc.read_sse(c)
        c.close()
        ok(st == 503 and st2 == 503, "SIGTERM: /health and new requests get 503 while draining (%s, %s)" % (st, st2))
        ok(done and ev and ev[-1].strip() == b"[DONE]", "SIGTERM: the in-flight stream finishes")
        rc = srv.p.wait(60)
        ok(rc == 0, "SIGTERM: sparkd exits 0 after the drain (%s)" % rc)
    finally:
        srv.stop()
    print("%d failed" % FAILED)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
