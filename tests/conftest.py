"""Shared test fixtures: generated Chinese stories and a small sentencepiece model trained on them
in the test session (seconds), so every test runs offline; texts that stress the tokenizers."""

import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests import the repo's flat modules (model, tinystories, ...)

from tinystories import generate_stories, train_sp_model  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402


# texts that stress a tokenizer: mixed scripts, emoji, double and trailing spaces, control characters
TEXTS = ["从前，有一个小女孩叫莉莉。", "莉莉说：“你好！” Hello  world 123 4567", "😀 龘 𠀀 é",
         "  两个空格  和结尾空格 ", "a\nb\tc", ""]
TRICKY = TEXTS + ["  前后都有空格  ", "a  b   c", " ", "   ", "\t\n", "x", "<s>你好</s><unk>", "<0x41><0xE4>",
                  "\u2581从前", "从前\u2581\u2581", "\u2581", " \u2581 ", "a \u2581 b  \u2581", "\u2581 \u2581x", "Hello, World! 12345 3.14", "１２３ＡＢＣ", "\u3000全角空格\u3000",
                  "日本語のテキスト", "한국어 문장", "🙂👍🏽 🇨🇳", "e\u0301 ﬁ", "\u2028行分隔\u2029", "ab\x00cd", "\x7f\x01",
                  "从前" * 400, "。。。！！！？？？……", "“你好，”他说。‘好’", "\n\n从前，\n有一只小狗。\n", "z" * 3000]


def random_texts(n, seed=0):
    """Short strings over an alphabet that stresses the normalizer and the merges: spaces and typed
    "▁", common and rare Chinese, ASCII, digits, emoji, newlines."""
    rng = np.random.default_rng(seed)
    alphabet = list(" \u2581\u2581  \n\t，。！“”从前有一只小狗叫豆豆他们玩得很开心龘𠀀abcTom 0123🙂é")
    return ["".join(rng.choice(alphabet, rng.integers(0, 40))) for _ in range(n)]


def small_sp_model(tmp_path, texts, name, vocab_size=400, **kw):
    """A small sentencepiece model with our settings (tinystories.train_sp_model), or others given in kw."""
    return train_sp_model(texts, str(tmp_path / name), vocab_size, num_threads=1, quiet=True, **kw)


def need_tool(*names, package):
    """Skips the calling test when a program is missing (naming the Debian package that brings
    it), except under CI (CI=true, set by .ci/run, which installs .ci/packages): there a missing
    tool fails, so CI never passes by skipping."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        msg = f"{', '.join(missing)} not found (Debian package {package}; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def zh_stories():
    return generate_stories(2000, seed=0)


@pytest.fixture(scope="session")
def sp_model(zh_stories, tmp_path_factory):
    """Path of a 512-piece BPE .model (byte_fallback; the rarer characters are byte tokens)."""
    prefix = tmp_path_factory.mktemp("sp") / "tok512"
    return train_sp_model(zh_stories, str(prefix), 512, num_threads=1, quiet=True)


@pytest.fixture(scope="session")
def libbpe():
    """bpe.c's libbpe.so at the repo root (`make test` builds it; build it if missing)."""
    import subprocess
    if not (ROOT / "libbpe.so").exists():
        subprocess.run(["make", "-C", str(ROOT), "bpe"], check=True, capture_output=True)
    return ROOT / "libbpe.so"


@pytest.fixture(scope="session")
def sp_tok_bin(sp_model):
    """Path of sp_model exported to run.c's tokenizer .bin."""
    return Tokenizer(sp_model).export()
