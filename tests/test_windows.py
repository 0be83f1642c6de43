"""The Windows build for real: run.exe and runq.exe (`make win64`, mingw-w64) run under wine and
print the same bytes as a Linux build of the same sources at the same ISA level (x86-64-v3, no
OpenMP): greedy and seeded stories from a Chinese prompt given on the command line (wine hands it
over as UTF-16, the program turns it into UTF-8), `-m tokenize`, a model in a folder with a Chinese
name, and a truncated model -> one line on stderr and a non-zero exit."""

import os
import shutil
import subprocess

import pytest

from cbuild import REPO, build, export, random_model
from conftest import need_tool

VOCAB = 512  # the conftest sentencepiece model
PROMPT = "从前，有一只小狗叫豆豆"


def x86_64_v3():
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return all(f" {f}" in flags for f in ("avx2", "fma", "bmi2"))


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A command prefix that runs a .exe under wine, in a private prefix made once for the module
    (the first start sets up the prefix and takes a while; a persistent wineserver then keeps later
    starts quick)."""
    need_tool("wine", package="wine64")
    need_tool("x86_64-w64-mingw32-gcc", package="gcc-mingw-w64-x86-64")
    if not x86_64_v3():
        pytest.skip("this CPU lacks x86-64-v3 (AVX2, FMA), the level of the Windows build")
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    # mscoree/mshtml disabled: no dialog offering to install Mono or Gecko into the new prefix
    env.update(WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=", LANG="C.UTF-8",
               OMP_NUM_THREADS="1")
    subprocess.run(["wineserver", "-p"], env=env, check=True, timeout=60)
    try:
        # not through pipes: the services the first start leaves running would hold them open
        subprocess.run(["wine", "cmd", "/c", "exit"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        yield env
    finally:
        subprocess.run(["wineserver", "-k"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def exes(wine, tmp_path_factory):
    """{name: (windows .exe, linux binary)} for run and runq, built from the same sources."""
    r = subprocess.run(["make", "-C", str(REPO), "win64"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path_factory.mktemp("v3")
    return {name: (str(REPO / f"{name}.exe"), build(d, f"{name}.c", name, ["-O3", "-march=x86-64-v3"]))
            for name in ("run", "runq")}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("winmodels")
    m = random_model(VOCAB, seed=3, dim=64, n_layers=2, n_heads=4, max_seq_len=96)
    return {"run": export(m, d / "m.bin", 0), "runq": export(m, d / "q.bin", 2)}


def both(exes, wine, name, args, cwd=None):
    """(linux, windows) CompletedProcess of the same command line."""
    linux, windows = exes[name][1], exes[name][0]
    env = dict(wine)
    a = subprocess.run([linux, *map(str, args)], capture_output=True, timeout=120, cwd=cwd, env=env)
    b = subprocess.run(["wine", windows, *map(str, args)], capture_output=True, timeout=120, cwd=cwd, env=env)
    return a, b


@pytest.mark.parametrize("name", ["run", "runq"])
@pytest.mark.parametrize("sampling", [["-t", "0"], ["-t", "0.9", "-p", "0.9", "-s", "42"]], ids=["greedy", "seeded"])
def test_story_from_chinese_prompt_is_byte_identical(exes, wine, models, sp_tok_bin, name, sampling):
    a, b = both(exes, wine, name, [models[name], "-z", sp_tok_bin, *sampling, "-n", 80, "-i", PROMPT])
    assert a.returncode == 0, a.stderr.decode()
    assert b.returncode == 0, b.stderr.decode("utf-8", "replace")
    assert a.stdout.decode("utf-8").startswith(PROMPT)
    assert b.stdout == a.stdout


def test_tokenize_is_identical(exes, wine, models, sp_tok_bin):
    texts = [PROMPT, "Lily和Tom在2023年买了3个苹果。", "生僻字：龘𠀀 emoji 😀", "  两个  空格 "]
    for text in texts:
        a, b = both(exes, wine, "run", [models["run"], "-z", sp_tok_bin, "-m", "tokenize", "-i", text])
        assert a.returncode == 0 and a.stdout.split(), a.stderr.decode()
        assert b.stdout == a.stdout, text


def test_model_in_a_chinese_folder(exes, wine, models, sp_tok_bin, tmp_path):
    """C:\\Users\\张三\\下载\\ is where a Chinese user's downloads are: model and tokenizer there,
    by a relative and by an absolute path."""
    d = tmp_path / "模型"
    d.mkdir()
    shutil.copy(models["run"], d / "故事.bin")
    shutil.copy(sp_tok_bin, d / "词表.bin")
    for model, tok in [("模型/故事.bin", "模型/词表.bin"), (str(d / "故事.bin"), str(d / "词表.bin"))]:
        a, b = both(exes, wine, "run", [model, "-z", tok, "-t", "0", "-n", 40, "-i", PROMPT], cwd=tmp_path)
        assert a.returncode == 0, a.stderr.decode()
        assert b.returncode == 0, b.stderr.decode("utf-8", "replace")
        assert b.stdout == a.stdout


@pytest.mark.parametrize("name", ["run", "runq"])
def test_truncated_model_is_one_line_error(exes, wine, models, sp_tok_bin, tmp_path, name):
    data = open(models[name], "rb").read()
    cut = tmp_path / "截断.bin"
    cut.write_bytes(data[:len(data) // 2])
    a, b = both(exes, wine, name, [cut.name, "-z", sp_tok_bin, "-n", 8, "-i", PROMPT], cwd=tmp_path)
    for r in (a, b):
        assert r.returncode != 0 and r.stdout == b""
        lines = r.stderr.decode("utf-8").strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "截断.bin" in lines[0], r.stderr
    assert b.stderr.replace(b"\r\n", b"\n") == a.stderr
