"""
Name-keeping score of the demo model: does a story keep the hero its prompt names?

    python3 bench/bench_demo.py                                  # the committed demo/ model
    python3 bench/bench_demo.py --model=out/demo/stories_demo.bin --tokenizer=data/demo/tok2048.bin

For each prompt ("从前，有一只小狗叫豆豆" and openings of the same shape with a girl, a boy and an
animal as hero) it runs ./run with seeds 1..30 at temperature 0.8 (default top-p) and counts the
stories whose only name from the generator's name lists (storygen.NAMES) is the prompt's hero.
Fluency proxies beside it: the share of stories that end by themselves (EOS before the context is
full), mean length in characters, and the share of sentences that repeat an earlier sentence of
the same story. A benchmark, not a test: it prints, it does not judge.

With --checkpoint (train.py's ckpt.pt) it also prints the model's validation loss on name tokens,
which moves long before the story score does: on a name already seen in its story (copying) and on a
first mention (a guess among the names, about ln 54 = 4.0 nats), beside the loss on all other tokens.

    python3 bench/bench_demo.py --model=out/demo/stories_demo.bin --tokenizer=data/demo/tok2048.bin \
        --checkpoint=out/demo/ckpt.pt --data=data/demo/tok2048
"""

import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from export import read_bin_header  # noqa: E402
from storygen import NAMES, names_in  # noqa: E402

# (prompt, hero): the demo's prompt, then a girl, a boy and an animal under its own name
PROMPTS = [("从前，有一只小狗叫豆豆", "豆豆"), ("从前，有一个小女孩叫莉莉", "莉莉"),
           ("从前，有一个小男孩叫小明", "小明"), ("从前，有一只小猫叫咪咪", "咪咪")]


def run_story(exe, model, tok, prompt, seed, temperature):
    p = subprocess.run([exe, model, "-z", tok, "-t", str(temperature), "-s", str(seed), "-n", "0", "-i", prompt],
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"error: {exe} failed: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode("utf-8").strip()


def n_tokens(exe, model, tok, text):
    """Tokens of text as ./run encodes it (with BOS): a story that used up the context did not end."""
    p = subprocess.run([exe, model, "-z", tok, "-m", "tokenize", "-i", text], capture_output=True, timeout=60)
    return len(p.stdout.split())


def sentences(text):
    return [s for s in re.split(r"(?<=[。！？])(?![”])|(?<=[。！？]”)", text) if s]


def score(exe, model, tok, prompt, hero, seeds, temperature, seq_len, show=0):
    kept = ended = chars = repeats = total_sents = 0
    for seed in seeds:
        text = run_story(exe, model, tok, prompt, seed, temperature)
        kept += names_in(text) == [hero]
        # re-encoding can merge a few sampled pieces: leave a margin below the context length
        ended += n_tokens(exe, model, tok, text) < seq_len - 4
        chars += len(text)
        sents = sentences(text)
        repeats += len(sents) - len(set(sents))
        total_sents += len(sents)
        if show > 0:
            show -= 1
            print(f"  s{seed} {names_in(text)}: {text}")
    n = len(seeds)
    return dict(kept=kept, n=n, ended=ended / n, chars=chars / n, repeats=repeats / max(1, total_sents))


def name_losses(checkpoint, data, windows=32):
    """Mean loss on name tokens seen before in their story, on first mentions, and on other tokens,
    over the first windows of the validation shard (data/data00.bin)."""
    import numpy as np
    import sentencepiece as spm
    import torch
    from export import load_checkpoint
    model = load_checkpoint(checkpoint).eval()
    sp = spm.SentencePieceProcessor(model_file=data.rstrip("/") + ".model")
    names = {sp.piece_to_id(n) for n in NAMES} - {sp.unk_id()}  # names that are one piece
    T = model.params.max_seq_len
    shard = np.memmap(os.path.join(data, "data00.bin"), dtype=np.uint16, mode="r")
    b = torch.tensor(np.stack([shard[i * T:i * T + T + 1] for i in range(windows)]).astype(np.int64))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(b[:, :-1], b[:, 1:]).transpose(1, 2), b[:, 1:],
                                                 reduction="none")
    seen_l, first_l, other_l = [], [], []
    for row, losses in zip(b[:, 1:].tolist(), loss.tolist()):
        seen = set()
        for y, l in zip(row, losses):
            if y == 1:  # BOS: a new story, nobody seen yet
                seen = set()
            if y in names:
                (seen_l if y in seen else first_l).append(l)
                seen.add(y)
            else:
                other_l.append(l)
    mean = lambda xs: sum(xs) / max(1, len(xs))  # noqa: E731
    return mean(seen_l), mean(first_l), mean(other_l), len(names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "demo", "stories_demo.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "demo", "tok_demo.bin"))
    ap.add_argument("--run", default=os.path.join(ROOT, "run"), help="the ./run to use (make run builds it)")
    ap.add_argument("--seeds", type=int, default=30, help="seeds 1..N")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--show", type=int, default=0, help="print the first N stories of each prompt")
    ap.add_argument("--checkpoint", help="train.py's ckpt.pt: also print the validation loss on names")
    ap.add_argument("--data", default=os.path.join("data", "demo", "tok2048"),
                    help="with --checkpoint: the pretokenized folder (data00.bin) beside its .model")
    args = ap.parse_args()
    for path, what in ((args.run, "./run (make run)"), (args.model, "model"), (args.tokenizer, "tokenizer")):
        if not os.path.exists(path):
            sys.exit(f"error: {what} not found: {path}")
    try:
        seq_len = read_bin_header(args.model)["seq_len"]
    except ValueError as e:
        sys.exit(f"error: {e}")
    seeds = range(1, args.seeds + 1)
    print(f"{os.path.relpath(args.model)}, t={args.temperature}, seeds 1-{args.seeds}")
    print(f"{'prompt':<16} {'keeps hero':>10} {'ends (EOS)':>10} {'mean chars':>10} {'repeated':>9}")
    results = []
    for prompt, hero in PROMPTS:
        r = score(args.run, args.model, args.tokenizer, prompt, hero, seeds, args.temperature, seq_len, args.show)
        results.append(r)
        print(f"{prompt:<16} {r['kept']:>5}/{r['n']:<4} {r['ended']:>10.0%} {r['chars']:>10.0f} {r['repeats']:>9.1%}")
    kept, n = sum(r["kept"] for r in results), sum(r["n"] for r in results)
    print(f"all: {kept}/{n} stories keep the hero's name; worst prompt {min(r['kept'] for r in results)}/{args.seeds}")
    if args.checkpoint:
        for path in (args.checkpoint, os.path.join(args.data, "data00.bin"), args.data.rstrip("/") + ".model"):
            if not os.path.exists(path):
                sys.exit(f"error: not found: {path}")
        try:
            seen, first, other, n_names = name_losses(args.checkpoint, args.data)
        except ValueError as e:
            sys.exit(f"error: {e}")
        print(f"validation loss: repeated name {seen:.3f}, first mention {first:.3f}, other tokens {other:.3f} "
              f"({n_names} of {len(NAMES)} names are one piece)")


if __name__ == "__main__":
    main()
