"""The repository keeps its promises: CI runs the README's test command, every subpackage is
packaged, and importing tinybnn stays cheap."""

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ci_command():
    """The one command line of .ci/run that is not a comment, `set` or `cd`."""
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert "set -euo pipefail" in lines
    commands = [line for line in lines
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_exactly_the_readme_test_command():
    readme_lines = (REPO / "README.md").read_text().splitlines()
    command = ci_command()
    assert command in readme_lines, f"README.md has no line {command!r}"
    assert "pytest" in command


def test_readme_has_the_main_job_command():
    readme_lines = (REPO / "README.md").read_text().splitlines()
    assert ("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/tinybnn compress"
            in readme_lines)


def test_every_subpackage_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(init.parent.relative_to(REPO).parts)
             for init in (REPO / "tinybnn").rglob("__init__.py")}
    missing = sorted(found - listed)
    assert not missing, (f"add {missing} to [options] packages in setup.cfg, "
                         f"or they will be left out of a non-editable install")


def test_importing_tinybnn_stays_cheap():
    code = ("import sys, tinybnn, tinybnn.cli, tinybnn.data, tinybnn.toy; "
            "print(sorted(m for m in ('numba', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_readme_example_prints_what_the_readme_says():
    """The first Python block of the README, run from the repository root, prints the line the
    README shows under "It prints:"."""
    text = (REPO / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    expected = text.split("It prints:\n\n```\n", 1)[1].split("\n```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected.strip()
