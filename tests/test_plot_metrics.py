"""Tests for plot_metrics.py: which lines of a metrics.jsonl it plots, and its command line."""

import os
import subprocess
import sys

from plot_metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plot(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "plot_metrics.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_plot_metrics_skips_lines_it_cannot_plot(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'\xff\xfe\n"loss"\n[1]\n{"loss": 2.0}\n{"iter": "x", "loss": 1}\n'
                     b'{"iter": 1, "loss": 2.5}\n{"iter": 2, "train_loss": 2.0, "val_loss": 2.1}\n{"iter": 3, "lo')
    train_points, evals = read_metrics(str(path))
    assert [p["iter"] for p in train_points] == [1] and [p["iter"] for p in evals] == [2]


def test_cli_draws_or_says_what_is_missing(tmp_path):
    r = plot(tmp_path)
    assert r.returncode == 1 and r.stderr == f"error: no {tmp_path / 'metrics.jsonl'}: run train.py with --out_dir={tmp_path} first\n"
    (tmp_path / "metrics.jsonl").write_text('{"iter": 1, "lo', encoding="utf-8")  # a torn line only
    r = plot(tmp_path)
    assert r.returncode == 1 and r.stderr.endswith("holds no logged points yet\n") and r.stderr.count("\n") == 1
    r = plot(tmp_path, "--bogus")
    assert r.returncode == 1 and r.stderr == "error: unrecognized arguments: --bogus (see --help)\n"
    (tmp_path / "metrics.jsonl").write_text('{"iter": 1, "loss": 2.5}\n{"iter": 2, "train_loss": 2.0, "val_loss": 2.1}\n',
                                            encoding="utf-8")
    r = plot(tmp_path, f"--output={tmp_path / 'curve.png'}")
    try:  # a PNG with matplotlib, else one clear line saying it is missing
        import matplotlib  # noqa: F401
        assert r.returncode == 0 and (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        assert r.returncode == 1 and r.stderr == \
            "error: plotting needs matplotlib, which is not installed (pip install matplotlib)\n"
