"""The SIMD kernels of run.c and runq.c on every ISA they have, against the portable loops
(-DLLAMA2_SCALAR): x86-64 AVX2 (-march=x86-64-v3), AVX-512 (-march=native on a CPU that has it,
else only compiled), and aarch64 NEON with and without the dot-product extension, cross-built with
aarch64-linux-gnu-gcc and run under qemu-aarch64. Each build must give the scalar path's greedy
tokens (and PyTorch's, for fp32), logits within tolerance, and the same bits whatever the prefill
block or the thread count. Run: .venv/bin/python -m pytest -q tests/test_kernels.py"""

import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from conftest import need_tool
from cbuild import BOS, build, export, greedy_run, random_model, torch_greedy

VOCAB = 512  # the conftest sentencepiece model


def cpu_flags():
    try:
        return set(" ".join(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split())
    except OSError:
        return set()


X86 = platform.machine() in ("x86_64", "AMD64")
AVX512 = {"avx512f", "avx512bw", "avx512vl"} <= cpu_flags()
ARM_CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"
# name: (compiler, flags, emulator prefix or None); static arm binaries need no arm libraries to run
VARIANTS = {
    "avx2": (None, ["-O3", "-fopenmp", "-march=x86-64-v3"], None),
    "avx512": (None, ["-O3", "-fopenmp", "-march=native"], None),
    "neon": (ARM_CC, ["-O2", "-fopenmp", "-static", "-march=armv8-a"], [QEMU, "-cpu", "max"]),
    "neon-dotprod": (ARM_CC, ["-O2", "-fopenmp", "-static", "-march=armv8.2-a+dotprod"], [QEMU, "-cpu", "max"]),
}

KERNEL_SHAPES = {
    # group size 32 (the unrolled int8 path); heads of 24 floats (3 blocks of 8)
    "gs32": dict(dim=96, n_heads=4, n_kv_heads=2, hidden_dim=160, group_size=32),
    # heads of 6 floats (the attention kernels' scalar rest) and kv_dim 6 (a partial tile of rows)
    "gs32-odd": dict(dim=96, n_heads=16, n_kv_heads=1, hidden_dim=160, group_size=32),
    # rows of 48 and 80 floats (not a multiple of 32 or 64), group size 16 (NEON's int8 step; x86
    # takes the loops)
    "gs16": dict(dim=48, n_heads=6, n_kv_heads=2, hidden_dim=80, group_size=16),
    # group size 64 (two 32-byte steps per group)
    "gs64": dict(dim=128, n_heads=8, n_kv_heads=4, hidden_dim=192, group_size=64),
    # rows of 90 and 150 floats (not a multiple of 4: the browser build's fp32 weights stay in row
    # order), heads of 18, group size 30 (no int8 tile takes it: the loops everywhere)
    "odd": dict(dim=90, n_heads=5, n_kv_heads=1, hidden_dim=150, group_size=30),
}


@pytest.fixture(scope="module")
def sp(sp_model):
    return spm.SentencePieceProcessor(model_file=sp_model)


@pytest.fixture(scope="module")
def scalar_bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("scalar")
    return {name: build(d, f"{name}.c", name, ["-O2", "-DLLAMA2_SCALAR"]) for name in ("run", "runq")}


def build_variant(variant, tmp_path):
    """{run, runq} commands of one ISA build, or skip when this machine cannot run it."""
    cc, flags, prefix = VARIANTS[variant]
    if prefix is None:
        if not X86:
            pytest.skip(f"{variant} needs an x86-64 CPU")
        if variant == "avx512" and not AVX512:
            # still compile the AVX-512 path (its intrinsics and the code around them)
            for name in ("run", "runq"):
                build(tmp_path, f"{name}.c", name, ["-O3", "-march=icelake-server"])
            pytest.skip("this CPU has no AVX-512: its path was compiled, not run")
        if variant == "avx2" and "avx2" not in cpu_flags():
            pytest.skip("this CPU has no AVX2")
    else:
        need_tool(ARM_CC, package="gcc-aarch64-linux-gnu")
        need_tool(QEMU, package="qemu-user")
    return {name: [*(prefix or []), build(tmp_path, f"{name}.c", name, flags, cc=cc)] for name in ("run", "runq")}


def prompt_with(sp, stories, n_tokens):
    """A piece of the stories that encodes to n_tokens tokens, BOS included."""
    text = "".join(stories[:20])
    for start in range(200):
        for end in range(start, start + 80):
            if 1 + len(sp.encode(text[start:end])) == n_tokens:
                return text[start:end]
    raise AssertionError(f"no piece of {n_tokens} tokens")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_simd_matches_scalar(variant, scalar_bins, sp, sp_tok_bin, zh_stories, tmp_path):
    """Every tile of the SIMD kernels: prompts of 1 and 33 tokens (tiles of 1 and 2 tokens,
    more than one block) on odd shapes. The SIMD build matches the portable one and
    PyTorch's greedy tokens, and neither the prefill block nor the thread count changes a bit."""
    from export import version2_export
    bins = build_variant(variant, tmp_path)
    for shape, cfg in KERNEL_SHAPES.items():
        cfg = dict(cfg)
        gs = cfg.pop("group_size")
        model = random_model(VOCAB, seed=13, shared=False, max_seq_len=48, **cfg)
        paths = {"run": export(model, tmp_path / "k0.bin", 0), "runq": tmp_path / "k2.bin"}
        version2_export(model, str(paths["runq"]), group_size=gs)
        for n_tokens in (1, 33):  # a 1-token tile alone; 16 tiles of 2 tokens and 1 of 1
            prompt = prompt_with(sp, zh_stories, n_tokens)
            for name, path in paths.items():
                where = (shape, name, n_tokens)
                a, ra = greedy_run(bins[name], path, sp_tok_bin, prompt, 48, tmp_path)
                b, rb = greedy_run(scalar_bins[name], path, sp_tok_bin, prompt, 48, tmp_path)
                assert a == b, where
                # runq: an activation on a rounding boundary may quantize the other way, so only close
                atol = 1e-3 if name == "run" else 0.02 * np.abs(rb["logits"]).max()
                np.testing.assert_allclose(ra["logits"], rb["logits"], atol=atol, rtol=0, err_msg=str(where))
                if name == "run":
                    ids = [BOS] + sp.encode(prompt)
                    c_ids = ids + [int(np.argmax(r)) for r in ra["logits"]]
                    ref = torch_greedy(model, ids, 48)
                    assert c_ids[:len(ref)] == ref, where
                # 3 threads: uneven parts, and on a 2-core host one thread takes rows from a preempted one
                for env in ({"LLAMA2_PREFILL_BLOCK": "1"}, {"OMP_NUM_THREADS": "3"}):
                    c, rc = greedy_run(bins[name], path, sp_tok_bin, prompt, 48, tmp_path, env=env)
                    assert c == a and np.array_equal(rc["logits"], ra["logits"]), (where, env)


def test_isa_paths_are_compiled(tmp_path):
    """Each build really contains its ISA's instructions (a wrong #if would silently fall back
    to the loops, and the test above would still pass)."""
    checks = [("cc", ["-march=x86-64-v3"], "runq.c", "vpmaddubsw"), ("cc", ["-march=x86-64-v3"], "run.c", "vfmadd"),
              ("cc", ["-march=icelake-server"], "runq.c", "vpdpbusd"), ("cc", ["-march=icelake-server"], "run.c", "zmm"),
              (ARM_CC, ["-march=armv8-a"], "runq.c", "smlal"), (ARM_CC, ["-march=armv8.2-a+dotprod"], "runq.c", "sdot"),
              (ARM_CC, ["-march=armv8-a"], "run.c", "fmla")]
    if not X86:
        checks = [c for c in checks if c[0] == ARM_CC]
    for cc, flags, src, insn in checks:
        if cc == ARM_CC:
            need_tool(ARM_CC, package="gcc-aarch64-linux-gnu")
        asm = subprocess.run([cc, "-O3", "-ffp-contract=off", *flags, "-S", "-o", "-", src], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent.parent, check=True).stdout
        assert insn in asm, (cc, flags, src, insn)
