"""Tests for errors.py: the first line of an exception, and the one-line exits of die, interrupted and
arg_parser."""

import pytest

from errors import UserError, arg_parser, die, first_line, interrupted


def test_first_line():
    assert first_line(ValueError("bad\nsecond line\nthird")) == "bad"
    assert first_line(ValueError("  \n  padded \n")) == "padded"
    assert first_line(ValueError()) == "ValueError"  # an empty message: the type says something
    assert first_line(UserError("a\nb"), with_type=True) == "UserError: a"
    assert first_line(KeyError(), with_type=True) == "KeyError"
    assert first_line(KeyError("k")) == "'k'"


def test_die_is_one_line_with_its_status(capsys):
    with pytest.raises(SystemExit) as e:
        die(UserError("no such file"))
    assert e.value.code == 1 and capsys.readouterr().err == "error: no such file\n"
    with pytest.raises(SystemExit) as e:
        die("bad setting", status=2, prefix="tool.py: ")
    assert e.value.code == 2 and capsys.readouterr().err == "tool.py: error: bad setting\n"


def test_interrupted_exits_130(capsys):
    with pytest.raises(SystemExit) as e:
        interrupted("interrupted; nothing was written")
    assert e.value.code == 130 and capsys.readouterr().err == "interrupted; nothing was written\n"


def test_arg_parser_errors_are_one_line(capsys):
    p = arg_parser("a tool", prefix="tool.py: ")
    p.add_argument("--n", type=int, required=True)
    assert p.parse_args(["--n", "3"]).n == 3
    for argv, want in [(["--n", "x"], "argument --n: invalid int value: 'x'"),
                       ([], "the following arguments are required: --n"),
                       (["--n", "1", "--bogus"], "unrecognized arguments: --bogus")]:
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        assert e.value.code == 1 and capsys.readouterr().err == f"tool.py: error: {want} (see --help)\n"
