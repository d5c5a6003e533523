"""tmpl_refs.py — where the real chat templates come from (nothing third-party is
committed; everything is fetched from PyPI into build/tmpl-refs/ on first use):

  * llama-cpp-python 0.3.36 sdist: vendor/llama.cpp/models/templates/*.jinja,
    the templates llama.cpp copies from each model's tokenizer_config.json
    (Qwen3, Qwen3-Coder, Llama 3.1/3.2/3.3, GPT-OSS, DeepSeek V3.1 / R1-Distill /
    V3.2, and more).
    build/peer/llama_cpp_python-0.3.36.tar.gz is reused when present.
  * axolotl 0.19.0 wheel: axolotl/utils/chat_templates/templates/gemma3.jinja
    (llama.cpp's folder has no Gemma 3 template; axolotl ships Google's, with
    a namespace loop for list-shaped system content).
"""
import glob
import os
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.environ.get("SPARKD_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.path.join(ROOT, "build", "tmpl-refs")
PY = os.environ.get("SPARKD_PY") or sys.executable

LLAMA_CPP_PY = "llama-cpp-python==0.3.36"
AXOLOTL = "axolotl==0.19.0"


def _pip_download(spec, binary):
    os.makedirs(CACHE, exist_ok=True)
    args = [PY, "-m", "pip", "download", "--no-deps", "-q", "-d", CACHE, spec]
    args += ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def _llama_templates_dir():
    out = os.path.join(CACHE, "llama-templates")
    if os.path.isdir(out) and os.listdir(out):
        return out
    sdist = os.path.join(ROOT, "build", "peer", "llama_cpp_python-0.3.36.tar.gz")
    if not os.path.exists(sdist):
        sdist = os.path.join(CACHE, "llama_cpp_python-0.3.36.tar.gz")
        if not os.path.exists(sdist):
            _pip_download(LLAMA_CPP_PY, binary=False)
    os.makedirs(out, exist_ok=True)
    with tarfile.open(sdist) as tf:
        for m in tf.getmembers():
            if "/vendor/llama.cpp/models/templates/" in m.name and m.name.endswith(".jinja") and m.isfile():
                data = tf.extractfile(m).read()
                with open(os.path.join(out, os.path.basename(m.name)), "wb") as f:
                    f.write(data)
    return out


def _axolotl_dir():
    out = os.path.join(CACHE, "axolotl-templates")
    if os.path.isdir(out) and os.listdir(out):
        return out
    wheels = glob.glob(os.path.join(CACHE, "axolotl-0.19.0-*.whl"))
    if not wheels:
        _pip_download(AXOLOTL, binary=True)
        wheels = glob.glob(os.path.join(CACHE, "axolotl-0.19.0-*.whl"))
    os.makedirs(out, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as z:
        for name in z.namelist():
            if "/chat_templates/templates/" in name and name.endswith(".jinja"):
                with open(os.path.join(out, os.path.basename(name)), "wb") as f:
                    f.write(z.read(name))
    return out


def templates():
    """{display name: path} of the five families the issue names."""
    ll = _llama_templates_dir()
    ax = _axolotl_dir()
    return {
        "Qwen3-0.6B": os.path.join(ll, "Qwen-Qwen3-0.6B.jinja"),
        "Qwen3-Coder": os.path.join(ll, "Qwen3-Coder.jinja"),
        "Llama-3.1-8B-Instruct": os.path.join(ll, "meta-llama-Llama-3.1-8B-Instruct.jinja"),
        "Llama-3.2-3B-Instruct": os.path.join(ll, "meta-llama-Llama-3.2-3B-Instruct.jinja"),
        "Llama-3.3-70B-Instruct": os.path.join(ll, "meta-llama-Llama-3.3-70B-Instruct.jinja"),
        "gpt-oss-120b": os.path.join(ll, "openai-gpt-oss-120b.jinja"),
        # DeepSeek's tool-call tokens (V3.1 form, R1 form) and V3.2's DSML markup
        "DeepSeek-V3.1": os.path.join(ll, "deepseek-ai-DeepSeek-V3.1.jinja"),
        "DeepSeek-R1-Distill-Qwen-32B": os.path.join(ll, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"),
        "DeepSeek-R1-Distill-Llama-8B": os.path.join(ll, "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"),
        "DeepSeek-V3.2": os.path.join(ll, "deepseek-ai-DeepSeek-V3.2.jinja"),
        "gemma-3": os.path.join(ax, "gemma3.jinja"),
    }


def extra_templates():
    """Every other template in both folders (a wider net, reported separately)."""
    main = set(templates().values())
    out = {}
    for d in (_llama_templates_dir(), _axolotl_dir()):
        for p in sorted(glob.glob(os.path.join(d, "*.jinja"))):
            if p not in main:
                out[os.path.basename(d).split("-")[0] + "/" + os.path.basename(p)[:-6]] = p
    return out
