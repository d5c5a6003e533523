"""harness.py — bring up nginx (TLS, its own prefix) + sparkd (FastCGI on a
unix socket) on loopback for the end-to-end tests, and tear them down.

Everything lives in one temp dir: a throwaway self-signed certificate
(nginx/gen-selfsigned.sh), the rendered site (nginx/render.sh), a standalone
nginx.conf, sparkd's INI and logs. The HTTPS port is a free one on 127.0.0.1.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
import hashlib

ROOT = os.environ.get("SPARKD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("SPARKD_BIN", os.path.join(ROOT, "build", "sparkd"))
MODEL = os.environ.get("SPARKD_MODEL", os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf"))
API_KEY = "sk-e2e-" + "x" * 24
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Stack:
    def __init__(self, ini_extra=None, keep=False, engine_threads=2, max_conns=8, render_extra=None):
        self.max_conns = max_conns
        self.render_extra = list(render_extra or [])
        self.dir = tempfile.mkdtemp(prefix="sparkd-e2e-")
        self.keep = keep
        self.port = free_port()
        self.sock = os.path.join(self.dir, "sparkd.sock")
        self.cert = os.path.join(self.dir, "tls", "cert.pem")
        self.key = os.path.join(self.dir, "tls", "key.pem")
        self.base = "https://127.0.0.1:%d" % self.port
        self.sparkd = self.nginx = None
        self.sparkd_log = os.path.join(self.dir, "sparkd.log")
        self.ini = os.path.join(self.dir, "sparkd.ini")
        ini = {
            "server": {"listen": "unix:" + self.sock, "workers": "8", "threads": str(engine_threads)},
            "model": {"path": MODEL, "id": "gemma-3-270m", "context": "512",
                      "chat_template_file": os.path.join(ROOT, "etc", "templates", "gemma3.jinja")},
            "engine": {"max_seqs": "2", "max_batched_tokens": "128"},
            "limits": {"max_body_bytes": "1048576", "max_queue": "2", "max_tokens": "256", "max_stop": "4",
                       "max_stop_len": "64", "max_tools_bytes": "4096"},
            "timeouts": {"keepalive_ms": "200", "drain_s": "60"},
            "log": {"level": "info", "requests": "true"},
            "auth": {"api_key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "metrics_public": "false"},
        }
        for sec, kv in (ini_extra or {}).items():
            ini.setdefault(sec, {}).update(kv)
        with open(self.ini, "w") as f:
            for sec, kv in ini.items():
                f.write("[%s]\n" % sec)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))

    def start(self, wait=True):
        subprocess.run([os.path.join(ROOT, "nginx", "gen-selfsigned.sh"), os.path.join(self.dir, "tls")],
                       check=True, stdout=subprocess.DEVNULL)
        site = subprocess.run([os.path.join(ROOT, "nginx", "render.sh"), "--listen", "127.0.0.1:%d" % self.port,
                               "--cert", self.cert, "--key", self.key, "--socket", self.sock, "--max-conns", str(self.max_conns)]
                              + self.render_extra,
                              check=True, capture_output=True, text=True).stdout
        with open(os.path.join(self.dir, "sparkd.conf"), "w") as f:
            f.write(site)
        conf = open(os.path.join(ROOT, "nginx", "standalone.conf.in")).read()
        conf = conf.replace("@PREFIX@", self.dir).replace("@USER_LINE@", "user root;" if os.geteuid() == 0 else "")
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.start_sparkd()
        self.nginx = subprocess.Popen([NGINX, "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
                                       "-e", os.path.join(self.dir, "error.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def start_sparkd(self):
        """Starts sparkd (again, after it exited: its log is appended to)."""
        self.sparkd = subprocess.Popen([BIN, "serve", "--config", self.ini], stdout=subprocess.DEVNULL,
                                       stderr=open(self.sparkd_log, "a"))
        return self

    def nginx_log(self):
        try:
            return open(os.path.join(self.dir, "error.log"), errors="replace").read()
        except OSError:
            return ""

    def ssl_ctx(self):
        return ssl.create_default_context(cafile=self.cert)

    def get(self, path, headers=None, timeout=10):
        """(status, headers, body bytes) over HTTPS with urllib (no auth unless given)."""
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, context=self.ssl_ctx(), timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait_ready(self, timeout=120):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.sparkd.poll() is not None:
                raise RuntimeError("sparkd exited %d:\n%s" % (self.sparkd.returncode, self.log()))
            try:
                st, _, _ = self.get("/health", timeout=2)
                if st == 200:
                    return time.time() - t0
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("not ready after %ds:\n%s" % (timeout, self.log()))

    def log(self):
        try:
            return open(self.sparkd_log, errors="replace").read()
        except OSError:
            return ""

    def stop(self):
        rc = None
        if self.sparkd and self.sparkd.poll() is None:
            self.sparkd.terminate()
            try:
                rc = self.sparkd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.sparkd.kill()
                rc = self.sparkd.wait()
        elif self.sparkd:
            rc = self.sparkd.returncode
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc


# ---- the "ok - / not ok -" protocol of tests/run.sh ----
class Report:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def ok(self, cond, name, detail=""):
        if cond:
            self.passed += 1
            print("ok - " + name, flush=True)
        else:
            self.failed += 1
            print("not ok - %s%s" % (name, (": " + str(detail)[:600]) if detail else ""), flush=True)
        return cond

    def skip(self, name, why):
        print("# skip %s: %s" % (name, why), flush=True)
