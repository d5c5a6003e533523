#!/usr/bin/env python3
"""test_talos.py — the Talos manifests (etc/talos/, INSTALL.md section 2), checked here:

- schema: `kubernetes-validate --strict -k 1.34.0` (PyPI, the Kubernetes OpenAPI schemas;
  strict = unknown fields refused) passes sparkd.yaml and runtimeclass.yaml; a misspelt
  field fails it (the check can fail);
- the INI in the ConfigMap is a working sparkd configuration: with the model and template
  paths pointed at this checkout's files, sparkd starts from it and verifies the model's
  SHA-256 while loading;
- the nginx site in the ConfigMap is exactly nginx/render.sh's output for the arguments
  written above it;
- the pod holds together: one socket path in the INI, the site and both containers'
  mounts; the model hostPath mounted where the INI looks; the readiness probe on nginx's
  port; nginx's supplementalGroups include sparkd's group; the grace period exceeds the
  INI's drain_s; GPU limit + runtimeClassName naming the RuntimeClass;
- the Talos machine patch loads the four NVIDIA modules and the Image Factory schematic
  names both NVIDIA extensions of one driver branch. These two are not Kubernetes objects;
  their shape is checked against the fields Talos documents, not by Talos's own schema
  (talosctl validate needs talosctl, which no registry here ships).
What this cannot show: a real Talos node pulling the images, the NVIDIA runtime mounting
libcuda, a GB10 under Kubernetes. Normal pass only; ~10 s."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import shiplib as S  # noqa: E402
from testlib import ok, exit_code  # noqa: E402

T = os.path.join(S.ROOT, "etc", "talos")
KV = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")


def validate(*files):
    return S.run([KV, "--strict", "-k", "1.34.0"] + list(files))


def main():
    if S.SAN:
        ok(True, "Talos manifest checks run in the normal pass only")
        return 0
    r = validate(os.path.join(T, "sparkd.yaml"), os.path.join(T, "runtimeclass.yaml"))
    ok(r.returncode == 0 and r.stdout.count("passed") == 6,
       "kubernetes-validate --strict (Kubernetes 1.34): 6 objects pass", r.stdout + r.stderr)
    work = tempfile.mkdtemp(prefix="sparkd-talos-", dir=os.path.join(S.ROOT, "build"))
    bad = os.path.join(work, "bad.yaml")
    with open(bad, "w") as f:
        f.write(open(os.path.join(T, "sparkd.yaml")).read().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    r = validate(bad)
    ok(r.returncode != 0 and "readOnlyRootFileSystem" in r.stdout + r.stderr,
       "control: a misspelt field fails the schema check", r.stdout[-500:])

    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(os.path.join(T, "sparkd.yaml")))}
    rc = yaml.safe_load(open(os.path.join(T, "runtimeclass.yaml")))
    ini = docs[("ConfigMap", "sparkd-ini")]["data"]["sparkd.ini"]
    site = docs[("ConfigMap", "sparkd-nginx")]["data"]["default.conf"]
    pod = docs[("Deployment", "sparkd")]["spec"]["template"]["spec"]
    ctr = {c["name"]: c for c in pod["containers"]}
    vols = {v["name"]: v for v in pod["volumes"]}

    def ini_get(key):
        m = re.search(r"^%s = (.*)$" % key, ini, re.M)
        return m.group(1) if m else None

    # the INI starts sparkd
    sock = os.path.join(work, "s.sock")
    local = ini.replace(ini_get("path"), S.MODEL).replace(
        ini_get("chat_template_file"), os.path.join(S.ROOT, "etc", "templates", "gemma3.jinja")).replace(
        "listen = " + ini_get("listen"), "listen = unix:" + sock)
    with open(os.path.join(work, "sparkd.ini"), "w") as f:
        f.write(local)
    p = subprocess.Popen([os.path.join(S.ROOT, "build", "sparkd"), "serve", "--config", os.path.join(work, "sparkd.ini"),
                          "-t", "2"], stderr=subprocess.PIPE, text=True)
    out = ""
    t0 = time.time()
    while time.time() - t0 < 60:
        line = p.stderr.readline()
        if not line:
            break
        out += line
        if "sparkd: ready" in line:
            break
    S.stop(p)
    ok("verified while loading" in out and "sparkd: ready" in out,
       "the ConfigMap's INI starts sparkd (model SHA-256 checked)", out[-600:])

    r = S.run([os.path.join(S.ROOT, "nginx", "render.sh"), "--listen", "8443", "--cert", "/etc/nginx/tls/tls.crt",
               "--key", "/etc/nginx/tls/tls.key", "--socket", "/run/sparkd/sparkd.sock", "--fastcgi-params",
               "/etc/nginx/fastcgi_params", "--max-conns", "128"])
    ok(r.returncode == 0 and r.stdout == site, "the ConfigMap's nginx site = nginx/render.sh output")

    sockpath = ini_get("listen")[len("unix:"):]
    mounts = {c: {m["name"]: m["mountPath"] for m in ctr[c]["volumeMounts"]} for c in ctr}
    ok(("server unix:%s " % sockpath) in site and os.path.dirname(sockpath) == mounts["sparkd"]["run"] ==
       mounts["nginx"]["run"] and "emptyDir" in vols["run"], "one socket: INI listen, nginx upstream, shared emptyDir")
    ok(os.path.dirname(ini_get("path")) == mounts["sparkd"]["models"] and
       vols["models"]["hostPath"]["type"] == "Directory", "the model hostPath is mounted where the INI looks")
    ok(mounts["sparkd"]["ini"] == "/etc/sparkd/sparkd.ini" and ctr["sparkd"]["args"][-1] == "/etc/sparkd/sparkd.ini",
       "sparkd reads the mounted INI")
    ok(ctr["nginx"]["readinessProbe"]["httpGet"]["port"] == 8443 and "listen 8443 ssl;" in site and
       ctr["nginx"]["readinessProbe"]["httpGet"]["path"] == "/health", "readiness: /health on nginx's TLS port")
    sc = pod["securityContext"]
    ok(sc["runAsGroup"] in sc["supplementalGroups"] and sc["fsGroup"] == sc["runAsGroup"] and
       ctr["nginx"]["securityContext"]["runAsUser"] != sc["runAsUser"],
       "nginx (its own uid) shares sparkd's group: the 0660 socket is reachable")
    ok(pod["terminationGracePeriodSeconds"] > int(ini_get("drain_s")), "grace period > drain_s")
    ok(pod["runtimeClassName"] == rc["metadata"]["name"] == "nvidia" and
       ctr["sparkd"]["resources"]["limits"]["nvidia.com/gpu"] == 1, "GPU: runtimeClassName nvidia + nvidia.com/gpu")
    ok(all(c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
           for c in ctr.values()), "both containers: read-only root, no capabilities")
    ns = docs[("Namespace", "sparkd")]["metadata"]["labels"]
    ok(ns.get("pod-security.kubernetes.io/enforce") == "privileged", "namespace admits the hostPath volume")

    patch = yaml.safe_load(open(os.path.join(T, "gpu-patch.yaml")))
    mods = [m["name"] for m in patch["machine"]["kernel"]["modules"]]
    ok(sorted(mods) == ["nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm"] and set(patch) == {"machine"} and
       all(isinstance(v, str) for v in patch["machine"]["sysctls"].values()),
       "Talos patch: the four NVIDIA modules (machine.kernel.modules), sysctl values as strings")
    sch = yaml.safe_load(open(os.path.join(T, "schematic.yaml")))
    ext = sch["customization"]["systemExtensions"]["officialExtensions"]
    branch = {e.rsplit("-", 1)[1] for e in ext}
    ok(len(ext) == 2 and any("nvidia-open-gpu-kernel-modules" in e for e in ext) and
       any("nvidia-container-toolkit" in e for e in ext) and len(branch) == 1 and branch <= {"production", "lts"},
       "schematic: open kernel modules + container toolkit of one driver branch")
    cf = open(os.path.join(T, "Containerfile")).read()
    srcs = re.findall(r"^COPY (\S+) ", cf, re.M)
    ok(srcs and all(os.path.exists(os.path.join(S.ROOT, s)) for s in srcs) and "FROM scratch AS cpu" in cf,
       "Containerfile: FROM scratch for the CPU image; every COPY source exists in a built tree", srcs)
    shutil.rmtree(work, ignore_errors=True)
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
