"""shiplib.py — what the shipping tests (tests/ship/) share: a standalone nginx
in front of a sparkd socket that the test started its own way (in a chroot, from
an installed layout, from a bundle), HTTPS requests with curl, and clean-up."""
import json
import os
import shutil
import socket
import subprocess
import time

ROOT = os.environ.get("SPARKD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
MODEL = os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SAN = BUILD.rstrip("/").endswith("-san")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(cmd, **kw):
    """subprocess.run with text output captured; never raises on a non-zero exit."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


class Nginx:
    """nginx -p DIR in front of a unix socket, TLS with a throwaway certificate."""

    def __init__(self, dir, sock, user_line=None, tls=None):
        """tls: (cert, key, CA file clients trust); default a fresh self-signed pair."""
        self.dir, self.sock = dir, sock
        self.port = free_port()
        self.base = "https://127.0.0.1:%d" % self.port
        os.makedirs(os.path.join(dir, "tmp"), exist_ok=True)
        if tls:
            cert, key, self.cert = tls
        else:
            cert, key = os.path.join(dir, "tls", "cert.pem"), os.path.join(dir, "tls", "key.pem")
            self.cert = cert
            subprocess.run([os.path.join(ROOT, "nginx", "gen-selfsigned.sh"), os.path.join(dir, "tls")], check=True,
                           stdout=subprocess.DEVNULL)
        site = subprocess.run([os.path.join(ROOT, "nginx", "render.sh"), "--listen", "127.0.0.1:%d" % self.port,
                               "--cert", cert, "--key", key, "--socket", sock,
                               "--max-conns", "4"], check=True, capture_output=True, text=True).stdout
        with open(os.path.join(dir, "sparkd.conf"), "w") as f:
            f.write(site)
        if user_line is None:
            user_line = "user root;" if os.geteuid() == 0 else ""
        conf = open(os.path.join(ROOT, "nginx", "standalone.conf.in")).read()
        with open(os.path.join(dir, "nginx.conf"), "w") as f:
            f.write(conf.replace("@PREFIX@", dir).replace("@USER_LINE@", user_line))
        self.proc = subprocess.Popen([NGINX, "-p", dir, "-c", os.path.join(dir, "nginx.conf"), "-e",
                                      os.path.join(dir, "error.log")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def curl(self, path, body=None, key=None, timeout=60):
        """(status, body text) of one HTTPS request."""
        cmd = ["curl", "-sS", "--cacert", self.cert, "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}",
               self.base + path]
        if key:
            cmd += ["-H", "Authorization: Bearer " + key]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        r = run(cmd)
        out, _, code = r.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), out + r.stderr

    def wait_health(self, alive, timeout=120):
        """Polls /health until 200; alive() -> False stops early. Returns the last status."""
        t0, st = time.time(), 0
        while time.time() - t0 < timeout:
            if not alive():
                return st
            st, _ = self.curl("/health", timeout=2)
            if st == 200:
                return st
            time.sleep(0.2)
        return st

    def error_log(self):
        try:
            return open(os.path.join(self.dir, "error.log"), errors="replace").read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stop(proc, timeout=30):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode if proc else None


def place(src, dst):
    """Hard link src at dst (same file system), else copy it."""
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copy2(src, dst)
