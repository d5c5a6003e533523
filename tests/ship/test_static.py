#!/usr/bin/env python3
"""test_static.py — the shipped binaries link what firmware-notes/ section 5 says:

- build/sparkd-static (make static, musl): `file` says statically linked, no ELF
  interpreter, no DT_NEEDED; it serves a completion through nginx from an empty
  root — a chroot holding only the binary, the INI, the template, the model and
  an empty socket directory (no /lib, /dev, /proc, /etc);
- build/sparkd (glibc, the CUDA unit when nvcc was there): needs only glibc's
  libc/libm/loader; libcuda.so.1 is not linked but named for dlopen (CUDA builds).

Root (CI is) or an unprivileged user namespace is needed for chroot. Runs in the
normal pass only (~10 s)."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

STATIC = os.path.join(S.ROOT, "build", "sparkd-static")
GLIBC = os.path.join(S.ROOT, "build", "sparkd")
KEY = "sk-static-" + "y" * 20
GLIBC_LIBS = ("libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1")


def needed(path):
    r = S.run(["readelf", "-dW", path])
    return [l.split("[", 1)[1].rstrip("]") for l in r.stdout.splitlines() if "(NEEDED)" in l]


def interp(path):
    return "INTERP" in S.run(["readelf", "-lW", path]).stdout


def main():
    if S.SAN:
        ok(True, "static-binary checks run in the normal pass only")
        return 0
    if not ok(os.path.exists(STATIC), "build/sparkd-static exists (build.sh / make static)"):
        return 1
    f = S.run(["file", "-b", STATIC]).stdout
    ok("statically linked" in f, "file: sparkd-static is statically linked", f)
    ok(not interp(STATIC) and needed(STATIC) == [], "sparkd-static: no ELF interpreter, no shared libraries",
       needed(STATIC))
    ver = S.run([STATIC, "--version"])
    ok(ver.returncode == 0 and ver.stdout.startswith("sparkd "), "sparkd-static --version runs", ver.stderr)

    libs = needed(GLIBC)
    ok(libs and all(l in GLIBC_LIBS for l in libs), "build/sparkd needs only glibc (%s)" % " ".join(libs), libs)
    dev = S.run([GLIBC, "device"])
    if "built without CUDA" in dev.stderr:
        print("# build/sparkd is a CPU build; the libcuda.so.1 check applies to CUDA builds")
    else:
        blob = open(GLIBC, "rb").read()
        ok(b"libcuda.so.1" in blob and "libcuda.so.1" not in libs,
           "CUDA build: libcuda.so.1 is dlopened (named in the binary), not linked")

    # the empty root
    can_chroot = os.geteuid() == 0
    prefix = [] if can_chroot else ["unshare", "-r"]
    if not can_chroot and S.run(["unshare", "-r", "true"]).returncode != 0:
        print("# skip empty-root serving: not root and no user namespaces")
        return exit_code()
    work = tempfile.mkdtemp(prefix="sparkd-static-", dir=os.path.join(S.ROOT, "build"))
    root = os.path.join(work, "root")
    os.makedirs(os.path.join(root, "run"))
    shutil.copy2(STATIC, os.path.join(root, "sparkd"))
    S.place(S.MODEL, os.path.join(root, "model.gguf"))
    shutil.copy2(os.path.join(S.ROOT, "etc", "templates", "gemma3.jinja"), os.path.join(root, "gemma3.jinja"))
    with open(os.path.join(root, "sparkd.ini"), "w") as fh:
        fh.write("[server]\nlisten = unix:/run/sparkd.sock\nworkers = 4\nthreads = 2\n"
                 "[model]\npath = model.gguf\nid = gemma-3-270m\ncontext = 256\nchat_template_file = gemma3.jinja\n"
                 "[engine]\nmax_seqs = 1\n[auth]\napi_key_sha256 = %s\n" % hashlib.sha256(KEY.encode()).hexdigest())
    before = sorted(os.listdir(root))
    ok(before == ["gemma3.jinja", "model.gguf", "run", "sparkd", "sparkd.ini"], "the root holds only sparkd's files",
       before)
    log = open(os.path.join(work, "sparkd.log"), "w")
    sp = subprocess.Popen(prefix + ["chroot", root, "/sparkd", "serve", "--config", "/sparkd.ini"], stdout=log, stderr=log)
    ng = S.Nginx(os.path.join(work, "nginx"), os.path.join(root, "run", "sparkd.sock"))
    try:
        st = ng.wait_health(lambda: sp.poll() is None)
        ok(st == 200, "chroot: /health 200 through nginx", open(log.name).read()[-800:] + ng.error_log())
        st, body = ng.curl("/v1/completions", {"model": "gemma-3-270m", "prompt": "The capital of France is the city of",
                                               "max_tokens": 3, "temperature": 0}, key=KEY)
        ok(st == 200 and "Paris" in body, "chroot: a greedy completion through nginx says Paris", (st, body))
        st, _ = ng.curl("/v1/models")
        ok(st == 401, "chroot: the API key is checked (SHA-256 by the static BearSSL)", st)
    finally:
        rc = S.stop(sp)
        ng.stop()
    ok(rc == 0, "chroot: SIGTERM drains and exits 0", rc)
    after = sorted(os.listdir(root))
    ok(after == before and os.listdir(os.path.join(root, "run")) == [],
       "nothing else appeared in the root; the socket was removed", after)
    shutil.rmtree(work, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
