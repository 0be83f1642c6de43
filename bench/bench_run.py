"""Speed of the C runners on random-weight models of the published shapes (vocab 5000):
zh-15M (dim 288, 6 layers, 6 heads, seq 256) and zh-110M (dim 768, 12 layers, 12 heads, seq 1024).
Builds with `make run`, writes the models with export.py (v0 for run, v2 for runq) into
bench/out/, and prints a markdown table: generation tok/s (-t 0 -n 256, median of 5 runs) with
1 and 2 OpenMP threads, prefill tok/s for a 200-token prompt (blocks vs token by token), and
the time to encode a 20,000-character Chinese prompt.
A generated token reads every weight once and the KV cache up to its position, so its speed is
bounded by the host's streaming-read bandwidth: bench/memread.c measures it in the same run (1 and
2 threads, a buffer the size of the largest model, 2 MB pages like the runners' weights) right
before each generation run, and each generation column is followed by its share of that limit
(the median over the runs of each run's share), tok/s * bytes per token / bandwidth,
where bytes per token = the model file + the KV cache a token reads on average over the 256
generated positions (over 100%: the model fits in the caches).

    python3 bench/bench_run.py            # or: make bench
    python3 bench/bench_run.py --runs=3 --models=zh-15M
    python3 bench/bench_run.py --exe-dir=/tmp/old   # time run/runq built elsewhere (say, before a change)
    python3 bench/bench_run.py --baseline   # also time the portable scalar loops (the original's),
                                            # built like llama2.c's `make runomp`: a same-machine reference
Not a test: timings depend on the machine and on whatever else runs on it.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))

SHAPES = {
    "zh-15M": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, max_seq_len=256),
    "zh-110M": dict(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, max_seq_len=1024),
}


def make_tokenizer():
    """A 5000-piece vocabulary trained (tinystories.py's settings) on generated stories, as .bin."""
    from tinystories import generate_stories, train_sp_model
    from tokenizer import Tokenizer
    model = OUT / "tok5000.model"
    if not (OUT / "tok5000.bin").exists():
        train_sp_model(generate_stories(4000, seed=0), str(OUT / "tok5000"), 5000, quiet=True)
        Tokenizer(str(model)).export()
    return OUT / "tok5000.bin", str(model)


def make_models(name):
    """Random weights (llama2.c's init); BOS/EOS can never win, so every run generates 256 tokens."""
    paths = {v: OUT / f"{name}_v{v}.bin" for v in (0, 2)}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    from export import model_export
    from model import ModelArgs, Transformer
    torch.manual_seed(0)
    model = Transformer(ModelArgs(vocab_size=5000, **SHAPES[name]))
    with torch.no_grad():
        model.tok_embeddings.weight[1:3] = 0  # shared with the classifier: logit 0 for BOS and EOS
    for v, p in paths.items():
        model_export(model, str(p), version=v)
    return paths


def run(cmd, threads, env=None, stream="stderr"):
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env or {}))
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=e)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, cmd))} failed: {r.stderr.strip()}")
    return getattr(r, stream)


def cpu_name():
    """lscpu's model name and the widest kernels this CPU runs (model names like "Intel Xeon
    Processor" in VMs do not say)."""
    try:
        name = re.search(r"Model name:\s*(.+)", subprocess.run(["lscpu"], capture_output=True, text=True).stdout).group(1)
    except (OSError, AttributeError):
        name = "unknown"
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        return name
    isa = ["AVX2" * ("avx2" in flags), "AVX-512" * ("avx512f" in flags), "VNNI" * bool({"avx512_vnni", "avx_vnni"} & flags)]
    return f"{name} [{' '.join(i for i in isa if i)}]"


def build_memread():
    """bench/memread.c, rebuilt every run (it is cheap) so an edited source is the one measured."""
    exe = OUT / "memread"
    subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", "-o", str(exe), str(REPO / "bench" / "memread.c")],
                   check=True)
    return exe


def read_bandwidth(nbytes, threads):
    """GB/s of bench/memread.c streaming nbytes with that many threads (best of 10 passes)."""
    return float(run([OUT / "memread", nbytes, 10], threads, stream="stdout").split()[0])


def kv_bytes(shape, steps):
    """Mean bytes of fp32 KV cache a token reads over positions 0..steps-1 (keys and values of
    every earlier position and its own, in every layer)."""
    kv_dim = shape["dim"] * shape["n_kv_heads"] // shape["n_heads"]
    return 2 * 4 * kv_dim * shape["n_layers"] * (steps + 1) / 2


def median_of(n, f):
    return statistics.median(f() for _ in range(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--models", default="zh-15M,zh-110M")
    ap.add_argument("--exe-dir", help="time the run and runq in this directory instead of building them")
    ap.add_argument("--baseline", action="store_true",
                    help="also time the scalar path built -Ofast -fopenmp -march=native -DLLAMA2_SCALAR")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    # the runners as make run builds them, with tests/hooks.c's LLAMA2_PREFILL_BLOCK (make hooks)
    exe_dir = Path(args.exe_dir) if args.exe_dir else REPO / "tests" / "bin"
    if not args.exe_dir:
        subprocess.run(["make", "-C", str(REPO), "hooks"], check=True, capture_output=True)
    runners = [("run", exe_dir / "run", 0), ("runq", exe_dir / "runq", 2)]
    if args.baseline:
        sys.path.insert(0, str(REPO / "tests"))
        from cbuild import build
        (OUT / "scalar").mkdir(exist_ok=True)
        for r, v in (("run", 0), ("runq", 2)):
            exe = build(OUT / "scalar", f"{r}.c", r, ["-Ofast", "-fopenmp", "-march=native", "-DLLAMA2_SCALAR"])
            runners.append((f"{r} (scalar loops)", exe, v))
    tok, sp_model = make_tokenizer()
    import sentencepiece as spm
    from tinystories import generate_stories
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    text = "".join(generate_stories(400, seed=1))
    long_prompt = text[:20000]
    ids = sp.encode(text[:1000])
    prompt200 = sp.decode(ids[:199])  # with BOS: about 200 tokens

    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs), {platform.system()}; median of {args.runs} runs")
    models = {name: make_models(name) for name in args.models.split(",")}
    biggest = max(p.stat().st_size for paths in models.values() for p in paths.values())
    build_memread()
    bw = {1: [], 2: []}  # every bandwidth sample of the run, per thread count
    print()
    print("| model | runner | tok/s 1 thread | % of read limit | tok/s 2 threads | % of read limit "
          "| prefill tok/s (block) | prefill tok/s (token by token) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, paths in models.items():
        for runner, exe, v in runners:
            base = [exe, paths[v], "-z", tok, "-t", 0]
            nbytes = paths[v].stat().st_size + kv_bytes(SHAPES[name], 256)  # what one generated token reads

            def gen(threads):
                err = run(base + ["-n", 256, "-i", ""], threads)
                return float(re.search(r"achieved tok/s: ([0-9.]+)", err).group(1))

            def prefill(block):
                env = {"LLAMA2_PREFILL_BLOCK": str(block)} if block else {}
                err = run(base + ["-n", 202, "-i", prompt200], 1, env)
                return float(re.search(r"prompt: \d+ tokens, ([0-9.]+) tok/s", err).group(1))

            def gen_share(threads):
                """Median tok/s and median share of the limit, each run right after its own
                bandwidth pass: a VM's bandwidth drifts by 10% over minutes (neighbours), so each
                run is compared with the limit of its moment."""
                toks, shares = [], []
                for _ in range(args.runs):
                    bw[threads].append(read_bandwidth(biggest, threads))
                    toks.append(gen(threads))
                    shares.append(toks[-1] * nbytes / (bw[threads][-1] * 1e9))
                return statistics.median(toks), f"{100 * statistics.median(shares):.0f}%"

            (g1, s1), (g2, s2) = gen_share(1), gen_share(2)
            row = [f"{g1:.0f}", s1, f"{g2:.0f}", s2,
                   f"{median_of(args.runs, lambda: prefill(0)):.0f}", f"{median_of(args.runs, lambda: prefill(1)):.0f}"]
            print(f"| {name} | {runner} | " + " | ".join(row) + " |", flush=True)
    paths = make_models(args.models.split(",")[0])
    err = run([exe_dir / "run", paths[0], "-z", tok, "-m", "tokenize", "-i", long_prompt], 1)
    ms = median_of(args.runs, lambda: float(re.search(r"in ([0-9.]+) ms", run(
        [exe_dir / "run", paths[0], "-z", tok, "-m", "tokenize", "-i", long_prompt], 1)).group(1)))
    n_tok = re.search(r"into (\d+) tokens", err).group(1)
    print()
    print(f"streaming-read bandwidth ({biggest / 1e6:.0f} MB buffer, measured before each generation run): "
          f"{min(bw[1]):.1f}-{max(bw[1]):.1f} GB/s with 1 thread, {min(bw[2]):.1f}-{max(bw[2]):.1f} GB/s with 2 threads")
    print(f"encoding a {len(long_prompt)}-character Chinese prompt ({n_tok} tokens): {ms:.2f} ms")


if __name__ == "__main__":
    main()
