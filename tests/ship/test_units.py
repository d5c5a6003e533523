#!/usr/bin/env python3
"""test_units.py — the shipped systemd units, checked by systemd itself
(systemd-analyze, Debian package systemd; no running systemd needed):

- `systemd-analyze verify` on etc/sparkd.service and etc/tailscale/sparkd-cert@.{service,timer}
  in a throwaway root holding them where INSTALL.md puts them, systemd's own units, the
  built sparkd at /usr/local/bin/sparkd, and stand-ins for tailscale and systemctl (only
  their existence is checked): exit 0 and nothing printed (an unknown key is only a warning,
  so any output fails);
- `systemd-analyze security --offline=true`: sparkd.service's overall exposure <= 2.0;
- the checks can fail: the unit with its hardening lines removed rates above 2.0, and an
  unknown key makes verify speak.
Normal pass only; ~2 s."""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

UNITS = {"sparkd.service": "etc/sparkd.service", "sparkd-cert@.service": "etc/tailscale/sparkd-cert@.service",
         "sparkd-cert@.timer": "etc/tailscale/sparkd-cert@.timer"}
HARDENING = re.compile(r"^(CapabilityBoundingSet|AmbientCapabilities|NoNewPrivileges|Protect\w+|Private\w+|IPAddress\w+|"
                       r"Restrict\w+|Device\w+|LockPersonality|MemoryDenyWriteExecute|RemoveIPC|SystemCall\w+|UMask)=")


def exposure(root, unit):
    r = S.run(["systemd-analyze", "security", "--offline=true", "--root=" + root, unit])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    return (float(m.group(1)) if m else None), r.stdout + r.stderr


def verify(root, *units):
    r = S.run(["systemd-analyze", "verify", "--root=" + root] + list(units))
    return r.returncode, (r.stdout + r.stderr).strip()


def main():
    if S.SAN:
        ok(True, "unit checks run in the normal pass only")
        return 0
    if not shutil.which("systemd-analyze"):
        ok(False, "systemd-analyze is installed (build.sh DEB_PKGS: systemd)")
        return 1
    root = tempfile.mkdtemp(prefix="sparkd-units-", dir=os.path.join(S.ROOT, "build"))
    unitdir = os.path.join(root, "etc", "systemd", "system")
    os.makedirs(unitdir)
    sysunits = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") else "/lib/systemd/system"
    shutil.copytree(sysunits, os.path.join(root, "usr", "lib", "systemd", "system"), symlinks=True)
    for name, src in UNITS.items():
        shutil.copy2(os.path.join(S.ROOT, src), os.path.join(unitdir, name))
    os.makedirs(os.path.join(root, "usr", "local", "bin"))
    shutil.copy2(os.path.join(S.ROOT, "build", "sparkd"), os.path.join(root, "usr", "local", "bin", "sparkd"))
    for stand_in in ("usr/bin/tailscale", "usr/bin/systemctl"):
        os.makedirs(os.path.dirname(os.path.join(root, stand_in)), exist_ok=True)
        with open(os.path.join(root, stand_in), "w") as f:
            f.write("#!/bin/sh\n# stand-in: systemd-analyze verify checks only that the command exists\nexit 1\n")
        os.chmod(os.path.join(root, stand_in), 0o755)

    rc, out = verify(root, "sparkd.service")
    ok(rc == 0 and out == "", "systemd-analyze verify sparkd.service: clean", out)
    rc, out = verify(root, "sparkd-cert@spark.example.ts.net.service", "sparkd-cert@spark.example.ts.net.timer")
    ok(rc == 0 and out == "", "systemd-analyze verify sparkd-cert@NAME.service and .timer: clean", out)
    x, out = exposure(root, "sparkd.service")
    ok(x is not None and x <= 2.0, "systemd-analyze security sparkd.service: exposure %s <= 2.0" % x, out[-1500:])
    doc = open(os.path.join(S.ROOT, "etc", "sparkd.service")).read()
    ok(x is not None and ("rates this unit %.1f" % x) in doc, "the unit's comment states its rating (%s)" % x)
    x, out = exposure(root, "sparkd-cert@spark.example.ts.net.service")
    ok(x is not None and x <= 2.0, "systemd-analyze security sparkd-cert@NAME.service: exposure %s <= 2.0" % x,
       out[-1500:])

    # negative controls: the checks notice
    bare = "".join(l for l in doc.splitlines(True) if not HARDENING.match(l))
    with open(os.path.join(unitdir, "bare.service"), "w") as f:
        f.write(bare)
    x, out = exposure(root, "bare.service")
    ok(x is not None and x > 2.0, "control: without its hardening lines the unit rates %s > 2.0" % x, out[-600:])
    with open(os.path.join(unitdir, "typo.service"), "w") as f:
        f.write(doc.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    rc, out = verify(root, "typo.service")
    ok("Unknown key" in out, "control: an unknown key makes verify speak", out)
    shutil.rmtree(root, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
