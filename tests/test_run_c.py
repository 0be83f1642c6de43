"""Tests of the C runners ./run and ./runq against PyTorch (model.py), sentencepiece and the
original runner's sampler. Run: .venv/bin/python -m pytest -q tests/test_run_c.py (after make run)."""

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from conftest import need_tool
from export import load_model_bin
from cbuild import (BOS, EOS, REPO, binary, build, expected_text, export, greedy_run, hooked, random_model,
                    read_logits, run_c, torch_greedy, torch_logits)

VOCAB = 512  # the conftest sentencepiece model


@pytest.fixture(scope="module")
def sp(sp_model):
    p = spm.SentencePieceProcessor(model_file=sp_model)
    assert p.vocab_size() == VOCAB
    return p


def check_parity(model, model_path, exe, sp, tok, prompt, steps, tmp_path, atol):
    """./run -t 0 prints the PyTorch greedy decode; its logits match PyTorch's on the same tokens."""
    ids = [BOS] + sp.encode(prompt)
    ref = torch_greedy(model, ids, steps)
    out, recs = greedy_run(exe, model_path, tok, prompt, steps, tmp_path)
    assert out == expected_text(sp, ref) + "\n"
    c_ids = ids + [int(np.argmax(r)) for r in recs["logits"]]
    assert c_ids[:len(ref)] == ref
    want = torch_logits(model, c_ids[:-1])
    for rec in recs:
        np.testing.assert_allclose(rec["logits"], want[rec["pos"] - 1], atol=atol, rtol=0)
    return out, recs


CONFIGS = {
    "mha-shared": dict(dim=64, n_heads=4, n_kv_heads=4, shared=True),
    "gqa-unshared": dict(dim=64, n_heads=4, n_kv_heads=2, shared=False),
    "mqa-odd-sizes": dict(dim=48, n_heads=6, n_kv_heads=1, shared=False, hidden_dim=100),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_model_parity_v0_v1(name, sp, sp_tok_bin, tmp_path):
    model = random_model(VOCAB, seed=len(name), max_seq_len=48, **CONFIGS[name])
    outs = []
    for version in (0, 1):
        path = export(model, tmp_path / f"m{version}.bin", version)
        out, recs = check_parity(model, path, hooked("run"), sp, sp_tok_bin, "从前，有一个小女孩", 48, tmp_path, 1e-3)
        outs.append(out)
        # the prompt in blocks or token by token: the same numbers, bit for bit
        out1, recs1 = greedy_run(hooked("run"), path, sp_tok_bin, "从前，有一个小女孩", 48, tmp_path,
                                 env={"LLAMA2_PREFILL_BLOCK": "1"})
        assert out1 == out and np.array_equal(recs1["logits"], recs["logits"])
        # and two OpenMP threads split the rows, never a sum: the same numbers again
        out2, recs2 = greedy_run(hooked("run"), path, sp_tok_bin, "从前，有一个小女孩", 48, tmp_path,
                                 env={"OMP_NUM_THREADS": "2"})
        assert out2 == out and np.array_equal(recs2["logits"], recs["logits"])
    assert outs[0] == outs[1]
    assert len(outs[0]) > 20  # it did generate


def test_runq_close_to_dequantized_model(sp, sp_tok_bin, tmp_path):
    """runq quantizes activations too, so it is only close to the (dequantized) PyTorch model."""
    from export import load_model_bin
    model = random_model(VOCAB, seed=3, dim=64, n_heads=4, n_kv_heads=2, shared=False, max_seq_len=48)
    for name in ("m2.bin",):
        path = export(model, tmp_path / name, 2)
        deq = load_model_bin(str(path))
        out, recs = greedy_run(hooked("runq"), path, sp_tok_bin, "从前，有一个小女孩", 48, tmp_path)
        ids = [BOS] + sp.encode("从前，有一个小女孩")
        c_ids = ids + [int(np.argmax(r)) for r in recs["logits"]]
        want = torch_logits(deq, c_ids[:-1])
        for rec in recs:
            got, ref = rec["logits"], want[rec["pos"] - 1]
            assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max() + 0.02
        assert out.startswith("从前，有一个小女孩")


@pytest.fixture(scope="module")
def trained(sp, zh_stories, tmp_path_factory):
    """A tiny model trained for a few dozen steps on Chinese stories ([BOS] story [EOS])."""
    torch.manual_seed(0)
    data = []
    for s in zh_stories[:400]:
        data += [BOS] + sp.encode(s) + [EOS]
    data = torch.tensor(data)
    from model import ModelArgs, Transformer
    model = Transformer(ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=VOCAB,
                                  multiple_of=32, max_seq_len=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        ix = torch.randint(len(data) - 65, (16,), generator=g)
        x = torch.stack([data[i:i + 64] for i in ix])
        y = torch.stack([data[i + 1:i + 65] for i in ix])
        model(x, y)
        opt.zero_grad()
        model.last_loss.backward()
        opt.step()
    model.eval()
    d = tmp_path_factory.mktemp("trained")
    return model, {v: export(model, d / f"t{v}.bin", v) for v in (0, 1, 2)}


def test_trained_model_parity(trained, sp, sp_tok_bin, tmp_path):
    model, paths = trained
    prompt = "从前，有一只会飞的狗"
    outs = [check_parity(model, paths[v], hooked("run"), sp, sp_tok_bin, prompt, 64, tmp_path, 1e-3)[0] for v in (0, 1)]
    assert outs[0] == outs[1]
    # runq: the same first tokens as the fp32 runner
    outq, recs = greedy_run(hooked("runq"), paths[2], sp_tok_bin, prompt, 64, tmp_path)
    _, recs0 = greedy_run(hooked("run"), paths[0], sp_tok_bin, prompt, 64, tmp_path)
    first = lambda rs: [int(np.argmax(r)) for r in rs["logits"][:5]]
    assert first(recs) == first(recs0)


def test_stops_at_bos_and_eos(sp, sp_tok_bin, tmp_path):
    """A classifier that always prefers BOS or EOS: the story ends right after the prompt."""
    for first, other in ((BOS, EOS), (EOS, BOS)):
        model = random_model(VOCAB, seed=5, shared=False)
        ids = [BOS] + sp.encode("小猫")
        with torch.no_grad():
            model.output.weight.zero_()
            v = torch.randn(64)
            model.output.weight[first] = v
            model.output.weight[other] = -v
            if int(torch.argmax(model(torch.tensor([ids]))[0, -1])) != first:
                model.output.weight[first], model.output.weight[other] = -v, v
        path = export(model, tmp_path / "stop.bin", 0)
        out, recs = greedy_run(hooked("run"), path, sp_tok_bin, "小猫", 30, tmp_path)
        assert out == "小猫\n"
        assert len(recs) == 1 and int(np.argmax(recs["logits"][0])) == first


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    return export(random_model(VOCAB, seed=1, dim=32, n_layers=1, n_heads=2, max_seq_len=128), d / "s.bin", 0)


def tokenize(model_path, tok, text):
    r = run_c(binary("run"), model_path, tok, "-m", "tokenize", "-i", text)
    assert r.returncode == 0, r.stderr.decode()
    return [int(t) for t in r.stdout.split()], r.stderr.decode()


def test_tokenize_matches_sentencepiece(sp, sp_tok_bin, small_model, zh_stories):
    rng = random.Random(0)
    texts = ["", " ", "     ", "  两个  空格  ", "\t制表符\n换行\n\n", "从前，有一只会飞的狗叫波波",
             "Lily和Tom在2023年12月31日买了3个苹果。", "emoji 😀🐶🌈 表情", "生僻字：龘靐齉𠀀𪚥", "ａｂｃ１２３",
             "x\x01y\x1bz", "’“”…—", "한국어 日本語 русский", "12345678901234567890", "a" * 300]
    texts += [s[:rng.randint(1, 80)] for s in zh_stories[:30]]
    pool = "".join(zh_stories[:50]) + "abc XYZ 0123456789 ，。！？😀龘\n\t"
    texts += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 60))) for _ in range(40)]
    for text in texts:
        assert tokenize(small_model, sp_tok_bin, text)[0] == [BOS] + sp.encode(text), repr(text)


def test_long_prompt_encodes_exactly(sp, sp_tok_bin, small_model, zh_stories):
    # (its speed is measured by bench/bench_run.py, not asserted here: CI hosts are shared)
    text = "".join(zh_stories)[:20000]
    assert len(text) == 20000
    ids, err = tokenize(small_model, sp_tok_bin, text)
    assert ids == [BOS] + sp.encode(text), err


def test_byte_fallback_round_trip(sp, sp_tok_bin, small_model):
    """Characters outside the vocabulary are spelled with byte tokens and come back whole."""
    prompt = "龘靐齉𠀀😀ü，小狗说：“你好！”"
    ids = [BOS] + sp.encode(prompt)
    assert any(sp.is_byte(t) for t in ids)
    r = run_c(binary("run"), small_model, sp_tok_bin, "-t", 0, "-n", len(ids) - 1, "-i", prompt)
    assert r.returncode == 0 and r.stdout == prompt.encode("utf-8") + b"\n"


def test_prompt_longer_than_context(sp_tok_bin, small_model):
    r = run_c(binary("run"), small_model, sp_tok_bin, "-i", "从前" * 200)
    assert r.returncode == 1 and r.stdout == b""
    assert re.fullmatch(rb"error: the prompt is \d+ tokens, longer than the model's context of 128\n", r.stderr)


def original_sampler(logits, temperature, topp, seed):
    """The original run.c sampler in numpy float32, step by step."""
    state = seed
    mask = (1 << 64) - 1
    out = []
    for lg in logits:
        x = (lg.astype(np.float32) / np.float32(temperature)).astype(np.float32)
        e = np.exp(x - x.max()).astype(np.float32)
        s = np.float32(0)
        for v in e:
            s = np.float32(s + v)
        p = (e / s).astype(np.float32)
        state ^= state >> 12
        state ^= (state << 25) & mask
        state ^= state >> 27
        u32 = ((state * 0x2545F4914F6CDD1D) & mask) >> 32
        coin = np.float32((u32 >> 8) / 16777216.0)
        cutoff = np.float32((np.float32(1) - np.float32(topp)) / np.float32(len(p) - 1))
        idx = sorted([i for i in range(len(p)) if p[i] >= cutoff], key=lambda i: -p[i])
        cum = np.float32(0)
        last = len(idx) - 1
        for k, i in enumerate(idx):
            cum = np.float32(cum + p[i])
            if cum > np.float32(topp):
                last = k
                break
        r = np.float32(coin * cum)
        cdf = np.float32(0)
        choice = idx[last]
        for i in idx[:last + 1]:
            cdf = np.float32(cdf + p[i])
            if r < cdf:
                choice = i
                break
        out.append(choice)
    return out


def test_sampler_is_the_original(sp, sp_tok_bin, tmp_path):
    model = random_model(VOCAB, seed=7, shared=False)
    path = export(model, tmp_path / "m.bin", 0)
    dump = tmp_path / "l.bin"
    args = ("-t", 1.0, "-p", 0.9, "-s", 42, "-n", 40, "-i", "小狗")
    r = run_c(hooked("run"), path, sp_tok_bin, *args, env={"LLAMA2_LOGITS": str(dump)})
    assert r.returncode == 0
    recs = read_logits(dump, VOCAB)
    chosen = original_sampler(recs["logits"], 1.0, 0.9, 42)
    ids = tokenize(path, sp_tok_bin, "小狗")[0]
    # the token sampled at each step is the one fed at the next (the dump comes before sampling)
    c_ids = ids + chosen
    assert len(recs) >= 2
    assert [int(p) for p in recs["pos"]] == list(range(len(ids), len(ids) + len(recs)))
    # same seed, same story; another seed, another story
    assert run_c(binary("run"), path, sp_tok_bin, *args).stdout == r.stdout
    assert run_c(binary("run"), path, sp_tok_bin, *args[:5], 43, *args[6:]).stdout != r.stdout
    # the sampled ids, replayed greedily through PyTorch, give the logits C dumped: C fed them back
    want = torch_logits(model, c_ids[:-1])
    for rec in recs:
        np.testing.assert_allclose(rec["logits"], want[rec["pos"] - 1], atol=1e-3, rtol=0)
    story = c_ids[:-1] if c_ids[-1] in (BOS, EOS) else c_ids
    assert r.stdout.decode("utf-8") == expected_text(sp, story) + "\n"


@pytest.fixture(scope="module")
def scalar_bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("scalar")
    return {name: build(d, f"{name}.c", name, ["-O2", "-DLLAMA2_SCALAR"]) for name in ("run", "runq")}


@pytest.mark.parametrize("version", [0, 2])
def test_scalar_kernels_match_simd(version, scalar_bins, sp_tok_bin, trained, tmp_path):
    """The portable path and the SIMD path: identical greedy tokens, logits within tolerance."""
    _, paths = trained
    name = "run" if version == 0 else "runq"
    a, ra = greedy_run(hooked(name), paths[version], sp_tok_bin, "从前", 64, tmp_path)
    b, rb = greedy_run(scalar_bins[name], paths[version], sp_tok_bin, "从前", 64, tmp_path)
    assert a == b
    # runq: an activation on a rounding boundary may quantize the other way (test_kernels.py's bound)
    atol = 1e-3 if version == 0 else 0.02 * np.abs(rb["logits"]).max()
    np.testing.assert_allclose(ra["logits"], rb["logits"], atol=atol, rtol=0)
    # models whose sizes do not fit the SIMD tiles (dim 48, group size 16) take the remainder paths
    model = random_model(VOCAB, seed=11, dim=48, n_heads=6, n_kv_heads=2, hidden_dim=80, shared=False, max_seq_len=40)
    path = export(model, tmp_path / "odd.bin", version)
    a, ra = greedy_run(hooked(name), path, sp_tok_bin, "从前", 40, tmp_path)
    b, rb = greedy_run(scalar_bins[name], path, sp_tok_bin, "从前", 40, tmp_path)
    assert a == b
    atol = 1e-3 if version == 0 else 0.02 * np.abs(rb["logits"]).max()
    np.testing.assert_allclose(ra["logits"], rb["logits"], atol=atol, rtol=0)


def test_bad_command_lines(small_model, sp_tok_bin, tmp_path):
    """Every user error: exit 1 and one line on stderr."""
    run = binary("run")
    truncated = tmp_path / "t.bin"
    truncated.write_bytes(small_model.read_bytes()[:-4])
    # int8 -128 is outside version 2's [-127, 127] (the SIMD kernels cannot negate it): put one
    # into the token embedding, after the 256-byte header and the fp32 norms
    q = bytearray(export(random_model(VOCAB, seed=5), tmp_path / "q.bin", 2).read_bytes())
    first_q = 256 + 4 * (2 * 2 * 64 + 64)
    assert subprocess.run([binary("runq"), tmp_path / "q.bin", "-z", sp_tok_bin, "-n", "2"], capture_output=True).returncode == 0
    q[first_q + 2 * 64 * 64] = 0x80
    (tmp_path / "q128.bin").write_bytes(q)
    cases = [
        [run],
        [run, small_model, "-z", sp_tok_bin, "-q", "1"],
        [run, small_model, "-z", sp_tok_bin, "-t", "abc"],
        [run, small_model, "-z", sp_tok_bin, "-t", "-1"],
        [run, small_model, "-z", sp_tok_bin, "-p", "1.5"],
        [run, small_model, "-z", sp_tok_bin, "-n", "3.5"],
        [run, small_model, "-z", sp_tok_bin, "-n", "-2"],
        [run, small_model, "-z", sp_tok_bin, "-s", "x1"],
        [run, small_model, "-z", sp_tok_bin, "-t", "nan"],
        [run, small_model, "-z", sp_tok_bin, "-m", "poem"],
        [run, small_model, "-z", sp_tok_bin, "-i"],
        [run, small_model, "-z", sp_tok_bin, "extra"],
        [run, tmp_path / "missing.bin", "-z", sp_tok_bin],
        [run, truncated, "-z", sp_tok_bin],
        [run, small_model, "-z", tmp_path / "missing_tok.bin"],
        [run, small_model],  # the default tokenizer.bin does not exist in the cwd
        [binary("runq"), small_model, "-z", sp_tok_bin],  # v0 file for the int8 runner
        [binary("runq"), tmp_path / "q128.bin", "-z", sp_tok_bin],
    ]
    for cmd in cases:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, cwd=tmp_path, timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 1, (cmd, err)
        if len(cmd) > 1:
            assert err.startswith("error: ") and err.count("\n") == 1, (cmd, err)
    r = subprocess.run([run, "-h"], capture_output=True)
    assert r.returncode == 0 and b"-m <string>" in r.stdout


def test_chat_mode(sp, sp_tok_bin, small_model):
    steps = 100
    r = run_c(binary("run"), small_model, sp_tok_bin, "-m", "chat", "-y", "你是一个故事大王", "-i", "讲个故事",
              "-n", steps, "-t", 0, stdin=b"")
    assert r.returncode == 0, r.stderr.decode()
    # the reply is model.py's greedy continuation of the Llama-2 chat template, up to EOS or -n positions
    prompt = [BOS] + sp.encode("[INST] <<SYS>>\n你是一个故事大王\n<</SYS>>\n\n讲个故事 [/INST]")
    model = load_model_bin(str(small_model))
    with torch.no_grad():
        seq = model.generate(torch.tensor([prompt]), steps - len(prompt) + 1, temperature=0.0)[0].tolist()
    reply = seq[len(prompt):]
    ended = EOS in reply
    reply = reply[:reply.index(EOS)] if ended else reply
    assert len(reply) >= 10
    text = expected_text(sp, prompt + reply)[len(expected_text(sp, prompt)):]
    # after EOS it is the user's turn: stdin is empty, so the chat ends
    assert r.stdout.decode("utf-8") == "Assistant: " + text + ("\nUser: \n" if ended else "\n")


def loaded_weights(exe, model, tok, env):
    """Starts a chat, waits for its first "User: " (the model is loaded), and returns the lines of
    /proc/<pid>/maps that map the model file, and how much of its memory sits in huge pages."""
    e = dict(os.environ, OMP_NUM_THREADS="1", **env)
    p = subprocess.Popen([exe, str(model), "-z", str(tok), "-m", "chat", "-y", "sys"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    try:
        assert p.stdout.read(len(b"User: ")) == b"User: "
        maps = [line for line in Path(f"/proc/{p.pid}/maps").read_text().splitlines() if line.endswith(str(model))]
        rollup = Path(f"/proc/{p.pid}/smaps_rollup").read_text()
        huge_kb = int(re.search(r"AnonHugePages:\s+(\d+) kB", rollup).group(1))
    finally:
        p.kill()
        p.wait()
    return maps, huge_kb


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux only (/proc)")
@pytest.mark.parametrize("version", [0, 2])
def test_weights_in_huge_pages(version, sp_tok_bin, tmp_path):
    """On Linux the weights are copied into memory backed by 2 MB pages when transparent huge
    pages are on; LLAMA2_MMAP=1 (or THP off) maps the file. Both give the same tokens and logits."""
    name = "run" if version == 0 else "runq"
    model = export(random_model(VOCAB, seed=3, dim=256, n_layers=4, n_heads=4, hidden_dim=768, max_seq_len=64),
                   tmp_path / "m.bin", version)
    assert model.stat().st_size > 2 << 20  # more than one huge page
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    thp_on = thp.exists() and ("[always]" in thp.read_text() or "[madvise]" in thp.read_text())
    maps, huge_kb = loaded_weights(binary(name), model, sp_tok_bin, {})
    if thp_on:
        assert maps == []  # a copy, not a mapping of the file
        print(f"{name}: {huge_kb} kB of anonymous memory in huge pages")
    else:
        assert maps
    maps, _ = loaded_weights(hooked(name), model, sp_tok_bin, {"LLAMA2_MMAP": "1"})
    assert maps and all(" r--p " in line for line in maps)  # mapped, read-only
    a, ra = greedy_run(hooked(name), model, sp_tok_bin, "从前", 40, tmp_path)
    b, rb = greedy_run(hooked(name), model, sp_tok_bin, "从前", 40, tmp_path, env={"LLAMA2_MMAP": "1"})
    assert a == b
    assert np.array_equal(ra["logits"], rb["logits"])


def test_shipped_binaries_have_no_debug_hooks(small_model, sp_tok_bin, tmp_path):
    """The debug variables are tests/hooks.c's: ./run ignores them (the hooks build honours them)."""
    dump = tmp_path / "logits.bin"
    for exe in (binary("run"), hooked("run")):
        r = run_c(exe, small_model, sp_tok_bin, "-t", 0, "-n", 8, env={"LLAMA2_LOGITS": str(dump)})
        assert r.returncode == 0, r.stderr.decode()
        assert dump.exists() == (exe == hooked("run"))


def test_make_win64_compiles(tmp_path):
    need_tool("x86_64-w64-mingw32-gcc", package="gcc-mingw-w64-x86-64")
    for f in ("run.c", "runq.c", "Makefile"):
        shutil.copy(REPO / f, tmp_path / f)
    shutil.copytree(REPO / "llama2", tmp_path / "llama2")
    r = subprocess.run(["make", "-C", str(tmp_path), "win64"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    for exe in ("run.exe", "runq.exe"):
        assert (tmp_path / exe).read_bytes()[:2] == b"MZ"


def test_make_targets_build_the_fast_kernels():
    """llama2.c's target names (runfast, runomp, rungnu, runompgnu) build what `make run` builds
    (-march=native: the SIMD kernels), and nothing is built -Ofast/-ffast-math, under which the
    compiler may drop the isnan() checks on bad input."""
    targets = ["run", "runfast", "runomp", "rungnu", "runompgnu", "win64"]
    r = subprocess.run(["make", "-n", "-B", "-C", str(REPO), *targets], capture_output=True, text=True, check=True)
    lines = [l for l in r.stdout.splitlines() if " -o run" in l]
    assert len(lines) == 2 * len(targets)
    for line in lines:
        assert "-Ofast" not in line and "fast-math" not in line and "-O3" in line, line
        assert ("-march=x86-64-v3" if "mingw" in line else "-march=") in line, line


def score_line(r):
    assert r.returncode == 0, r.stderr.decode()
    m = re.fullmatch(r"(\d+) tokens scored, loss ([0-9.]+) per token, perplexity ([0-9.]+)\n", r.stdout.decode())
    assert m, r.stdout
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def test_score_mode_matches_pytorch(trained, sp, sp_model, sp_tok_bin, zh_stories, tmp_path):
    """-m score gives PyTorch's mean cross-entropy of the text's tokens (sample.py --score, and
    the definition computed here: windows of seq_len inputs, the context restarted at each), on a
    text of several windows and several prefill blocks each; the same bits in blocks and token by
    token and with 2 threads; runq's int8 close to it."""
    model, paths = trained
    import sys
    text = "\n".join(zh_stories[:6]) + "\r\nEnd."
    path = tmp_path / "story.txt"
    path.write_bytes(text.encode("utf-8"))
    ids = [BOS] + sp.encode(text)
    assert len(ids) > 4 * 64
    losses = []
    with torch.no_grad():
        for w0 in range(0, len(ids) - 1, 64):
            y = torch.tensor(ids[w0 + 1:w0 + 65])
            x = torch.tensor(ids[w0:w0 + len(y)])
            logits = model(x[None], y[None])[0]
            losses += torch.nn.functional.cross_entropy(logits.double(), y, reduction="none").tolist()
    want = sum(losses) / len(losses)
    assert len(losses) == len(ids) - 1

    py = subprocess.run([sys.executable, str(REPO / "sample.py"), f"--checkpoint={paths[0]}",
                         f"--tokenizer={sp_model}", f"--score={path}"], capture_output=True,
                        env=dict(os.environ, OMP_NUM_THREADS="1"))
    n, loss, ppl = score_line(py)
    assert n == len(ids) - 1 and loss == pytest.approx(want, rel=1e-6)
    first = run_c(binary("run"), paths[0], sp_tok_bin, "-m", "score", "-f", path)
    n_c, loss_c, ppl_c = score_line(first)
    assert n_c == n and loss_c == pytest.approx(want, rel=1e-4) and ppl_c == pytest.approx(np.exp(want), rel=1e-3)
    for env in ({"LLAMA2_PREFILL_BLOCK": "1"}, {"LLAMA2_PREFILL_BLOCK": "5"}, {"OMP_NUM_THREADS": "2"}):
        assert run_c(hooked("run"), paths[0], sp_tok_bin, "-m", "score", "-f", path, env=env).stdout == first.stdout
    # -i gives the same text the same score
    assert run_c(binary("run"), paths[0], sp_tok_bin, "-m", "score", "-i", text).stdout == first.stdout
    q = run_c(binary("runq"), paths[2], sp_tok_bin, "-m", "score", "-f", path)
    n_q, loss_q, _ = score_line(q)
    print(f"score: fp32 {loss_c:.6f}, int8 {loss_q:.6f} (gap {100 * (loss_q / loss_c - 1):+.3f}%)")
    assert n_q == n and loss_q == pytest.approx(loss_c, rel=0.02)
    for env in ({"LLAMA2_PREFILL_BLOCK": "1"}, {"LLAMA2_PREFILL_BLOCK": "5"}, {"OMP_NUM_THREADS": "2"}):
        assert run_c(hooked("runq"), paths[2], sp_tok_bin, "-m", "score", "-f", path, env=env).stdout == q.stdout


def test_score_mode_bad_input(trained, sp_tok_bin, tmp_path):
    _, paths = trained
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"abc\0def")
    cases = [(["-m", "score", "-f", empty], "nothing to score"),
             (["-m", "score", "-i", ""], "nothing to score"),
             (["-m", "score", "-f", nul], "NUL byte"),
             (["-m", "score", "-f", tmp_path / "missing.txt"], "cannot open text file"),
             (["-m", "score", "-f", tmp_path], "is a folder"),
             (["-m", "score", "-f", empty, "-i", "x"], "with -i or with -f, not both"),
             (["-m", "scores", "-i", "x"], "unknown mode")]
    for exe, v in (("run", 0), ("runq", 2)):
        for args, msg in cases:
            r = run_c(binary(exe), paths[v], sp_tok_bin, *args)
            err = r.stderr.decode()
            assert r.returncode == 1 and msg in err and err.count("\n") == 1, (args, err)
