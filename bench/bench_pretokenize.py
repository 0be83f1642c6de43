"""
Pretokenize throughput on the offline sample corpus: tinystories.pretokenize (batched sentencepiece
calls, numpy writes) against the original llama2.c approach (a Python loop calling sentencepiece once
per story inside each pool worker), both on the same shards, vocabulary and number of processes.

    python3 bench/bench_pretokenize.py [--workers=2] [--vocab_size=2048] [--repeats=3]

Two layouts: the sample's 10 shards (both approaches run 2 processes) and the same stories in one
file (the original then has one process; ours hands sentencepiece 2 threads). Prints characters per
second for both and the speedup, after checking both wrote identical tokens. Not a test; the machine
may be shared, so the best of a few repeats is reported.
"""

import argparse
import json
import os
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
    """Best-of-repeats seconds for both approaches on the same files; checks they wrote the same tokens."""
    model = os.path.join(root, f"tok{vocab_size}.model")
    out = os.path.join(root, "orig")
    os.makedirs(out, exist_ok=True)
    ours, orig = [], []
    for _ in range(repeats):
        t0 = time.time()
        tinystories.pretokenize(vocab_size, data_root=root, data_dir=data_dir, num_workers=workers)
        ours.append(time.time() - t0)
        t0 = time.time()
        with ProcessPoolExecutor(max_workers=min(workers, len(files))) as pool:
            list(pool.map(original_shard, [(f, model, os.path.join(out, f"{i}.bin")) for i, f in enumerate(files)]))
        orig.append(time.time() - t0)
    for i, f in enumerate(files):
        a = np.fromfile(os.path.join(root, f"tok{vocab_size}", os.path.basename(f)[:-6] + ".bin"), dtype=np.uint16)
        assert np.array_equal(a, np.fromfile(os.path.join(out, f"{i}.bin"), dtype=np.uint16)), f
    return min(orig), min(ours)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--vocab_size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
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
    print(f"corpus: {len(lines)} stories, {chars:,} characters; vocab {args.vocab_size}; {args.workers} workers; "
          f"best of {args.repeats}; identical tokens both ways")
    for name, (orig, ours) in results.items():
        print(f"{name:>9}: original (per-story encode loop) {chars / orig:>11,.0f} chars/s ({orig:.2f}s) | "
              f"tinystories.pretokenize {chars / ours:>11,.0f} chars/s ({ours:.2f}s) | speedup {orig / ours:.2f}x")


if __name__ == "__main__":
    main()
