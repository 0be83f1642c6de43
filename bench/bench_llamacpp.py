"""run/runq against llama.cpp on the same models: generation tok/s at 1 thread, 256 tokens, greedy.
llama.cpp is built from the llama-cpp-python sdist on PyPI (its vendor/llama.cpp; cmake,
-DGGML_NATIVE=ON, targets llama-bench, llama-quantize and llama-completion), cached under bench/out/llamacpp/ (the
first build takes ~7+ minutes on 2 cores). The bench models of bench_run.py (random weights of
the zh-15M and zh-110M shapes, vocab 5000) go to GGUF through export.py, F32 for run and Q8_0 for
runq, and llama.cpp times them with `llama-bench -p 0 -n 256 -t 1`.

    python3 bench/bench_llamacpp.py          # or: make bench-llamacpp
    python3 bench/bench_llamacpp.py --runs=3 --models=zh-15M
Not a test: timings depend on the machine and on whatever else runs on it.
"""

import argparse
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import OUT, REPO, cpu_name, make_models, make_tokenizer, median_of, run  # noqa: E402

VERSION = "0.3.36"  # llama-cpp-python, whose sdist vendors the llama.cpp tree
CACHE = OUT / "llamacpp"
BUILD = CACHE / "build"


TARGETS = ["llama-bench", "llama-quantize", "llama-completion"]


def build_llamacpp():
    """llama-bench and the other TARGETS from the pinned sdist, built once; returns llama-bench's path."""
    bench = BUILD / "bin" / "llama-bench"
    if all((BUILD / "bin" / t).exists() for t in TARGETS):
        return bench
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        print(f"downloading the llama-cpp-python {VERSION} sdist", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", str(CACHE)], check=True)
    src = CACHE / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
    if not src.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(CACHE, filter="data")
    print(f"building llama.cpp ({', '.join(TARGETS)}; several minutes)", flush=True)
    nice = ["nice", "-n", "10"]
    subprocess.run([*nice, "cmake", "-S", str(src), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF"],
                   check=True, capture_output=True)
    subprocess.run([*nice, "cmake", "--build", str(BUILD), "-j", "2", "--target", *TARGETS],
                   check=True, capture_output=True)
    return bench


def to_gguf(bin_path, tok, gguf_type, out_dir=None):
    """model .bin (v0) -> GGUF of that weight type in out_dir (default: beside it), with export.py;
    kept until the .bin is newer."""
    bin_path = Path(bin_path)
    out = Path(out_dir or bin_path.parent) / f"{bin_path.stem}_{gguf_type}.gguf"
    if not out.exists() or out.stat().st_mtime < bin_path.stat().st_mtime:
        subprocess.run([sys.executable, str(REPO / "export.py"), str(out), "--version", "gguf", "--bin", str(bin_path),
                        "--tokenizer", str(tok), "--gguf_type", gguf_type], check=True, capture_output=True)
    return out


def llama_bench(exe, gguf, runs):
    """Mean tok/s of llama-bench generating 256 tokens on 1 thread, over runs repetitions."""
    r = subprocess.run([str(exe), "-m", str(gguf), "-p", "0", "-n", "256", "-t", "1", "-r", str(runs), "-o", "json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: llama-bench failed on {gguf}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", default="zh-15M,zh-110M")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-C", str(REPO), "run"], check=True, capture_output=True)
    exe = build_llamacpp()
    tok, _ = make_tokenizer()
    print(f"CPU: {cpu_name()}; 1 thread, 256 generated tokens, median (ours) / mean (llama-bench) of {args.runs} runs;"
          f" llama.cpp from llama-cpp-python {VERSION}")
    print()
    print("| model | ours | tok/s | llama.cpp | tok/s | ours / llama.cpp |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        paths = make_models(name)
        for runner, v, gguf_type in (("run", 0, "f32"), ("runq", 2, "q8_0")):
            def gen():
                err = run([REPO / runner, paths[v], "-z", tok, "-t", 0, "-n", 256, "-i", ""], 1)
                return float(re.search(r"achieved tok/s: ([0-9.]+)", err).group(1))
            ours = median_of(args.runs, gen)
            theirs = llama_bench(exe, to_gguf(paths[0], tok, gguf_type), args.runs)
            print(f"| {name} | {runner} | {ours:.0f} | {gguf_type.upper()} | {theirs:.0f} | {ours / theirs:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
