"""The repository keeps its promises: CI runs the README's test command, every subpackage is
packaged, and importing tinybnn stays cheap."""

import configparser
import json
import os
import re
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


# --- every path the code, the docs and the tutorials cite exists ------------------------------

#: The top-level folders a cited path starts with (runs/ is output, not part of the repository).
CITED_FOLDERS = ("tinybnn", "docs", "tests", "benchmarks", "tutorials", "datasets")

#: Cited but missing, to be fixed in the citing files; this list should be emptied, not grown.
KNOWN_MISSING = set()

_TOKEN = re.compile(r"[^\s`'\"()\[\]|,;:!?\\=]+")    # a run of characters a path may hold
_LINK = re.compile(r"\]\(([^)\s]+)")                 # the target of a Markdown link or image
_TEMPLATE = set("<>*{}")                             # stage<k>_norms.png, docs/compress/*/...


def cited_texts():
    """(file, text, is_markdown) for every file whose citations are checked: the package's
    modules, the docs, the README, and the Markdown and code cells of the tutorials."""
    for path in sorted((REPO / "tinybnn").rglob("*.py")):
        yield path, path.read_text(), False
    for path in [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md"]:
        yield path, path.read_text(), True
    for path in sorted((REPO / "tutorials").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] in ("markdown", "code"):
                yield path, "".join(cell["source"]), cell["cell_type"] == "markdown"


def installed_to_source():
    """setup.cfg's package_dir as path prefixes: {"tinybnn/datasets/": "datasets/"}."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    pairs = [line.split("=") for line in config["options"]["package_dir"].splitlines()
             if "=" in line]
    return {k.strip().replace(".", "/") + "/": v.strip().rstrip("/") + "/" for k, v in pairs}


def cited_paths(text):
    """The repository-relative paths cited in ``text``: tokens starting with a folder of
    CITED_FOLDERS (after any leading ./ or ../) and ending in a file extension or a '/'."""
    for match in _TOKEN.finditer(text):
        token = match.group(0).rstrip(".")
        if token.startswith("*"):                   # **docs/X.md**: Markdown emphasis
            token = token.strip("*").rstrip(".")
        if _TEMPLATE & set(token):
            continue
        path = re.sub(r"^(\.\.?/)+", "", token)
        if (path.split("/", 1)[0] in CITED_FOLDERS and "/" in path
                and (path.endswith("/") or re.search(r"\.[A-Za-z0-9]+$", path))):
            yield path


def linked_paths(text, folder):
    """The local targets of the Markdown links in ``text``, relative to the repository root
    (a link is relative to the folder of the file it is in); URLs and anchors are skipped."""
    for match in _LINK.finditer(text):
        target = match.group(1).split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target) or _TEMPLATE & set(target):
            continue
        resolved = Path(os.path.normpath(folder / target))
        try:
            yield resolved.relative_to(REPO).as_posix() + ("/" if target.endswith("/") else "")
        except ValueError:                          # points outside the repository
            yield target


def test_every_cited_path_exists():
    mapped = installed_to_source()
    missing, cited = {}, set()
    for file, text, is_markdown in cited_texts():
        paths = set(cited_paths(text))
        if is_markdown:
            paths |= set(linked_paths(text, file.parent))
        for path in paths:
            if path.split("/", 1)[0] == "runs":
                continue
            for installed, source in mapped.items():  # tinybnn/datasets/ is datasets/
                if path.startswith(installed):
                    path = source + path[len(installed):]
            cited.add(path)
            if not (REPO / path).exists() and path not in KNOWN_MISSING:
                missing.setdefault(path, set()).add(file.relative_to(REPO).as_posix())
    assert not missing, "cited paths that do not exist:\n" + "\n".join(
        f"  {path} (cited in {', '.join(sorted(files))})"
        for path, files in sorted(missing.items()))
    stale = sorted(p for p in KNOWN_MISSING if (REPO / p).exists() or p not in cited)
    assert not stale, f"take {stale} off KNOWN_MISSING: they exist now or are no longer cited"


def test_cited_paths_reads_relative_linked_and_templated_paths():
    text = ("see ../docs/NOTATION.md and **tinybnn/presets.py**, `tests/test_prune.py`'s "
            "check, [the benchmarks](../benchmarks/README.md), tutorials/models/; not "
            "docs/compress/*/report.md, stage<k>_norms.png, docs/{name}.md, tinybnn.prune, "
            "runs/compress/ or https://example.org/docs/x.md")
    assert sorted(cited_paths(text)) == ["benchmarks/README.md", "docs/NOTATION.md",
                                         "tests/test_prune.py", "tinybnn/presets.py",
                                         "tutorials/models/"]
    links = "[a](NOTATION.md) [b](../README.md#licences) [c](https://x.org/a.md) [d](#top)"
    assert list(linked_paths(links, REPO / "docs")) == ["docs/NOTATION.md", "README.md"]
