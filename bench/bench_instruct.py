"""
Instruction score of the demo's instruct model: does the story do what the instruction asks?

    python3 bench/bench_instruct.py                      # demo/stories_demo_instruct.bin vs demo/stories_demo.bin
    python3 bench/bench_instruct.py --n=40 --seeds=5     # a quick look
    python3 bench/bench_instruct.py --model=out/demo_sft/model.bin --tokenizer=data/demo/tok2048.bin
    python3 bench/bench_instruct.py --llamacpp=20   # greedy stories of ./run vs llama.cpp on the GGUF

The instructions are derived (instruct.derive, split "heldout") from the sample corpus' validation
stories, the shard SFT never trains on, and ask only for (hero, word) pairs that no training
instruction pairs (instruct.heldout_pair). For each instruction and seed 1..N, ./run writes a story
at temperature 0.8 (default top-p) from the instruction in the model's template; the base model
gets the same instruction as a plain prompt. A story is fully satisfied when instruct.check finds
nothing broken: the hero from start to end, every word, the asked-for dialogue or first sentence,
and an end of its own (EOS before the context is full). Beside it the fluency proxies of
bench_demo.py: ends at EOS, mean length, sentences repeating an earlier one. It prints, it does
not judge.

--llamacpp=N instead compares greedy stories (t = 0) for the first N held-out instructions: ./run
-m instruct on the model against llama.cpp's llama-completion on its F32 GGUF (export.py), which
renders the instruction with the GGUF's own tokenizer.chat_template (--jinja, one turn): no
template is given to llama.cpp here. llama.cpp is built as bench_llamacpp.py builds it.
"""

import argparse
import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one story per core: the threads of one would only wait for the others

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_demo import n_tokens, run_story  # noqa: E402
from export import read_bin_header  # noqa: E402
from instruct import TEMPLATE, check, derive, render, sentences  # noqa: E402
from storygen import generate_stories  # noqa: E402
from tinystories import SAMPLE_SHARDS, SAMPLE_STORIES  # noqa: E402


def heldout_instructions(n):
    """The first n distinct held-out instructions of the sample corpus' validation shard (data00)."""
    out, seen = [], set()
    for story in generate_stories(SAMPLE_STORIES // SAMPLE_SHARDS):
        c = derive(story, split="heldout")
        if c and c["instruction"] not in seen:
            seen.add(c["instruction"])
            out.append(c)
            if len(out) == n:
                return out
    sys.exit(f"error: only {len(out)} held-out instructions in the validation stories, asked for {n}")


def story_of(exe, model, tok, prompt, seed, temperature, seq_len):
    """(story, ended): ./run echoes the prompt, the story is what follows it."""
    text = run_story(exe, model, tok, prompt, seed, temperature)
    ended = n_tokens(exe, model, tok, text) < seq_len - 4  # re-encoding may merge a few pieces: a margin
    story = text[len(prompt):] if text.startswith(prompt) else text
    return story.strip(), ended


def score(exe, model, tok, cs, seeds, temperature, plain, show=0):
    seq_len = read_bin_header(model)["seq_len"]
    jobs = [(c, s) for c in cs for s in seeds]

    def one(job):
        c, seed = job
        prompt = c["instruction"] if plain else render(c["instruction"], TEMPLATE)
        return story_of(exe, model, tok, prompt, seed, temperature, seq_len)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, jobs))
    ok = ended = chars = repeats = n_sents = 0
    broken = collections.Counter()
    for (c, seed), (story, end) in zip(jobs, results):
        failed = check(story, c, end)
        ok += not failed
        broken.update(f.split(":")[0] for f in failed)
        ended += end
        chars += len(story)
        sents = sentences(story)
        repeats += len(sents) - len(set(sents))
        n_sents += len(sents)
        if show > 0:
            show -= 1
            print(f"  [{c['instruction']}] s{seed} {failed or 'ok'}: {story}")
    n = len(jobs)
    asked = collections.Counter({"hero": n, "word": sum(len(c["words"]) for c, _ in jobs), "eos": n,
                                 "dialogue": sum(bool(c["dialogue"]) for c, _ in jobs),
                                 "first": sum(bool(c["first"]) for c, _ in jobs)})
    return dict(ok=ok, n=n, ended=ended / n, chars=chars / n, repeats=repeats / max(1, n_sents),
                kept={k: 1 - broken[k] / asked[k] for k in asked if asked[k]})


def llamacpp_same_story(args, n):
    """Greedy stories of ./run and of llama.cpp for n held-out instructions; exits 1 on a difference."""
    import subprocess
    from bench_llamacpp import BUILD, OUT, build_llamacpp, to_gguf
    build_llamacpp()
    gguf = to_gguf(args.model, args.tokenizer, "f32", OUT)
    same = 0
    for c in heldout_instructions(n):
        ours = subprocess.run([args.run, args.model, "-z", args.tokenizer, "-m", "instruct", "-t", "0", "-n", "0",
                               "-i", c["instruction"]], capture_output=True, text=True, check=True).stdout
        # stdin stays open until it exits: at the end of its input, conversation mode stops mid-story
        with subprocess.Popen([str(BUILD / "bin" / "llama-completion"), "-m", str(gguf), "-cnv", "-st", "--jinja",
                               "-p", c["instruction"], "--temp", "0", "-n", "-1", "-t", "1", "--simple-io",
                               "--no-display-prompt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as p:
            theirs = p.stdout.read()
        # llama.cpp prints the first piece's leading space and an end-of-text marker
        theirs = theirs.strip().removesuffix("[end of text]").strip()
        ok = ours.strip() == theirs
        same += ok
        if not ok:
            print(f"  differs: [{c['instruction']}]\n    ./run:     {ours.strip()}\n    llama.cpp: {theirs}")
    print(f"the same greedy story from ./run and llama.cpp (GGUF F32, its chat template): {same}/{n}")
    sys.exit(0 if same == n else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "demo", "stories_demo_instruct.bin"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "demo", "tok_demo_instruct.bin"))
    ap.add_argument("--base", default=os.path.join(ROOT, "demo", "stories_demo.bin"),
                    help="the pretrained model, given the instruction as a plain prompt ('' to skip)")
    ap.add_argument("--base_tokenizer", default=os.path.join(ROOT, "demo", "tok_demo.bin"))
    ap.add_argument("--run", default=os.path.join(ROOT, "run"), help="the ./run to use (make run builds it)")
    ap.add_argument("--n", type=int, default=120, help="held-out instructions")
    ap.add_argument("--seeds", type=int, default=30, help="seeds 1..N for every instruction")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--show", type=int, default=0, help="print the first N stories of each model")
    ap.add_argument("--llamacpp", type=int, default=0, help="instead: compare N greedy stories with llama.cpp's")
    args = ap.parse_args()
    models = [("instruct", args.model, args.tokenizer, False)]
    if args.base:
        models.append(("base, plain prompt", args.base, args.base_tokenizer, True))
    for path in [args.run] + [p for _, m, t, _ in models for p in (m, t)]:
        if not os.path.exists(path):
            sys.exit(f"error: not found: {path}" + (" (make run)" if path == args.run else ""))
    if args.llamacpp:
        llamacpp_same_story(args, args.llamacpp)
    cs = heldout_instructions(args.n)
    seeds = range(1, args.seeds + 1)
    print(f"{len(cs)} held-out instructions x seeds 1-{args.seeds}, t={args.temperature}")
    print(f"{'model':<20} {'satisfied':>14} {'hero':>6} {'words':>6} {'dialog':>6} {'first':>6} "
          f"{'ends (EOS)':>10} {'chars':>6} {'repeated':>8}")
    for label, model, tok, plain in models:
        r = score(args.run, model, tok, cs, seeds, args.temperature, plain, args.show)
        k = r["kept"]
        print(f"{label:<20} {r['ok']:>6}/{r['n']:<5} {r['ok'] / r['n']:>3.0%} {k['hero']:>6.0%} {k['word']:>6.0%} "
              f"{k.get('dialogue', 1):>6.0%} {k.get('first', 1):>6.0%} {r['ended']:>10.0%} {r['chars']:>6.0f} "
              f"{r['repeats']:>8.1%}", flush=True)


if __name__ == "__main__":
    main()
