#!/usr/bin/env python3
"""test_install.py — INSTALL.md section 1 (DGX Spark bare metal) followed as written,
as far as this machine allows, ending in a 200 through nginx.

The command blocks of the section are taken from INSTALL.md itself (a block preceded
by `<!-- install-test: skip: why -->` is left out and the reason printed) and run by
bash -e in a throwaway root: a chroot with the host's /usr read-only, a copy of the
host's /etc (so useradd/usermod/nginx act on the copy), empty /var, /run, /tmp and
/usr/local, the checkout's build/sparkd, etc/, nginx/ and models/ under /src — inside
new mount, PID and network namespaces (so `listen 443` is free, and everything started
there dies with the namespace). No systemd runs there: `systemctl` is a stand-in that
starts the unit the way its [Service] section says (User, Group, RuntimeDirectory and its
mode, UMask, ExecStart) and starts/reloads nginx; `sudo` runs the command (as -u USER
via setpriv). The hardening options of the unit are not applied (test_units.py checks
them with systemd-analyze). Then: a completion with the key the steps made; and with
www-data taken out of group sparkd nginx gets "Permission denied" on the socket and
/health turns 503 — the wiring is what makes the 200.

Needs root (CI runs as root); ~15 s. Normal pass only."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

SYSTEMCTL = r'''#!/bin/bash
# systemctl stand-in for tests/ship/test_install.py (no systemd in the throwaway root)
set -euo pipefail
start_unit() {
    local f=/etc/systemd/system/$1.service
    get() { sed -n "s/^$1=//p" "$f" | tail -n 1; }
    local user group rdir rmode um cmd
    user=$(get User) group=$(get Group) rdir=$(get RuntimeDirectory) rmode=$(get RuntimeDirectoryMode)
    um=$(get UMask) cmd=$(get ExecStart)
    [ -n "$rdir" ] && install -d -o "$user" -g "$group" -m "${rmode:-0755}" "/run/$rdir"
    ( umask "${um:-0022}"; exec setpriv --reuid="$user" --regid="$group" --init-groups $cmd ) >>"/var/log/$1.log" 2>&1 &
    echo $! >"/run/stand-in-$1.pid"
}
nginx_up() {
    if [ -f /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then nginx -s reload; else nginx; fi
}
case "$*" in
    daemon-reload) ;;
    "enable --now sparkd"|"start sparkd"|"restart sparkd") start_unit sparkd ;;
    "enable --now nginx"|"start nginx"|"restart nginx"|"reload nginx") nginx_up ;;
    *) echo "systemctl stand-in: not supported: $*" >&2; exit 1 ;;
esac
'''

SUDO = r'''#!/bin/bash
# sudo stand-in for tests/ship/test_install.py: already root; -u USER via setpriv
if [ "${1:-}" = -u ]; then u=$2; shift 2; exec setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; fi
exec "$@"
'''

# what runs after INSTALL.md's blocks, in the same shell (so $KEY is the one they made)
CHECKS = r'''
echo "STEPS-DONE"
code() { curl -s -o /dev/null -w '%{http_code}' --cacert /etc/sparkd/tls/cert.pem "$@"; }
echo "HEALTH $(code https://localhost/health)"
echo "COMPLETION $(curl -s --cacert /etc/sparkd/tls/cert.pem -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' https://localhost/v1/completions \
    -d '{"model":"gemma-3-270m","prompt":"Monday, Tuesday, Wednesday,","max_tokens":3,"temperature":0}')"
echo "NOKEY $(code https://localhost/v1/models)"
stat -c 'SOCKET %a %U %G' /run/sparkd/sparkd.sock
stat -c 'SOCKDIR %a %U %G' /run/sparkd
echo "PS $(ps -o user= -p "$(cat /run/stand-in-sparkd.pid)")"
gpasswd -d www-data sparkd >/dev/null
nginx -s reload; sleep 1
echo "NOGROUP $(code https://localhost/health)"
grep -c 'sparkd.sock failed (13: Permission denied)' /var/log/nginx/error.log | sed 's/^/EACCES /'
kill -TERM "$(cat /run/stand-in-sparkd.pid)"
for i in $(seq 100); do kill -0 "$(cat /run/stand-in-sparkd.pid)" 2>/dev/null || break; sleep 0.1; done
echo "LOG-BEGIN"; cat /var/log/sparkd.log; echo "LOG-END"
'''

DRIVER = r'''#!/bin/bash
# inside new mount/PID/net namespaces: assemble the root, then run the steps in it
set -euo pipefail
R=$1
mount --bind /usr "$R/usr" && mount -o remount,bind,ro "$R/usr"
mount --bind "$R/.usr-local" "$R/usr/local"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
for d in build etc nginx models; do mount --bind "$R/.src-$d" "$R/src/$d"; done
mount -o remount,bind,ro "$R/src/build"
python3 -c 'import fcntl,socket,struct; fcntl.ioctl(socket.socket(), 0x8914, struct.pack("16sH14x", b"lo", 0x41))'
exec chroot "$R" /usr/bin/env -i PATH=/stand-in:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME=/root \
    /bin/bash -c 'cd /src && set -euo pipefail && . /steps.sh && . /checks.sh'
'''


def blocks():
    """(runnable [(n, text)], skipped [(n, why)]) of INSTALL.md section 1."""
    md = open(os.path.join(S.ROOT, "INSTALL.md")).read()
    sec = md[md.index("## 1."):md.index("## 2.")]
    run, skipped = [], []
    for n, m in enumerate(re.finditer(r"(<!-- install-test: skip: (.*?) -->\n)?```sh\n(.*?)```", sec, re.S)):
        (skipped if m.group(1) else run).append((n + 1, m.group(2) if m.group(1) else m.group(3)))
    return run, skipped


def main():
    if S.SAN:
        ok(True, "install path runs in the normal pass only")
        return 0
    if os.geteuid() != 0:
        print("# skip: needs root (useradd, chroot, namespaces); CI runs as root")
        return 0
    run, skipped = blocks()
    ok(len(run) >= 5, "INSTALL.md section 1: %d blocks to run, %d skipped" % (len(run), len(skipped)))
    for n, why in skipped:
        print("# INSTALL.md section 1 block %d not run here: %s" % (n, why))
    work = tempfile.mkdtemp(prefix="sparkd-install-", dir=os.path.join(S.ROOT, "build"))
    R = os.path.join(work, "root")
    for d in ("usr", "dev", "proc", "run", "tmp", "var/log/nginx", "var/lib/nginx", "var/lib", "root", "stand-in",
              ".usr-local", "src/build", "src/etc", "src/nginx", "src/models"):
        os.makedirs(os.path.join(R, d), exist_ok=True)
    os.chmod(os.path.join(R, "tmp"), 0o1777)
    for l in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + l):
            os.symlink(os.readlink("/" + l), os.path.join(R, l))
    for d in ("bin", "sbin", "lib", "include", "share", "etc", "src"):
        os.makedirs(os.path.join(R, ".usr-local", d), exist_ok=True)
    shutil.copytree("/etc", os.path.join(R, "etc"), symlinks=True,
                    ignore=lambda d, names: [n for n in names if d == "/etc" and n in ("systemd",)])
    for p in ("etc/nginx/sites-enabled/sparkd", "etc/nginx/sites-available/sparkd"):
        if os.path.lexists(os.path.join(R, p)):
            os.unlink(os.path.join(R, p))
    os.makedirs(os.path.join(R, "etc/systemd/system"), exist_ok=True)
    # the checkout, as the steps see it from /src
    os.makedirs(os.path.join(R, ".src-build"))
    shutil.copy2(os.path.join(S.ROOT, "build", "sparkd"), os.path.join(R, ".src-build", "sparkd"))
    os.symlink(os.path.realpath(os.path.join(S.ROOT, "etc")), os.path.join(R, ".src-etc"))
    os.symlink(os.path.realpath(os.path.join(S.ROOT, "nginx")), os.path.join(R, ".src-nginx"))
    os.symlink(os.path.realpath(os.path.dirname(S.MODEL)), os.path.join(R, ".src-models"))
    for name, text in (("stand-in/systemctl", SYSTEMCTL), ("stand-in/sudo", SUDO)):
        with open(os.path.join(R, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(R, name), 0o755)
    with open(os.path.join(R, "steps.sh"), "w") as f:
        for n, text in run:
            f.write("echo '## block %d'\n%s\n" % (n, text))
    with open(os.path.join(R, "checks.sh"), "w") as f:
        f.write(CHECKS)
    drv = os.path.join(work, "driver.sh")
    with open(drv, "w") as f:
        f.write(DRIVER)
    r = S.run(["unshare", "--mount", "--net", "--pid", "--fork", "--propagation", "private", "bash", drv, R],
              timeout=300)
    out = r.stdout + r.stderr
    got = dict(l.split(" ", 1) for l in r.stdout.splitlines() if re.match(r"^[A-Z-]+ ", l))
    ok("STEPS-DONE" in r.stdout, "INSTALL.md section 1 blocks ran without an error", out[-1500:])
    ok(got.get("HEALTH") == "200", "https://localhost/health is 200 through nginx (www-data -> group sparkd)",
       out[-1500:])
    ok('"text":" Thursday' in got.get("COMPLETION", ""), "a completion with the key the steps made",
       got.get("COMPLETION"))
    ok(got.get("NOKEY") == "401", "without the key: 401", got.get("NOKEY"))
    ok(got.get("SOCKET") == "660 sparkd sparkd" and got.get("SOCKDIR") == "750 sparkd sparkd",
       "socket 0660 and directory 0750, both sparkd:sparkd", (got.get("SOCKET"), got.get("SOCKDIR")))
    ok(got.get("PS") == "sparkd", "sparkd runs as user sparkd", got.get("PS"))
    ok(got.get("NOGROUP") == "503" and int(got.get("EACCES", "0")) > 0,
       "www-data out of group sparkd: nginx gets Permission denied, /health 503", (got.get("NOGROUP"),
                                                                                   got.get("EACCES")))
    log = r.stdout[r.stdout.find("LOG-BEGIN"):]
    ok("sparkd: ready" in log and "sparkd: stopped" in log, "sparkd's log: ready, then drained and stopped", log[-800:])
    if r.returncode == 0 and not os.path.ismount(os.path.join(R, "usr")):
        shutil.rmtree(work, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
