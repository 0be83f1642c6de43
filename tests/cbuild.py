"""Helpers for the tests of the C runners (tests/test_run_c.py, tests/test_fuzz_c.py, ...):
the ./run and ./runq binaries, the same with tests/hooks.c's debug variables (tests/bin/, make
hooks), extra builds (scalar, sanitizers, other ISAs) into a tmp dir, random models written with
export.py, and what the runners should print, computed in Python."""

import os
import random
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from export import model_export  # noqa: E402
from model import ModelArgs, Transformer, untie_classifier  # noqa: E402

BOS, EOS = 1, 2


def binary(name):
    """./run or ./runq at the repo root (`make test` builds them first; build if missing)."""
    path = REPO / name
    if not path.exists():
        subprocess.run(["make", "-C", str(REPO), "run"], check=True, capture_output=True)
    return str(path)


def hooked(name):
    """tests/bin/run or tests/bin/runq: the runner built as `make run` builds it, with the
    LLAMA2_LOGITS / LLAMA2_PREFILL_BLOCK / LLAMA2_MMAP hooks of tests/hooks.c (make hooks)."""
    path = REPO / "tests" / "bin" / name
    subprocess.run(["make", "-C", str(REPO), "-s", "hooks"], check=True, capture_output=True)
    return str(path)


def build(out_dir, source, name, flags, cc=None):
    """Compile run.c or runq.c, with tests/hooks.c's hooks and extra flags, into out_dir (with cc,
    or $CC); returns the binary's path."""
    out = Path(out_dir) / name
    cc = cc or os.environ.get("CC", "cc")
    # the Makefile's floating-point contract (no implicit FMA contraction) for every build
    subprocess.run([cc, "-ffp-contract=off", *flags, "-I", str(REPO), f'-DENGINE="{source}"', "-o", str(out),
                    str(REPO / "tests" / "hooks.c"), "-lm"], check=True, capture_output=True)
    return str(out)


def run_c(exe, model, tok, *args, env=None, timeout=120, stdin=None):
    """Runs a runner (a path, or a command list such as [qemu, path]); returns the CompletedProcess
    with bytes stdout/stderr. One thread: the test machine is shared."""
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.update(env or {})
    cmd = list(exe) if isinstance(exe, (list, tuple)) else [exe]
    return subprocess.run([*cmd, str(model), "-z", str(tok), *map(str, args)], capture_output=True,
                          timeout=timeout, env=e, input=stdin if stdin is not None else b"")


def greedy_run(exe, model_path, tok, prompt, steps, tmp_path, env=None, vocab=512):
    """Runs exe (a hooks build: hooked() or build()) greedily with the logits dump; returns
    (stdout text, dumped records). vocab: the model's (512: the conftest sentencepiece model)."""
    dump = tmp_path / f"logits_{random.random()}.bin"
    r = run_c(exe, model_path, tok, "-t", 0, "-n", steps, "-i", prompt, env=dict(env or {}, LLAMA2_LOGITS=str(dump)))
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode("utf-8"), read_logits(dump, vocab)


def random_model(vocab_size, seed, dim=64, n_layers=2, n_heads=4, n_kv_heads=None, shared=True,
                 hidden_dim=None, max_seq_len=64):
    """A random Transformer with weights large enough that greedy decoding wanders over the vocab
    (the training init of N(0, 0.02) makes every step pick the same token)."""
    torch.manual_seed(seed)
    args = ModelArgs(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                     vocab_size=vocab_size, hidden_dim=hidden_dim, multiple_of=32, max_seq_len=max_seq_len)
    model = Transformer(args)
    if not shared:
        untie_classifier(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5 if "tok_embeddings" not in name else 1.0)
            else:
                p.uniform_(0.5, 1.5)  # norm weights
        if not shared:
            model.output.weight.normal_(0.0, 2.0 / dim ** 0.5)
    model.eval()
    return model


def export(model, path, version):
    model_export(model, str(path), version=version)
    return path


def torch_greedy(model, ids, steps):
    """What `./run -t 0 -n steps` generates after prompt ids (BOS first): positions up to steps,
    stopping at BOS or EOS."""
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), steps - len(ids) + 1, temperature=0.0)[0].tolist()
    for i in range(len(ids), len(out)):
        if out[i] in (BOS, EOS):
            return out[:i]
    return out


def torch_logits(model, ids):
    """Logits (len(ids), vocab) predicting the token after each position."""
    with torch.no_grad():
        x = torch.tensor([ids])
        return model(x, x)[0].numpy()


def expected_text(sp, ids):
    """The text the runner prints for token ids (BOS first), computed the straightforward way:
    all bytes joined, decoded with U+FFFD for broken sequences, control characters dropped."""
    out = bytearray()
    prev = BOS
    for t in ids[1:]:
        if sp.is_byte(t):
            out.append(int(sp.id_to_piece(t)[3:5], 16))
        else:
            s = sp.id_to_piece(t).replace("\u2581", " ")
            if prev == BOS and s.startswith(" "):
                s = s[1:]
            out += s.encode("utf-8")
        prev = t
    text = out.decode("utf-8", "replace")
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch in "\n\t")


def read_logits(path, vocab_size):
    """The LLAMA2_LOGITS dump: records of (int32 pos, float32[vocab] logits)."""
    rec = np.dtype([("pos", "<i4"), ("logits", "<f4", (vocab_size,))])
    return np.fromfile(path, dtype=rec)
