"""
Command-line overrides for train.py's settings, the nanoGPT way:

    python3 train.py config/my_run.py --batch_size=32 --compile=False

An argument without "=" is a Python config file whose top-level assignments become settings;
"--key=value" overrides one setting. Values are parsed as Python literals (so 3e-4, False, 'cpu')
and fall back to a plain string (string settings always take the text). Every key must already exist with the same type (an int is
accepted for a float). Anything else is a one-line error and exit status 2.
"""

import sys
import types
from ast import literal_eval

from errors import die, first_line


def fail(msg):
    die(msg, status=2)  # a bad setting is a usage error: status 2, as argparse


def _set(config, key, value, where, given):
    if key not in config:
        fail(f"unknown setting '{key}' ({where}); known settings: {', '.join(sorted(config))}")
    old = config[key]
    if isinstance(old, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(old):
        fail(f"setting '{key}' ({where}) must be of type {type(old).__name__}, "
            f"got {type(value).__name__} {value!r}")
    config[key] = value
    if given is not None:
        given.add(key)


def configure(config, argv, verbose=True, given=None):
    """Apply config files and --key=value overrides from argv to the dict config (in place).
    verbose prints each override (and config file) to stdout, as the original does. given: a set
    that receives the name of every setting the user set (on the command line or in a config file),
    for checks that must tell a value the user asked for from a default."""
    for arg in argv:
        if arg in ("-h", "--help"):
            print("settings (override with --key=value, or name a Python config file):")
            for key, value in config.items():
                print(f"  --{key}={value!r}")
            sys.exit(0)
        if "=" not in arg:
            if arg.startswith("-"):
                fail(f"bad argument '{arg}': use --key=value")
            try:
                with open(arg, encoding="utf-8") as f:
                    source = f.read()
            except OSError as e:
                fail(f"cannot read config file {arg}: {e.strerror}")
            except UnicodeDecodeError as e:
                fail(f"config file {arg} is not valid UTF-8 (byte {e.start})")
            if verbose:
                print(f"Overriding config with {arg}:")
                print(source)
            namespace = {}
            try:
                exec(compile(source, arg, "exec"), namespace)
            except Exception as e:
                fail(f"config file {arg} failed: {first_line(e, with_type=True)}")
            for key, value in namespace.items():
                if not key.startswith("_") and not isinstance(value, types.ModuleType):
                    _set(config, key, value, f"in {arg}", given)
        else:
            if not arg.startswith("--"):
                fail(f"bad argument '{arg}': use --key=value")
            key, val = arg[2:].split("=", 1)
            try:
                value = literal_eval(val)
            except (SyntaxError, ValueError):
                value = val  # a bare word such as --device=cpu is a string
            if isinstance(config.get(key), str) and not isinstance(value, str):
                value = val  # a string setting takes the text as written: --start=123
            _set(config, key, value, f"--{key}={val}", given)
            if verbose:
                print(f"Overriding: {key} = {config[key]}")
    return config
