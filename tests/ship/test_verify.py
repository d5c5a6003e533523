#!/usr/bin/env python3
"""test_verify.py — `sparkd verify` and [model] sha256 / manifest, against GNU coreutils'
sha256sum (which nobody here wrote):

- manifests written by `sha256sum` (text and binary mode, a name with a blank, a name
  with a backslash that sha256sum escapes) verify with `sparkd verify --manifest`, line for
  line what `sha256sum -c` prints; a flipped byte is FAILED by both, exit 1 from both;
  `sparkd verify FILE...` prints what `sha256sum FILE...` prints; the manifest's own
  directory is where names are taken from, whatever the working directory;
- `serve` with the right [model] sha256 starts and says it verified while loading; a wrong
  one refuses to start naming both digests and the file; a manifest in the INI works the
  same, and one that does not list the model is refused;
- the digest is computed while loading, not in a second pass: the bytes sparkd reads
  (/proc/PID/io rchar) with a digest configured exceed those without by < 1% of the file.
Normal pass only (glibc and static binaries); ~15 s."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "e2e"))
import shiplib as S  # noqa: E402
import harness  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

BINS = [os.path.join(S.ROOT, "build", "sparkd"), os.path.join(S.ROOT, "build", "sparkd-static")]


def rchar(pid):
    for l in open("/proc/%d/io" % pid):
        if l.startswith("rchar:"):
            return int(l.split()[1])
    return -1


def serve(extra, wait=True):
    """(stack, ready?, log, rchar at ready)."""
    st = harness.Stack(ini_extra=extra)
    st.start(wait=False)
    t0, ready = time.time(), False
    while time.time() - t0 < 60 and st.sparkd.poll() is None:
        if "sparkd: ready" in st.log():
            ready = True
            break
        time.sleep(0.05)
    io = rchar(st.sparkd.pid) if ready else -1
    if not ready:
        st.sparkd.wait(timeout=30)
    return st, ready, st.log(), io


def main():
    if S.SAN:
        ok(True, "verify checks run in the normal pass only")
        return 0
    work = tempfile.mkdtemp(prefix="sparkd-verify-", dir=os.path.join(S.ROOT, "build"))
    d = os.path.join(work, "bundle")
    os.makedirs(os.path.join(d, "sub"))
    S.place(S.MODEL, os.path.join(d, "model.gguf"))
    for name, data in (("a b.txt", b"blank in the name\n"), ("sub/back\\slash", b"x" * 100000), ("empty", b"")):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    names = ["model.gguf", "a b.txt", "sub/back\\slash", "empty"]
    r = S.run(["sha256sum"] + names[:2], cwd=d)
    r2 = S.run(["sha256sum", "-b"] + names[2:], cwd=d)
    with open(os.path.join(d, "SHA256SUMS"), "w") as f:
        f.write(r.stdout + r2.stdout)
    ok("\\" in r2.stdout.splitlines()[0][:1], "sha256sum escaped the backslash name (the case is exercised)", r2.stdout)
    want = S.run(["sha256sum", "-c", "SHA256SUMS"], cwd=d)
    for b in BINS:
        tag = os.path.basename(b)
        got = S.run([b, "verify", "--manifest", os.path.join(d, "SHA256SUMS")], cwd="/")
        ok(got.returncode == 0 and want.returncode == 0 and got.stdout == want.stdout,
           "%s verify = sha256sum -c, from another directory (%d files)" % (tag, len(names)), (got.stdout, got.stderr,
                                                                                              want.stdout))
        got = S.run([b, "verify"] + names[:2], cwd=d)
        ok(got.returncode == 0 and got.stdout == r.stdout, "%s verify FILE... prints what sha256sum prints" % tag,
           (got.stdout, r.stdout))
        got = S.run([b, "verify", "--manifest=SHA256SUMS", "a b.txt"], cwd=d)
        ok(got.returncode == 0 and got.stdout == "a b.txt: OK\n", "%s verify --manifest=M FILE: only that file" % tag,
           got.stdout)
    # a flipped byte
    with open(os.path.join(d, "a b.txt"), "r+b") as f:
        f.write(b"B")
    want = S.run(["sha256sum", "-c", "SHA256SUMS"], cwd=d)
    got = S.run([BINS[0], "verify", "--manifest", "SHA256SUMS"], cwd=d)
    ok(got.returncode == 1 and want.returncode == 1 and got.stdout == want.stdout and "a b.txt: FAILED" in got.stdout,
       "a flipped byte: FAILED from both, exit 1 from both", (got.stdout, want.stdout))
    os.unlink(os.path.join(d, "empty"))
    got = S.run([BINS[0], "verify", "--manifest", "SHA256SUMS"], cwd=d)
    ok(got.returncode == 1 and "empty: FAILED open or read" in got.stdout, "a missing file: FAILED open or read",
       got.stdout)
    got = S.run([BINS[0], "verify", "--manifest", "SHA256SUMS", "/etc/hostname"], cwd=d)
    ok(got.returncode == 1 and "/etc/hostname: NOT IN MANIFEST" in got.stdout, "a file the manifest lacks", got.stdout)

    digest = hashlib.sha256(open(S.MODEL, "rb").read()).hexdigest()
    size = os.path.getsize(S.MODEL)
    st, ready, log, io_plain = serve({})
    st.stop()
    st, ready, log, io_sha = serve({"model": {"sha256": digest}})
    st.stop()
    ok(ready and ("model SHA-256 %s verified while loading" % digest) in log, "serve: right [model] sha256 starts",
       log[-600:])
    ok(0 < io_plain and 0 <= io_sha - io_plain < size // 100 and io_sha < size * 1.05,
       "serve: hashed while loading, one read of the file (rchar %d with the digest, %d without, file %d)" % (
           io_sha, io_plain, size))
    wrong = "0" * 63 + "1"
    st, ready, log, _ = serve({"model": {"sha256": wrong}})
    st.stop()
    ok(not ready and st.sparkd.returncode != 0 and ("SHA-256 mismatch: the file has %s, the configuration expects %s"
                                                    % (digest, wrong)) in log and S.MODEL in log,
       "serve: a wrong [model] sha256 refuses to start, naming both digests and the file", log[-600:])
    mf = os.path.join(work, "MODELSUMS")
    with open(mf, "w") as f:
        f.write("%s  %s\n" % (digest, os.path.relpath(S.MODEL, work)))
    st, ready, log, _ = serve({"model": {"manifest": mf}})
    st.stop()
    ok(ready and "verified while loading" in log, "serve: [model] manifest listing the model starts", log[-600:])
    with open(mf, "w") as f:
        f.write("%s  other.gguf\n" % digest)
    st, ready, log, _ = serve({"model": {"manifest": mf}})
    st.stop()
    ok(not ready and "does not list the model" in log, "serve: a manifest without the model is refused", log[-600:])
    shutil.rmtree(work, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
