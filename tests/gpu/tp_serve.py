#!/usr/bin/env python3
"""Tensor parallel through the server, on a machine with two GPUs (tests/gpu/tp.sh runs
it): rank 1 = `sparkd serve` with [parallel] rank 1 on GPU 1, rank 0 = the FastCGI front
end on GPU 0 (no nginx: requests go straight to its socket, tests/e2e/fcgi_client.py).

  - a missing peer at start: rank 0 alone, connect_timeout_s 3: /health 503 while it
    waits, then the start fails like any failed load (exit 1, the log names what is
    missing; the service manager restarts it);
  - the pair: greedy completions through the front end (8 concurrent = their solo runs);
  - a peer dying mid-stream: rank 1 killed (SIGKILL) during a long stream: the stream
    ends (error, never a clean finish) within step_timeout_s + a margin, new requests get
    503 at once, rank 0's log names rank 1, SIGTERM still stops rank 0 (no hang).

    SPARKD_BIN=... SPARKD_MODEL=synthetic.gguf python3 tests/gpu/tp_serve.py
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(HERE, "..", "e2e"), os.environ.get("FCGI_CLIENT_DIR", "")):
    if p:
        sys.path.insert(0, p)
import fcgi_client as fc  # noqa: E402

BIN = os.environ.get("SPARKD_BIN", "build/sparkd")
MODEL = os.environ["SPARKD_MODEL"]
KEY = "tp-test-key"
PORT = int(os.environ.get("TP_PORT", "29531"))
FAILED = 0


def ok(cond, name, detail=""):
    global FAILED
    print(("ok - " if cond else "not ok - ") + name, flush=True)
    if not cond:
        FAILED += 1
        if detail:
            print("#   " + str(detail)[-800:], flush=True)
    return cond


def env_for(gpu):
    e = dict(os.environ)
    e["CUDA_VISIBLE_DEVICES"] = str(gpu)
    e["NCCL_NVLS_ENABLE"] = "0"  # NVLink multicast stays off on shared hosts
    return e


class Rank:
    def __init__(self, d, rank, connect_timeout=120, step_timeout=5):
        self.rank = rank
        self.sock = os.path.join(d, "s%d.sock" % rank)
        self.log = os.path.join(d, "rank%d.log" % rank)
        ini = os.path.join(d, "rank%d.ini" % rank)
        with open(ini, "w") as f:
            f.write("[server]\nlisten = unix:%s\nworkers = 24\nthreads = 4\n" % self.sock)
            f.write("[model]\npath = %s\nid = synth\ncontext = 4096\n" % MODEL)
            f.write("[engine]\ndevice = cuda\nmax_seqs = 16\nmax_batched_tokens = 512\n")
            f.write("[limits]\nmax_queue = 16\nmax_tokens = 4000\n")
            f.write("[timeouts]\ndrain_s = 10\n")
            f.write("[auth]\napi_key_sha256 = %s\n" % hashlib.sha256(KEY.encode()).hexdigest())
            f.write("[parallel]\nsize = 2\nrank = %d\naddress = 127.0.0.1:%d\ngpu = 0\n" % (rank, PORT))
            f.write("connect_timeout_s = %d\nstep_timeout_s = %d\n" % (connect_timeout, step_timeout))
        # SPARKD_TP_WRAP0: a command rank 0 runs under (e.g. "cuda-gdb -q -batch -ex run -ex bt --args"), its
        # output in rank 0's log
        wrap = os.environ.get("SPARKD_TP_WRAP0", "").split() if rank == 0 else []
        logf = open(self.log, "w")
        self.p = subprocess.Popen(wrap + [BIN, "serve", "--config", ini], stdout=logf if wrap else subprocess.DEVNULL,
                                  stderr=logf, env=env_for(rank))

    def req(self, method, path, body=None, timeout=120):
        data = json.dumps(body).encode() if body is not None else b""
        c = fc.Conn(self.sock, timeout=timeout)
        try:
            return c.request(fc.env_for(method, path, data, auth=KEY), data, keep=False)
        finally:
            c.close()

    def health(self):
        try:
            st, _, b = self.req("GET", "/health", timeout=5)
            return st, b
        except OSError as e:
            return None, str(e)

    def wait_health(self, want, secs):
        t0 = time.time()
        while time.time() - t0 < secs:
            st, b = self.health()
            if st == want:
                return True, b
            if self.p.poll() is not None:
                return False, "exited %s" % self.p.returncode
            time.sleep(0.2)
        return False, self.health()

    def complete(self, prompt, n=16):
        st, _, b = self.req("POST", "/v1/completions", {"model": "synth", "prompt": prompt, "max_tokens": n,
                                                        "temperature": 0, "ignore_eos": True})
        return st, (json.loads(b)["choices"][0]["text"] if st == 200 else b)

    def text(self):
        return open(self.log, errors="replace").read()

    def stop(self, sig=signal.SIGTERM, wait=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(wait)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
                return None
        return self.p.returncode


def stacks(r):
    """Every thread's stack of a hung rank (cuda-gdb attaches to host programs too), into its log's reader."""
    gdb = os.environ.get("SPARKD_TP_GDB")
    if not gdb:
        return
    out = subprocess.run([gdb, "-q", "-batch", "-p", str(r.p.pid), "-ex", "thread apply all bt 25"],
                         capture_output=True, text=True, timeout=90)
    print("# stacks of rank %d while hung:" % r.rank)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith(("#", "Thread")):
            print("#   " + line[:220])


def main():
    d = tempfile.mkdtemp(prefix="sparkd-tp-")
    # 1. a missing peer at start: the front end answers 503 while it waits, then the start
    #    fails (as any failed model load does: exit 1, the service manager restarts it)
    r0 = Rank(d, 0, connect_timeout=3)
    try:
        seen = set()
        t0 = time.time()
        while r0.p.poll() is None and time.time() - t0 < 60:
            st, _ = r0.health()
            if st is not None:
                seen.add(st)
            time.sleep(0.2)
        rc = r0.p.poll()
        log = r0.text()
        ok(rc not in (None, 0) and 503 in seen and "did not connect" in log,
           "missing peer at start: /health 503 while waiting, then exit %s with the reason in the log (%.1f s)"
           % (rc, time.time() - t0), log[-600:])
    finally:
        r0.stop(signal.SIGKILL, 5)
    # 2. the pair
    r1 = Rank(d, 1)
    r0 = Rank(d, 0)
    try:
        up, why = r0.wait_health(200, 120)
        if not ok(up, "rank 0 + rank 1 ready", (why, r0.text()[-800:], r1.text()[-800:])):
            return 1
        prompts = ["Tensor parallel request %d: the quick brown fox" % i for i in range(8)]
        solo = [r0.complete(p) for p in prompts]
        ok(all(s == 200 and t for s, t in solo), "8 greedy completions through the TP front end", solo[:2])
        res = [None] * 8

        def one(i):
            res[i] = r0.complete(prompts[i])
        ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        ok(res == solo, "8 concurrent greedy completions equal their solo runs (%d/8)" %
           sum(1 for i in range(8) if res[i] == solo[i]))
        # 3. rank 1 dies mid-stream
        c = fc.stream_completion(r0.sock, KEY, "A long story:", 3500)
        ev, done, _ = fc.read_sse(c, stop_after=5)
        r1.p.send_signal(signal.SIGKILL)
        t_kill = time.time()
        got = {}

        def rest():
            try:
                got["r"] = fc.read_sse(c)
            except OSError as e:
                got["e"] = str(e)
        rd = threading.Thread(target=rest, daemon=True)
        rd.start()
        rd.join(30)  # keepalive comments would keep a socket timeout from firing: a wall deadline
        t_end = time.time() - t_kill
        if rd.is_alive():
            done, tail = False, "no end 30 s after the kill"
            stacks(r0)
        elif "e" in got:
            done, tail = True, got["e"]
        else:
            ev, done, raw = got["r"]
            tail = raw[-300:]
        c.close()
        clean = b"[DONE]" in tail and b"error" not in tail
        ok(done and not clean and t_end < 20, "rank 1 killed mid-stream: the stream ends with an error after %.1f s "
           "(step_timeout_s 5), %d events" % (t_end, len(ev)), tail)
        if rd.is_alive():
            return 1  # hung: the stacks are printed; the later checks would hang the same way
        t0 = time.time()
        st, b = r0.complete("after the peer died", 4)
        dt = time.time() - t0
        ok(st == 503 and dt < 5, "after the peer died: a new request gets 503 in %.2f s" % dt, (st, b))
        hs, hb = r0.health()
        ok(hs == 503 and b"failed" in (hb or b""), "after the peer died: /health 503, status failed", (hs, hb))
        log = r0.text()
        ok("rank 1" in log and ("went away" in log or "closed its control connection" in log or "did not finish" in log),
           "rank 0's log names rank 1", log[-800:])
        t0 = time.time()
        rc = r0.stop(wait=30)
        ok(rc == 1, "SIGTERM stops rank 0 after the failure: exit 1 without GPU teardown, no crash (exit %s in %.1f s)"
           % (rc, time.time() - t0),
           r0.text()[-400:])
    finally:
        r0.stop(signal.SIGKILL, 5)
        r1.stop(signal.SIGKILL, 5)
        print("# rank 0 log tail:\n" + "\n".join("#   " + l for l in r0.text().splitlines()[-12:]))
        print("# rank 1 log tail:\n" + "\n".join("#   " + l for l in r1.text().splitlines()[-6:]))
    print("%d failed" % FAILED)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
