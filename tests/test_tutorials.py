"""The tutorial notebooks run top to bottom, and the committed copies carry their outputs.

Each notebook is executed fresh from a temporary copy of ``tutorials/`` (the committed file is
never rewritten) by :func:`execute` from ``tutorials/run.py``, the same code that
``python tutorials/run.py`` uses to rewrite them.
"""

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = sorted(p.name for p in TUTORIALS.glob("[0-9]*.ipynb"))


def load_runner():
    """Import tutorials/run.py by path (tutorials/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tutorials_run", TUTORIALS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load_runner()


def copy_tutorials(tmp_path):
    """A copy of tutorials/ (notebooks read files relative to their folder)."""
    target = tmp_path / "tutorials"
    shutil.copytree(TUTORIALS, target, ignore=shutil.ignore_patterns(
        ".ipynb_checkpoints", "__pycache__"))
    return target


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no tutorials/[0-9]*.ipynb in {TUTORIALS}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    # The kernel inherits the environment. NUMBA_DISABLE_JIT=1 (for stepping through the
    # library's loops) would make the paper-sized passes of notebook 3 take many minutes.
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    committed = (TUTORIALS / name).read_bytes()
    run.execute(copy_tutorials(tmp_path) / name, write=False)
    assert (TUTORIALS / name).read_bytes() == committed


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_its_outputs(name):
    """Every code cell was executed, in order, without an error (run tutorials/run.py)."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert None not in counts, f"{name}: a code cell has no output; run python tutorials/run.py"
    assert counts == list(range(1, len(counts) + 1)), f"{name}: cells were run out of order"
    errors = [i for i, c in enumerate(nb.cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: cells {errors} hold an error output"


def test_kernel_is_this_python(tmp_path):
    """The notebooks' kernel runs in the same environment as the tests (sys.prefix)."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    run.execute(path, write=True)
    printed = nbformat.read(path, as_version=4).cells[0].outputs[0]["text"].strip()
    assert printed == sys.prefix


def test_a_failing_cell_is_named(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells += [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(run.NotebookError, match=r"broken.ipynb: cell 1 .*ZeroDivisionError"):
        run.execute(path)


def test_the_readme_lists_every_notebook_in_order():
    """The README's tutorial list ("4b. `04b_....ipynb`: ...") names each notebook once, in the
    order a student meets them (their file names' order)."""
    readme = (REPO / "README.md").read_text()
    listed = re.findall(r"^\d+[a-z]?\. `(\d\w*\.ipynb)`", readme, flags=re.M)
    assert listed == NOTEBOOKS, f"README lists {listed}; tutorials/ holds {NOTEBOOKS}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_ends_with_exercises_and_collapsed_solutions(name):
    """Each notebook has an exercises (or build-it) section, and its solutions' cells are
    collapsed."""
    nb = nbformat.read(TUTORIALS / name, as_version=4)
    text = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert any(re.search(r"^#+ .*(exercise|build it)", t, flags=re.M | re.I) for t in text), \
        f"{name}: no exercises heading"
    hidden = [c for c in nb.cells if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert hidden, f"{name}: no collapsed solution cell"
