"""The compute-bound paths against the host's peak and against llama.cpp, on the bench models of
bench_run.py (random weights of the zh-15M and zh-110M shapes, vocab 5000):
- prefill: our `prompt: N tokens, X tok/s` line for a prompt of real Chinese text (249 tokens for
  zh-15M, 512 for zh-110M; generated stories, BOS first) vs `llama-bench -p N -n 0` on the same
  weights as GGUF (F32 for run, Q8_0 for runq), 1 and 2 threads; each as a share of the peak
  bench/peakflops.c measures right before it (fp32 FMA for run, int8 dot products for runq):
  tok/s * 2 * (the layers' matmul weights) / peak, attention and the classifier not counted;
- scoring: `-m score` on the same prompt, its time over the prefill's; and for zh-110M a text of
  --score-tokens tokens (generated stories) scored in windows of seq_len, its time over the time
  the same number of tokens takes to prefill in full windows (a prompt of seq_len - 1 tokens);
- decode at depth 1000 (zh-110M): tokens generated after a 1000-token prompt vs
  `llama-bench -p 0 -n 24 -d 1000`, as a share of bench/memread.c's read bandwidth counting the
  weights and the KV cache a token reads there.
Every row is measured as pairs, ours then llama.cpp then the peak, --runs times in turn, and the
table gives the medians (and the range of our tok/s): the host is a shared VM whose speed drifts
from minute to minute.

    python3 bench/bench_prefill.py               # builds run/runq (make run) and llama.cpp once
    python3 bench/bench_prefill.py --runs=5 --models=zh-110M --threads=1
Not a test: timings depend on the machine and on whatever else runs on it.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llamacpp import build_llamacpp, to_gguf  # noqa: E402
from bench_run import OUT, REPO, SHAPES, build_memread, cpu_name, make_models, make_tokenizer, read_bandwidth, run  # noqa: E402

PROMPT = {"zh-15M": 249, "zh-110M": 512}
DEPTH = 1000


def layer_flops(shape, vocab=5000):
    """Flops of one token's matmuls in the layers (2 per weight)."""
    from model import ModelArgs, Transformer
    args = ModelArgs(vocab_size=vocab, **shape)
    dim, hid = args.dim, Transformer(args).layers[0].feed_forward.w1.weight.shape[0]
    kv = dim * (args.n_kv_heads or args.n_heads) // args.n_heads
    return 2 * args.n_layers * (2 * dim * dim + 2 * dim * kv + 3 * dim * hid)


def peak(threads):
    """(fp32 GFLOPS, int8 GOPS) of bench/peakflops.c with that many threads."""
    out = run([OUT / "peakflops", 3], threads, stream="stdout")
    return (float(re.search(r"fp32: ([0-9.]+)", out).group(1)), float(re.search(r"int8: ([0-9.]+)", out).group(1)))


def llama_bench(exe, gguf, threads, *args):
    r = subprocess.run([str(exe), "-m", str(gguf), "-t", str(threads), "-r", "1", "-o", "json", *map(str, args)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: llama-bench failed on {gguf}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)[0]["avg_ts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default="zh-15M,zh-110M")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--no-llamacpp", action="store_true", help="only our rows and the peak")
    ap.add_argument("--score-tokens", type=int, default=100000, help="the long text scored with zh-110M (0: none)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-C", str(REPO), "run"], check=True, capture_output=True)
    subprocess.run(["cc", "-O2", "-march=native", "-fopenmp", "-o", str(OUT / "peakflops"),
                    str(REPO / "bench" / "peakflops.c")], check=True)
    build_memread()
    exe = None if args.no_llamacpp else build_llamacpp()
    tok, sp_model = make_tokenizer()
    import sentencepiece as spm
    from tinystories import generate_stories
    sp = spm.SentencePieceProcessor(model_file=sp_model)
    ids = sp.encode("".join(generate_stories(400, seed=1)))
    prompts = {}
    seq_len = SHAPES["zh-110M"]["max_seq_len"]
    for n in list(PROMPT.values()) + [DEPTH, seq_len - 1]:
        path = OUT / f"prompt{n}.txt"
        path.write_text(sp.decode(ids[:n - 1]), encoding="utf-8")  # + BOS: n tokens
        prompts[n] = path
    threads = [int(t) for t in args.threads.split(",")]
    print(f"CPU: {cpu_name()}; median of {args.runs} paired runs (ours, llama.cpp, peak in turn)")
    print()
    print("| model | runner | threads | prompt | ours tok/s (range) | llama.cpp tok/s | ours / llama.cpp "
          "| peak | ours % of peak | llama.cpp % of peak | score / prefill time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        paths, flops, n = make_models(name), layer_flops(SHAPES[name]), PROMPT[name]
        for runner, v, gguf_type, unit in (("run", 0, "f32", "GFLOPS"), ("runq", 2, "q8_0", "GOPS")):
            gguf = None if exe is None else to_gguf(paths[0], tok, gguf_type)
            for t in threads:
                ours, theirs, peaks, score_ratio = [], [], [], []
                for _ in range(args.runs):
                    err = run([REPO / runner, paths[v], "-z", tok, "-t", 0, "-n", n + 1, "-f", prompts[n]], t)
                    ours.append(float(re.search(rf"prompt: {n} tokens, ([0-9.]+) tok/s", err).group(1)))
                    err = run([REPO / runner, paths[v], "-z", tok, "-m", "score", "-f", prompts[n]], t)
                    score_ratio.append(ours[-1] / float(re.search(r"score: \d+ tokens in windows of \d+, ([0-9.]+) tok/s", err).group(1)))
                    if gguf:
                        theirs.append(llama_bench(exe, gguf, t, "-p", n, "-n", 0))
                    peaks.append(peak(t)[v // 2])
                o, p = statistics.median(ours), statistics.median(peaks)
                th = statistics.median(theirs) if theirs else float("nan")
                print(f"| {name} | {runner} | {t} | {n} | {o:.0f} ({min(ours):.0f}-{max(ours):.0f}) | {th:.0f} "
                      f"| {o / th:.2f}x | {p:.0f} {unit} | {100 * o * flops / 1e9 / p:.0f}% "
                      f"| {100 * th * flops / 1e9 / p:.0f}% | {statistics.median(score_ratio):.2f} |", flush=True)
    if "zh-110M" in args.models:
        paths, shape = make_models("zh-110M"), SHAPES["zh-110M"]
        print()
        print(f"decode at depth {DEPTH} (zh-110M, 24 tokens generated after a {DEPTH}-token prompt):")
        print()
        print("| runner | threads | ours tok/s | llama.cpp tok/s | ours / llama.cpp | read limit GB/s | ours % of limit |")
        print("|---|---|---|---|---|---|---|")
        kv = 2 * 4 * shape["dim"] * shape["n_layers"] * (DEPTH + 12)  # keys and values read at the middle position
        for runner, v, gguf_type in (("run", 0, "f32"), ("runq", 2, "q8_0")):
            gguf = None if exe is None else to_gguf(paths[0], tok, gguf_type)
            nbytes = paths[v].stat().st_size + kv
            for t in threads:
                ours, theirs, shares, bws = [], [], [], []
                for _ in range(args.runs):
                    bws.append(read_bandwidth(paths[v].stat().st_size, t))
                    err = run([REPO / runner, paths[v], "-z", tok, "-t", 0, "-n", DEPTH + 24, "-f", prompts[DEPTH]], t)
                    ours.append(float(re.search(r"achieved tok/s: ([0-9.]+)", err).group(1)))
                    shares.append(ours[-1] * nbytes / (bws[-1] * 1e9))
                    if gguf:
                        theirs.append(llama_bench(exe, gguf, t, "-p", 0, "-n", 24, "-d", DEPTH))
                o = statistics.median(ours)
                th = statistics.median(theirs) if theirs else float("nan")
                print(f"| {runner} | {t} | {o:.1f} | {th:.1f} | {o / th:.2f}x | {statistics.median(bws):.1f} "
                      f"| {100 * statistics.median(shares):.0f}% |", flush=True)
        if args.score_tokens:
            score_long(paths, tok, sp, seq_len, args.score_tokens, threads, args.runs)


def score_long(paths, tok, sp, seq_len, ntokens, threads, runs):
    """-m score on a text of about ntokens tokens against prefilling full windows of the same text."""
    from tinystories import generate_stories
    stories, n = [], 0
    for s in generate_stories(4 * ntokens // 50, seed=7):  # some 60 tokens a story
        stories.append(s)
        n += len(sp.encode(s))
        if n >= ntokens:
            break
    text = OUT / f"text{ntokens}.txt"
    text.write_text("".join(stories), encoding="utf-8")
    window = OUT / f"prompt{seq_len - 1}.txt"
    print()
    print(f"scoring a long text (zh-110M, windows of {seq_len}), against prefilling the same number of tokens "
          f"in full windows ({seq_len - 1}-token prompts):")
    print()
    print("| runner | threads | tokens | score tok/s | prefill tok/s | score / prefill time | loss |")
    print("|---|---|---|---|---|---|---|")
    for runner, v in (("run", 0), ("runq", 2)):
        for t in threads:
            scores, prefills = [], []
            for _ in range(runs):
                r = subprocess.run([str(REPO / runner), str(paths[v]), "-z", str(tok), "-m", "score", "-f", str(text)],
                                   capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(t)))
                if r.returncode != 0:
                    sys.exit(f"error: {runner} -m score failed: {r.stderr.strip()}")
                m = re.search(r"score: (\d+) tokens in windows of \d+, ([0-9.]+) tok/s", r.stderr)
                scored, loss = int(m.group(1)), re.search(r"loss ([0-9.]+)", r.stdout).group(1)
                scores.append(float(m.group(2)))
                for _ in range(2):  # a window's prefill is short next to the score: two of them per run
                    err = run([REPO / runner, paths[v], "-z", tok, "-t", 0, "-n", seq_len, "-f", window], t)
                    prefills.append(float(re.search(rf"prompt: {seq_len - 1} tokens, ([0-9.]+) tok/s", err).group(1)))
            s, p = statistics.median(scores), statistics.median(prefills)
            print(f"| {runner} | {t} | {scored} | {s:.1f} | {p:.1f} | {p / s:.2f} | {loss} |", flush=True)


if __name__ == "__main__":
    main()
