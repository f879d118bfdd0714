"""The tinybnn command line: help, version, one-line errors with exit code 2 (130 on Ctrl-C),
the installed script, and `tinybnn evaluate`'s MODEL or --model (`tinybnn data`'s table and
JSON: tests/test_jobs_data.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinybnn import __version__, cli
from tinybnn.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "tinybnn"      # the console script, once installed


def run(args, cwd=REPO):
    """Run a command as a user would, without TINYBNN_DATA; return the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "TINYBNN_DATA"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result):
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybnn: error: "), result.stderr


# --- in process ------------------------------------------------------------------------------

def test_help_names_the_commands_and_the_main_job(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: tinybnn" in out and "data" in out
    assert "tinybnn compress" in out and "main job" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: tinybnn" in capsys.readouterr().out


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tinybnn {__version__}"


def test_a_tinybnn_error_is_one_line_and_exit_2(monkeypatch, capsys):
    def broken(args):
        raise DataError("first line\nsecond line")
    monkeypatch.setattr(cli, "data_command", broken)
    assert cli.main(["data"]) == 2
    assert capsys.readouterr().err == "tinybnn: error: first line second line\n"


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "data_command", interrupted)
    assert cli.main(["data"]) == 130
    assert capsys.readouterr().err == "tinybnn: interrupted\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(args):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, "data_command", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["data"])


# --- as a user runs it -----------------------------------------------------------------------

def test_python_m_tinybnn_help():
    result = run([sys.executable, "-m", "tinybnn", "--help"])
    assert result.returncode == 0, result.stderr
    assert "usage: tinybnn" in result.stdout


@pytest.mark.parametrize("args", [["bogus"], ["--bogus"], ["data", "--bogus"],
                                  ["compress", "--kernels", "many"]])
def test_usage_errors_are_one_line_and_exit_2(args):
    assert_one_line_error(run([sys.executable, "-m", "tinybnn", *args]))


def test_a_bad_tinybnn_data_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, TINYBNN_DATA=str(tmp_path / "nowhere"))
    result = subprocess.run([sys.executable, "-m", "tinybnn", "data"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert_one_line_error(result)
    assert "TINYBNN_DATA must name a folder" in result.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="tinybnn is not installed in this environment")
def test_installed_script_runs_from_anywhere(tmp_path):
    """From a folder outside the checkout, the script uses the installed package and its data."""
    result = run([str(SCRIPT), "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: tinybnn" in result.stdout

    result = run([str(SCRIPT), "data", "--verify", "--json"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)
    assert all(r["ok"] is True for r in rows)

    where = run([sys.executable, "-c", "import tinybnn; print(tinybnn.__file__)"], cwd=tmp_path)
    installed = Path(where.stdout.strip()).parent
    if installed != REPO / "tinybnn":               # a plain, non-editable install
        assert all(r["found_in"] == "installed package" for r in rows), rows
        assert all(Path(r["path"]).parent == installed / "datasets" for r in rows), rows


# --- tinybnn evaluate names its model file as MODEL or as --model PATH ------------------------

@pytest.fixture
def digits_model(tmp_path):
    """A small untrained paper CNN for the 8 x 8 digits, saved as `tinybnn train` would."""
    from tinybnn import io
    from tinybnn.architectures import paper_cnn

    path = tmp_path / "model.npz"
    io.save(path, paper_cnn(2, input_shape=(1, 8, 8), kernel_size=3),
            {"options": {"dataset": "digits"}})
    return path


def test_evaluate_takes_the_model_as_an_option_or_positionally(digits_model, capsys):
    assert cli.main(["evaluate", "--model", str(digits_model)]) == 0
    captured = capsys.readouterr()
    by_option = json.loads(captured.out)
    assert by_option["dataset"] == "digits" and 0 <= by_option["test_accuracy"] <= 1
    assert cli.main(["evaluate", str(digits_model)]) == 0
    assert json.loads(capsys.readouterr().out) == by_option


@pytest.mark.parametrize("how", ["both", "neither"])
def test_evaluate_needs_the_model_exactly_once(digits_model, capsys, how):
    argv = {"both": ["evaluate", str(digits_model), "--model", str(digits_model)],
            "neither": ["evaluate", "--dataset", "digits"]}[how]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybnn: error: "), captured.err
    assert "--model" in lines[0] and "MODEL" in lines[0]
