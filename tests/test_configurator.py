"""Tests for configurator.py: --key=value overrides and config files applied to a dict of settings,
and the one-line errors (exit status 2) for everything else."""

import pytest

from configurator import configure

DEFAULTS = {"batch_size": 1, "learning_rate": 5e-4, "device": "cpu", "compile": True, "start": ""}


def bad(argv, capsys, settings=None):
    """configure's one-line error for argv (status 2)."""
    with pytest.raises(SystemExit) as e:
        configure(dict(settings or DEFAULTS), argv, verbose=False)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_overrides_are_typed_like_the_defaults(capsys):
    c = configure(dict(DEFAULTS), ["--batch_size=32", "--learning_rate=3", "--device=cuda:1", "--compile=False",
                                   "--start=123"], verbose=True)
    assert c == {"batch_size": 32, "learning_rate": 3.0, "device": "cuda:1", "compile": False, "start": "123"}
    assert type(c["learning_rate"]) is float  # an int is accepted for a float, and becomes one
    assert "Overriding: batch_size = 32" in capsys.readouterr().out


def test_config_file_assignments(tmp_path):
    cfg = tmp_path / "cfg.py"
    cfg.write_text("import math\nbatch_size = 2 ** 3\n_scratch = 1\nlearning_rate = math.pi\n", encoding="utf-8")
    given = set()
    c = configure(dict(DEFAULTS), [str(cfg), "--batch_size=4", "--compile=True"], verbose=False, given=given)
    assert c["batch_size"] == 4 and c["learning_rate"] == pytest.approx(3.14159, abs=1e-5)  # later arguments win
    assert given == {"batch_size", "learning_rate", "compile"}  # a default given again counts as given
    assert "math" not in c and "_scratch" not in c


def test_help_lists_the_settings(capsys):
    with pytest.raises(SystemExit) as e:
        configure(dict(DEFAULTS), ["--help"])
    assert e.value.code == 0 and "  --batch_size=1" in capsys.readouterr().out


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert "unknown setting 'bogus'" in bad(["--bogus=1"], capsys)
    assert "must be of type int, got str 'abc'" in bad(["--batch_size=abc"], capsys)
    assert "must be of type bool" in bad(["--compile=1"], capsys)
    assert "use --key=value" in bad(["-x"], capsys)
    assert "use --key=value" in bad(["batch_size=3"], capsys)
    assert "cannot read config file" in bad([str(tmp_path / "missing.py")], capsys)
    cfg = tmp_path / "boom.py"
    cfg.write_text("batch_size = 1 / 0\n", encoding="utf-8")
    assert f"config file {cfg} failed: ZeroDivisionError: division by zero" in bad([str(cfg)], capsys)
    cfg.write_text("raise ValueError()\n", encoding="utf-8")
    assert bad([str(cfg)], capsys).rstrip().endswith("failed: ValueError")  # no message: the type alone


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.py"
    cfg.write_bytes(b"batch_size = 4\n# \xff\xfe\n")
    with pytest.raises(SystemExit) as e:
        configure({"batch_size": 1}, [str(cfg)], verbose=False)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "UTF-8" in err and "\n" not in err
