"""
How the Python tools say what went wrong: one line "error: ..." on stderr and a non-zero exit,
never a traceback. Torch-free, so the light tools (tokenizer.py, plot_metrics.py, translate.py)
import it as cheaply as the heavy ones.

    from errors import UserError, arg_parser, die, first_line
"""

import argparse
import sys


class UserError(Exception):
    """A problem with the user's input or environment: reported in one line, no traceback."""


def first_line(e, with_type=False):
    """The first line of an exception's message (library messages can run to pages), or the
    exception's type name when the message is empty. with_type puts the type name in front."""
    s = str(e).strip()
    if not s:
        return type(e).__name__
    return f"{type(e).__name__}: {s.splitlines()[0]}" if with_type else s.splitlines()[0]


def die(msg, status=1, prefix=""):
    """Print "{prefix}error: {msg}" on stderr and exit with status."""
    print(f"{prefix}error: {msg}", file=sys.stderr, flush=True)
    sys.exit(status)


def interrupted(msg="interrupted", prefix=""):
    """Ctrl-C: one line saying what was kept or lost, and status 130, as a shell reports SIGINT."""
    print(f"{prefix}{msg}", file=sys.stderr, flush=True)
    sys.exit(130)


def arg_parser(description, prefix=""):
    """An argparse parser whose errors (a bad or missing flag) are one line and exit status 1,
    instead of argparse's usage block and status 2."""
    parser = argparse.ArgumentParser(description=description)
    parser.error = lambda msg: die(f"{msg} (see --help)", prefix=prefix)
    return parser
