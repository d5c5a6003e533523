#!/usr/bin/env python3
"""test_bundle.py — INSTALL.md section 3 (air-gapped): the bundle made by one command
(etc/deploy/bundle.sh), moved (its tar checked by sha256sum and by sparkd verify, unpacked
elsewhere), verified with the bundle's own static binary (`sparkd verify --manifest
SHA256SUMS`: every file OK; a changed byte: FAILED, exit 1), and served from where it
was unpacked — nginx with a certificate from a local CA (nginx/gen-ca.sh), curl trusting
only that CA, the bundle's INI re-checking the model's SHA-256 while loading.
Normal pass only; ~15 s."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402


def main():
    if S.SAN:
        ok(True, "bundle checks run in the normal pass only")
        return 0
    work = tempfile.mkdtemp(prefix="sparkd-bundle-", dir=os.path.join(S.ROOT, "build"))
    out = os.path.join(work, "out")
    r = S.run([os.path.join(S.ROOT, "etc", "deploy", "bundle.sh"), out])
    tar = r.stdout.strip()
    ok(r.returncode == 0 and tar.endswith(".tar") and os.path.exists(tar), "etc/deploy/bundle.sh makes the bundle",
       r.stdout + r.stderr)
    if not os.path.exists(tar):
        return exit_code()
    name = os.path.basename(tar)[:-4]
    # the move: only the two files cross
    far = os.path.join(work, "far")
    os.makedirs(far)
    for f in (tar, tar + ".sha256"):
        shutil.move(f, far)
    shutil.rmtree(out)
    r = S.run(["sha256sum", "-c", name + ".tar.sha256"], cwd=far)
    ok(r.returncode == 0, "the tar's digest checks with sha256sum after the move", r.stdout + r.stderr)
    r = S.run([os.path.join(S.ROOT, "build", "sparkd-static"), "verify", "--manifest", name + ".tar.sha256"], cwd=far)
    ok(r.returncode == 0 and r.stdout == name + ".tar: OK\n", "... and with sparkd verify", r.stdout + r.stderr)
    r = S.run(["tar", "xf", name + ".tar"], cwd=far)
    B = os.path.join(far, name)
    ok(r.returncode == 0 and os.path.isdir(B), "unpacked", r.stderr)
    sparkd = os.path.join(B, "build", "sparkd-static")
    listed = [l.split(" *", 1)[1] for l in open(os.path.join(B, "SHA256SUMS")).read().splitlines()]
    present = sorted(os.path.relpath(os.path.join(dp, f), B) for dp, _, fs in os.walk(B) for f in fs)
    ok(sorted(listed + ["SHA256SUMS"]) == present, "SHA256SUMS lists every file of the bundle (%d)" % len(listed),
       (listed, present))
    for must in ("build/sparkd-static", "build/sparkd", "etc/sparkd.ini", "etc/sparkd.service", "nginx/render.sh",
                 "nginx/gen-ca.sh", "INSTALL.md"):
        ok(must in listed, "the bundle holds " + must)
    ok(any(l.startswith("models/") and l.endswith(".gguf") for l in listed), "the bundle holds the model")
    r = S.run([sparkd, "verify", "--manifest", "SHA256SUMS"], cwd=B)
    ok(r.returncode == 0 and r.stdout.count(": OK\n") == len(listed), "sparkd verify --manifest SHA256SUMS: %d OK"
       % len(listed), r.stdout + r.stderr)
    readme = os.path.join(B, "README.md")
    orig = open(readme, "rb").read()
    with open(readme, "ab") as f:
        f.write(b" ")
    r = S.run([sparkd, "verify", "--manifest", "SHA256SUMS"], cwd=B)
    ok(r.returncode == 1 and "README.md: FAILED" in r.stdout, "one changed byte: FAILED, exit 1", r.stdout)
    with open(readme, "wb") as f:
        f.write(orig)

    # serve it, TLS from a local CA
    tls = os.path.join(work, "tls")
    r = S.run([os.path.join(B, "nginx", "gen-ca.sh"), tls, "localhost"])
    ok(r.returncode == 0, "nginx/gen-ca.sh: a local CA and a server certificate", r.stderr)
    sock = os.path.join(work, "sparkd.sock")
    log = open(os.path.join(work, "sparkd.log"), "w")
    sp = subprocess.Popen([sparkd, "serve", "--config", os.path.join(B, "etc", "sparkd.ini"), "--listen", "unix:" + sock,
                           "-t", "2"], stdout=log, stderr=log, cwd="/")
    ng = S.Nginx(os.path.join(work, "nginx"), sock, tls=(os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem"),
                                                         os.path.join(tls, "ca.pem")))
    try:
        st = ng.wait_health(lambda: sp.poll() is None)
        text = open(log.name).read()
        ok(st == 200, "served from the bundle: /health 200 over TLS trusted through the local CA",
           text[-800:] + ng.error_log())
        ok("verified while loading" in text, "the bundle's INI re-checks the model's SHA-256 at load", text[-600:])
        st, body = ng.curl("/v1/completions", {"model": "gemma-3-270m", "prompt": "def add(a, b):\n    return",
                                               "max_tokens": 4, "temperature": 0})
        ok(st == 200 and '"text":" a + b' in body, "a completion from the bundle", (st, body))
    finally:
        S.stop(sp)
        ng.stop()
    shutil.rmtree(work, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
