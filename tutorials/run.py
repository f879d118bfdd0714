"""Execute the tutorial notebooks top to bottom and (by default) rewrite them with their outputs.

Usage, from anywhere, with tinybnn importable (``pip install -e ".[test]"`` in a checkout)::

    python tutorials/run.py          # every tutorials/[0-9]*.ipynb, in order; rewrites them
    python tutorials/run.py 03 04    # only the notebooks whose file name contains 03 or 04

It prints the wall time of each notebook and exits with status 1 and a one-line message naming
the notebook and the cell on the first error (an exception in a cell, a cell timeout, a kernel
that died). Nothing is written for a notebook that failed.

``tests/test_tutorials.py`` imports :func:`execute` from this file, so the test and this command
run the notebooks the same way:

- the working directory is the notebook's own folder (a notebook reads its files relative to it);
- the kernel is ipykernel's native ``python3`` kernel, started with the Python running this code
  (``sys.executable``), never a kernel spec installed elsewhere that may point to another Python;
- each cell has a timeout (:data:`CELL_TIMEOUT` seconds unless told);
- timing metadata is not recorded, so re-running changes only the outputs.
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
import zmq
from ipykernel.kernelspec import RESOURCES, get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from traitlets import default

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 300  # seconds for one cell; the notebooks aim for well under 30 s in all
KERNEL = "python3"


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell."""


class _NativeKernelSpecs(KernelSpecManager):
    """Resolve ``python3`` to ipykernel's own spec for *this* interpreter (sys.executable)."""

    def get_kernel_spec(self, kernel_name):
        if kernel_name == KERNEL:
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


class _KernelManager(AsyncKernelManager):
    """nbclient's kernel manager, with the native ``python3`` spec.

    Curve keys encrypt the kernel's sockets when pyzmq supports them (and silence ipykernel's
    warning about plain TCP). nbclient creates, and so also shuts down, this manager.
    """

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self):
        return _NativeKernelSpecs(data_dir=self.data_dir)

    @default("transport_encryption")
    def _transport_encryption_default(self):
        return "auto" if zmq.has("curve") else "disabled"


def _first_line(cell):
    line = next((s for s in cell.source.splitlines() if s.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def execute(path, *, write=False, timeout=CELL_TIMEOUT):
    """Run the notebook at ``path`` in a fresh kernel; return its wall time in seconds.

    write   : rewrite the file with the new outputs (only if every cell succeeded)
    timeout : seconds allowed for each cell
    Raises NotebookError naming the notebook and the cell on any failure.
    """
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(nb, kernel_name=KERNEL, kernel_manager_class=_KernelManager,
                            timeout=timeout, record_timing=False, on_cell_start=on_cell_start,
                            shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(path.parent)}})  # the cwd
    start = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        i = current["index"]
        where = "before the first cell" if i is None else \
            f"cell {i} ({_first_line(nb.cells[i])!r})"
        if isinstance(e, CellExecutionError):
            what = f"{e.ename}: {e.evalue}"
        elif isinstance(e, CellTimeoutError):
            what = f"timed out after {timeout} s"
        else:
            what = f"the kernel died ({e})"
        raise NotebookError(f"{path.name}: {where}: {what}".replace("\n", " ")) from None
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(nb, path)
    return seconds


def notebooks(patterns=()):
    """The tutorial notebooks in order, those whose name contains one of ``patterns`` if given."""
    found = sorted(HERE.glob("[0-9]*.ipynb"))
    if patterns:
        found = [p for p in found if any(pat in p.name for pat in patterns)]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", help="run only notebooks whose name contains one")
    parser.add_argument("--no-write", action="store_true", help="execute, but keep the files")
    parser.add_argument("--timeout", type=float, default=CELL_TIMEOUT, help="seconds per cell")
    args = parser.parse_args(argv)
    try:
        import tinybnn  # noqa: F401  (the kernel runs this same Python, from the same folder)
    except ImportError:
        print("run.py: tinybnn is not importable; install it (pip install -e .) or set "
              "PYTHONPATH to the repository root", file=sys.stderr)
        return 2
    paths = notebooks(args.patterns)
    if not paths:
        print(f"run.py: no notebook in {HERE} matches {args.patterns}", file=sys.stderr)
        return 2
    total = 0.0
    for path in paths:
        try:
            seconds = execute(path, write=not args.no_write, timeout=args.timeout)
        except NotebookError as e:
            print(f"run.py: {e}", file=sys.stderr)
            return 1
        total += seconds
        print(f"{path.name:45s} {seconds:6.1f} s", flush=True)
    print(f"{'total':45s} {total:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
