#!/usr/bin/env python3
"""Complete comparison of appliance/format/gguf.c against the `gguf` Python package.

The reference dump is produced by gguf.GGUFReader (written by the llama.cpp
project, not by us) in the exact format tool_gguf_dump prints: every KV (integer
values, float bits, string bytes, sha256 over array elements) and every tensor
(name, type, shape, offset, size, sha256 of its data bytes). The C dump is run
twice: data read with gguf_load_data() and with gguf_map_data().

Env: SPARKD_BUILD (build dir holding tests/tool_gguf_dump), SPARKD_MODEL
(a GGUF file; also accepts a path list in SPARKD_GGUF_EXTRA, ':'-separated)."""
import hashlib
import os
import struct
import subprocess
import sys

import gguf
from gguf import GGUFValueType as VT

failed = 0


def ok(cond, name, why=""):
    global failed
    if cond:
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"not ok - {name}{': ' + why if why else ''}")
    sys.stdout.flush()


def scalar_repr(vt, part):
    if vt in (VT.FLOAT32,):
        return "%08x" % struct.unpack("<I", part.tobytes())[0]
    if vt in (VT.FLOAT64,):
        return "%016x" % struct.unpack("<Q", part.tobytes())[0]
    if vt == VT.STRING:
        return bytes(part).hex()
    return str(int(part[0]))


def reference_dump(path):
    r = gguf.GGUFReader(path)
    lines = []
    version = int(r.fields["GGUF.version"].parts[-1][0])
    tensors = r.tensors
    data_size = max((t.data_offset - r.data_offset + int(t.n_bytes) for t in tensors), default=0)
    lines += [f"version {version}", f"alignment {r.alignment}", f"data_offset {r.data_offset}",
              f"data_size {data_size}"]
    kvs = [f for k, f in r.fields.items() if not k.startswith("GGUF.")]
    lines += [f"n_kv {len(kvs)}", f"n_tensors {len(tensors)}"]
    for f in kvs:
        vt = f.types[0]
        head = f"kv {f.name} {vt.name.lower()} "
        if vt != VT.ARRAY:
            lines.append(head + scalar_repr(vt, f.parts[f.data[0]]))
            continue
        et = f.types[1]
        if et == VT.ARRAY:
            lines.append(head + "array ? -")
            continue
        h = hashlib.sha256()
        for idx in f.data:
            b = bytes(f.parts[idx].tobytes())
            if et == VT.STRING:
                h.update(struct.pack("<Q", len(b)))
            h.update(b)
        lines.append(head + f"{et.name.lower()} {len(f.data)} {h.hexdigest()}")
    for t in tensors:
        start = t.data_offset
        sha = hashlib.sha256(r.data[start:start + int(t.n_bytes)]).hexdigest()
        shape = ",".join(str(int(d)) for d in t.shape)
        lines.append(f"tensor {t.name} {t.tensor_type.name} {shape} {t.data_offset - r.data_offset} "
                     f"{int(t.n_bytes)} {sha}")
    return lines


def c_dump(tool, path, *flags):
    p = subprocess.run([tool, *flags, path], capture_output=True, text=True)
    return p.returncode, p.stdout.splitlines(), p.stderr


def compare(name, want, got):
    ok(len(want) == len(got), f"{name}: {len(got)} lines (reference {len(want)})")
    diffs = [(i, w, g) for i, (w, g) in enumerate(zip(want, got)) if w != g]
    for i, w, g in diffs[:5]:
        print(f"#   line {i}: want {w[:160]!r}\n#            got  {g[:160]!r}")
    ok(not diffs, f"{name}: every line equals the gguf package's", f"{len(diffs)} differ")


def main():
    build = os.environ.get("SPARKD_BUILD", "build")
    tool = os.path.join(build, "tests", "tool_gguf_dump")
    model = os.environ.get("SPARKD_MODEL")
    paths = [model] if model else []
    paths += [p for p in os.environ.get("SPARKD_GGUF_EXTRA", "").split(":") if p]
    if not paths or not os.path.exists(paths[0]):
        print("ok - skipped: SPARKD_MODEL not set or missing")
        return 0
    for path in paths:
        base = os.path.basename(path)
        want = reference_dump(path)
        # Sanity of the reference itself, so a broken reference cannot pass silently.
        ok(sum(1 for l in want if l.startswith("tensor ")) > 0, f"{base}: reference lists tensors")
        for flags in ((), ("--map",)):
            rc, got, err = c_dump(tool, path, *flags)
            tag = f"{base} {' '.join(flags) or '--load'}"
            ok(rc == 0, f"{tag}: tool exits 0", (got[-1] if got else "") + err[-300:])
            ok("ERROR: AddressSanitizer" not in err and "runtime error" not in err,
               f"{tag}: no sanitizer report", err[-300:])
            compare(tag, want, got)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
