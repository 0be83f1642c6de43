"""Shared test fixtures: generated Chinese stories and a small sentencepiece model trained on them
in the test session (seconds), so every test runs offline."""

import os
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests import the repo's flat modules (model, tinystories, ...)

from tinystories import generate_stories, train_sp_model  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402


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
