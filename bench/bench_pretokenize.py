"""
Pretokenize throughput on the offline sample corpus: tinystories.pretokenize with bpe.c (the default
once `make bpe` has built libbpe.so) and with --encoder=sentencepiece, against the original llama2.c
approach (a Python loop calling sentencepiece once per story inside each pool worker), all on the
same shards, vocabulary and number of cores.

    python3 bench/bench_pretokenize.py [--workers=2] [--vocab_size=2048] [--repeats=5]

Two layouts: the sample's 10 shards (every approach runs 2 processes) and the same stories in one
file (the original then has one process; ours uses 2 threads). Prints characters per second and the
speedups, after checking that all three wrote identical tokens. Not a test; the machine may be
shared, so the best of a few repeats is reported.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tinystories  # noqa: E402


def original_shard(task):
    """The original's process_shard: one encode call per story, tokens gathered in a Python list."""
    src, model_path, out_path = task
    from sentencepiece import SentencePieceProcessor
    sp = SentencePieceProcessor(model_file=model_path)
    all_tokens = []
    with open(src, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["story_zh"].strip()
            all_tokens.extend([sp.bos_id()] + sp.encode(text) + [sp.eos_id()])
    np.array(all_tokens, dtype=np.uint16).tofile(out_path)


def run(files, root, data_dir, vocab_size, workers, repeats):
    """Best-of-repeats seconds of (original, ours with sentencepiece, ours with bpe.c) on the same
    files, interleaved; checks that all of them wrote the same tokens."""
    model = os.path.join(root, f"tok{vocab_size}.model")
    out = os.path.join(root, "orig")
    os.makedirs(out, exist_ok=True)
    times = {"orig": [], "sentencepiece": [], "bpe": []}

    def ours(encoder):
        t0 = time.time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            tinystories.pretokenize(vocab_size, data_root=root, data_dir=data_dir, num_workers=workers, encoder=encoder)
        times[encoder].append(time.time() - t0)
        return [np.fromfile(os.path.join(root, f"tok{vocab_size}", os.path.basename(f)[:-6] + ".bin"), dtype=np.uint16)
                for f in files]
    for _ in range(repeats):
        t0 = time.time()
        with ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
            list(pool.map(original_shard, [(f, model, os.path.join(out, f"{i}.bin")) for i, f in enumerate(files)]))
        times["orig"].append(time.time() - t0)
        for encoder in ("sentencepiece", "bpe"):
            for i, arr in enumerate(ours(encoder)):
                assert np.array_equal(arr, np.fromfile(os.path.join(out, f"{i}.bin"), dtype=np.uint16)), files[i]
    return {k: min(v) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--vocab_size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["make", "-C", repo, "bpe"], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as root:
        data_dir = os.path.join(root, "TinyStories_all_data")
        tinystories.write_sample(data_dir)
        files = tinystories.find_documents(data_dir)
        lines = [l for f in files for l in open(f, encoding="utf-8")]
        chars = sum(len(json.loads(l)["story_zh"]) for l in lines)
        one_dir = os.path.join(root, "one")
        os.makedirs(one_dir)
        with open(os.path.join(one_dir, "all.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(lines)
        tinystories.train_sp_model(tinystories.generate_stories(4000), os.path.join(root, f"tok{args.vocab_size}"),
                                   args.vocab_size, quiet=True)
        results = {"10 shards": run(files, root, None, args.vocab_size, args.workers, args.repeats),
                   "1 shard": run([os.path.join(one_dir, "all.jsonl")], root, one_dir, args.vocab_size,
                                  args.workers, args.repeats)}
    print(f"corpus: {len(lines)} stories, {chars:,} characters; vocab {args.vocab_size}; {args.workers} cores; "
          f"best of {args.repeats}; identical tokens all three ways")
    print()
    print("| layout | original (per-story loop) | pretokenize, sentencepiece | pretokenize, bpe.c | speedup (bpe.c) |")
    print("|---|---|---|---|---|")
    for name, t in results.items():
        print(f"| {name} | {chars / t['orig'] / 1e6:.1f}M chars/s ({t['orig']:.2f}s) | "
              f"{chars / t['sentencepiece'] / 1e6:.1f}M chars/s ({t['sentencepiece']:.2f}s) | "
              f"{chars / t['bpe'] / 1e6:.1f}M chars/s ({t['bpe']:.2f}s) | {t['orig'] / t['bpe']:.2f}x |")


if __name__ == "__main__":
    main()
