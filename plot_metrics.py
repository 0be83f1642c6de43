"""
Draw the loss curves of a training run from out_dir/metrics.jsonl (written by train.py).

    python3 plot_metrics.py out            # -> out/loss.png
    python3 plot_metrics.py out --output=curve.png

Needs matplotlib (optional: pip install matplotlib); without it, says so and exits with status 1.
"""

import json
import os
import sys

from errors import arg_parser, die


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def read_metrics(path):
    """(train points, eval points) from a metrics.jsonl; bad lines (a torn last line, bytes that are
    no UTF-8, records without the numbers to plot) are skipped."""
    train, evals = [], []
    with open(path, "rb") as f:
        for line in f:
            try:
                p = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if not isinstance(p, dict) or not _number(p.get("iter")):
                continue
            if _number(p.get("val_loss")) and _number(p.get("train_loss")):
                evals.append(p)
            elif _number(p.get("loss")):
                train.append(p)
    return train, evals


def main(argv=None):
    parser = arg_parser("loss curve PNG from out_dir/metrics.jsonl")
    parser.add_argument("out_dir", help="train.py's out_dir")
    parser.add_argument("--output", default=None, help="PNG path (default: OUT_DIR/loss.png)")
    args = parser.parse_args(argv)
    path = os.path.join(args.out_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        die(f"no {path}: run train.py with --out_dir={args.out_dir} first")
    try:
        train, evals = read_metrics(path)
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    if not train and not evals:
        die(f"{path} holds no logged points yet")
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        die("plotting needs matplotlib, which is not installed (pip install matplotlib)")
    fig, ax = plt.subplots(figsize=(8, 5))
    if train:
        ax.plot([p["iter"] for p in train], [p["loss"] for p in train], lw=0.8, alpha=0.6, label="train (batch)")
    if evals:
        ax.plot([p["iter"] for p in evals], [p["train_loss"] for p in evals], "o-", label="train (eval)")
        ax.plot([p["iter"] for p in evals], [p["val_loss"] for p in evals], "o-", label="val")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(os.path.abspath(args.out_dir))
    ax.grid(alpha=0.3)
    ax.legend()
    output = args.output or os.path.join(args.out_dir, "loss.png")
    fig.savefig(output, dpi=100, bbox_inches="tight")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
