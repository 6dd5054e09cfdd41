"""The command line tells a user's mistake (one line, exit status 2) from a bug (its traceback, another status)."""

import os
import subprocess
import sys

import pytest

import crunet
from crunet.cli import models_cmd
from crunet.cli.main import main
from crunet.errors import ConfigError, CrunetError, MissingFileError, UnknownOptionError
from crunet.models._registry import UnknownModelError

RAISE_IN_MODELS = """
import sys
from crunet.cli import main, models_cmd
def broken(args):
    raise TypeError("a bug inside crunet")
models_cmd.run = broken
sys.exit(main.main(["models"]))
"""


def test_a_bug_keeps_its_traceback_and_does_not_exit_2():
    result = subprocess.run([sys.executable, "-c", RAISE_IN_MODELS], capture_output=True, text=True, timeout=120)
    assert result.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in result.stderr and "in broken" in result.stderr
    assert "TypeError: a bug inside crunet" in result.stderr


@pytest.mark.parametrize("error", [ValueError("bad value from a bug"), OSError(5, "I/O error", "/proc/internal")])
def test_plain_value_and_os_errors_pass_through(monkeypatch, error):
    def broken(args):
        raise error

    monkeypatch.setattr(models_cmd, "run", broken)
    with pytest.raises(type(error)):
        main(["models"])


def test_a_crunet_error_is_one_line_with_status_2(monkeypatch, capsys):
    def mistake(args):
        raise ConfigError("--thing must be 1,\n  got 2")

    monkeypatch.setattr(models_cmd, "run", mistake)
    assert main(["models"]) == 2
    assert capsys.readouterr().err == "crunet models: error: --thing must be 1, got 2\n"


def test_an_os_error_on_a_path_the_user_gave_is_one_line(monkeypatch, capsys, tmp_path):
    def unreadable(args):
        open(tmp_path / "nothing" / "here.txt")  # FileNotFoundError with a filename under the user's folder

    monkeypatch.setattr(models_cmd, "run", unreadable)
    assert main(["models", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "No such file or directory" in err[0]


def test_user_mistakes_are_crunet_errors_and_keep_their_older_types():
    with pytest.raises(UnknownModelError, match="closest: crunet56") as info:
        crunet.create_model("crunet57")
    assert isinstance(info.value, CrunetError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownOptionError, match="unknown option") as info:
        crunet.create_model("crunet_small", depth_of_nothing=3)
    assert isinstance(info.value, TypeError) and isinstance(info.value, CrunetError)
    with pytest.raises(ConfigError, match="bn_eps"):
        crunet.create_model("crunet_small", bn_eps=2.0)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(MissingFileError, CrunetError)


def test_a_bad_option_is_refused_on_one_line(capsys):
    assert main(["train", "--preset", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--preset must be one of paper50, paper-deep, got 'nope'" in err[0]


def test_a_reader_that_goes_away_stops_the_command_quietly():
    """`crunet models | head -n 1`: the reader is gone before crunet writes (its end of the pipe closed first)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "crunet", "models"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 141
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr
