#!/usr/bin/env python3
"""The CUDA build, checked without a GPU (CI has none):

  - where nvcc is present, build/sparkd is the CUDA build and every kernels/*.cu object
    is embedded as SASS for both sm_90a (H100/H200) and sm_121a (GB10), with no PTX
    (cuobjdump --list-elf / --list-ptx from the nvidia-cuda-cuobjdump wheel);
  - `sparkd selftest` on a machine without a usable GPU fails cleanly: exit status 2 and an
    error naming the CUDA failure (or, in a CPU-only build, saying so) — never a crash.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ok, exit_code  # noqa: E402

ROOT = os.environ.get("SPARKD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("SPARKD_BUILD", os.path.join(ROOT, "build"))
BIN = os.environ.get("SPARKD_BIN", os.path.join(BUILD, "sparkd"))
SAN = BUILD.rstrip("/").endswith("-san")


def cuobjdump():
    py = os.environ.get("SPARKD_PY", sys.executable)
    venv = os.path.dirname(os.path.dirname(py))
    for c in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "nvidia", "*", "bin", "cuobjdump")):
        return c
    return shutil.which("cuobjdump")


def main():
    r = subprocess.run([BIN, "selftest", "--quick"], capture_output=True, text=True, timeout=120)
    cpu_only = "built without CUDA" in r.stderr
    ok(r.returncode == 2, "selftest without a GPU exits 2 (got %d)" % r.returncode, r.stderr[-300:])
    ok(cpu_only or re.search(r"error: \S+\.cu:\d+: cuda\w+", r.stderr) is not None,
       "selftest without a GPU names the failing CUDA call", r.stderr[-300:])
    if SAN:
        ok(cpu_only, "the sanitizer build is CPU-only")
        return exit_code()
    has_nvcc = shutil.which("nvcc") is not None and not os.environ.get("SPARKD_CPU_ONLY")
    ok(cpu_only != has_nvcc, "build/sparkd is the CUDA build exactly when nvcc is present (nvcc: %s)" % has_nvcc)
    if not has_nvcc:
        return exit_code()
    tool = cuobjdump()
    ok(tool is not None, "cuobjdump found (nvidia-cuda-cuobjdump wheel)")
    if tool is None:
        return exit_code()
    elfs = subprocess.run([tool, "--list-elf", BIN], capture_output=True, text=True).stdout
    # one cubin per arch for every kernels/*.cu that defines kernels (host-only files have none)
    n_cu = sum(1 for p in glob.glob(os.path.join(ROOT, "kernels", "*.cu")) if "__global__" in open(p).read())
    n90 = len(re.findall(r"\.sm_90a\.cubin", elfs))
    n121 = len(re.findall(r"\.sm_121a\.cubin", elfs))
    ok(n90 == n121 and n90 >= n_cu, "%d sm_90a and %d sm_121a cubins embedded, at least one each per kernels/*.cu "
       "with kernels (%d)" % (n90, n121, n_cu), elfs[-400:])
    other = set(re.findall(r"\.(sm_\w+)\.cubin", elfs)) - {"sm_90a", "sm_121a"}
    ok(not other, "no cubins for other chips (%s)" % sorted(other))
    ptx = subprocess.run([tool, "--list-ptx", BIN], capture_output=True, text=True)
    ok(".ptx" not in ptx.stdout, "no PTX embedded (an 'a' target has no portable fallback)", ptx.stdout[-300:])
    # the kernels the engine needs are really in the sm_121a image, not only declared
    names = subprocess.run([tool, "--dump-elf-symbols", BIN], capture_output=True, text=True).stdout
    for k in ("gemm_kernel", "gemv_kernel", "attn_kernel", "sample_kernel", "qkv_kernel", "repack_kernel",
              "route_small_kernel", "mmv_kernel", "mg_kernel", "mn_kernel", "combine_kernel"):
        ok(k in names, "kernel %s is in the fatbin" % k)
    # the block-scaled MXFP4 kernel of kernels/moe.cu (mma.sync kind::mxf8f6f4, e2m1 x e4m3,
    # ue8m0 scales) assembled to its SASS in the sm_121a image only (nvdisasm of the
    # nvidia-cuda-nvdisasm wheel decodes both chips' SASS)
    nvdisasm = os.path.join(os.path.dirname(tool), "nvdisasm")
    ok(os.path.exists(nvdisasm), "nvdisasm found beside cuobjdump (nvidia-cuda-nvdisasm wheel)")
    if os.path.exists(nvdisasm):
        env = dict(os.environ, PATH=os.path.dirname(tool) + os.pathsep + os.environ.get("PATH", ""))
        sass = {a: subprocess.run([tool, "--dump-sass", "-arch", a, BIN], capture_output=True, text=True, env=env).stdout
                for a in ("sm_90a", "sm_121a")}
        q121 = len(re.findall(r"QMMA\.SF\.16832\.F32\.E2M1\.E4M3\.E8", sass["sm_121a"]))
        ok(q121 > 0, "sm_121a image has the block-scaled MXFP4 MMA (QMMA.SF.16832.F32.E2M1.E4M3.E8 x %d)" % q121)
        ok("QMMA.SF" not in sass["sm_90a"] and "HMMA.16816.F32" in sass["sm_90a"],
           "sm_90a image computes MXFP4 through f16 HMMA only (no block-scaled MMA)")
    return exit_code()


if __name__ == "__main__":
    sys.exit(main())
