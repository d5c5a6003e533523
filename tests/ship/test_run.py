#!/usr/bin/env python3
"""test_run.py — `./build.sh run [PORT] [RUNDIR]` (tests/run_main.sh): two instances in one
checkout, each with its own port and run directory, come up side by side; each prints
its demo requests (completions the default base model gets right, self-checked) and
says plainly that the default is a small base model for smoke tests; a printed request
line, run by bash as printed, answers; each instance's key works on its own port only (no
cross-talk); a third start on a run directory in use is refused, as is a taken port;
Ctrl-C stops both. Normal pass only; ~30 s."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

RUN = os.path.join(S.ROOT, "tests", "run_main.sh")


def start(port, d):
    out = open(d + ".out", "w+")
    env = dict(os.environ, SPARKD_BIN=os.path.join(S.ROOT, "build", "sparkd"))
    p = subprocess.Popen([RUN, str(port), d], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return p, out


def wait_text(p, out, needle, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        out.seek(0)
        text = out.read()
        if needle in text or p.poll() is not None:
            return text
        time.sleep(0.2)
    out.seek(0)
    return out.read()


def main():
    if S.SAN:
        ok(True, "./build.sh run checks run in the normal pass only")
        return 0
    work = tempfile.mkdtemp(prefix="sparkd-run-", dir=os.path.join(S.ROOT, "build"))
    da, db = os.path.join(work, "a"), os.path.join(work, "b")
    pa_port, pb_port = S.free_port(), S.free_port()
    while pb_port == pa_port:
        pb_port = S.free_port()
    pa, oa = start(pa_port, da)
    pb, ob = start(pb_port, db)
    try:
        ta = wait_text(pa, oa, "Ctrl-C to stop")
        tb = wait_text(pb, ob, "Ctrl-C to stop")
        ok("Ctrl-C to stop" in ta and "Ctrl-C to stop" in tb, "two instances up side by side (%d, %d)" % (
            pa_port, pb_port), ta[-800:] + tb[-800:])
        ok(ta.count("  -> ") == 3 and "Paris" in ta and "Thursday, Friday" in ta and "a + b" in ta,
           "the demo: three completions the base model gets right", ta[-1500:])
        ok("small base model" in ta and "not instruction-tuned" in ta and "INSTALL.md section 6" in ta,
           "the demo says it is a small base model and where real models are served")
        ka = re.search(r"key: (sk-local-\w+)", ta)
        kb = re.search(r"key: (sk-local-\w+)", tb)
        ok(ka and kb and ka.group(1) != kb.group(1), "each instance has its own key")
        ok(os.path.exists(os.path.join(da, "sparkd.sock")) and os.path.exists(os.path.join(db, "sparkd.sock")),
           "each has its own socket in its run directory")
        line = next(l for l in ta.splitlines() if l.startswith("curl ") and "Monday" in l)
        r = S.run(["bash", "-c", line])
        ok(r.returncode == 0 and "Thursday" in r.stdout, "a printed request, run as printed, answers", r.stdout[-400:])

        def models(port, key, cert):
            return S.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert,
                          "-H", "Authorization: Bearer " + key, "https://127.0.0.1:%d/v1/models" % port]).stdout
        ca, cb = os.path.join(da, "tls", "cert.pem"), os.path.join(db, "tls", "cert.pem")
        ok(models(pa_port, ka.group(1), ca) == "200" and models(pb_port, kb.group(1), cb) == "200" and
           models(pa_port, kb.group(1), ca) == "401" and models(pb_port, ka.group(1), cb) == "401",
           "no cross-talk: each key works on its own instance only")
        r = S.run([RUN, str(S.free_port()), da], timeout=30)
        ok(r.returncode != 0 and "in use by sparkd PID" in r.stdout, "a run directory in use is refused", r.stdout)
        r = S.run([RUN, str(pa_port), os.path.join(work, "c")], timeout=30)
        ok(r.returncode != 0 and "port %d is taken" % pa_port in r.stdout, "a taken port is refused", r.stdout)
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        rcs = []
        for p in (pa, pb):
            try:
                rcs.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                rcs.append(p.wait())
    ta = wait_text(pa, oa, "[run] stopped", 5)
    ok("[run] stopped" in ta and not os.path.exists(os.path.join(da, "sparkd.pid")), "Ctrl-C stops an instance",
       ta[-400:])
    subprocess.run(["rm", "-rf", work])
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
