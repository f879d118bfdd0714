"""The jobs behind the command line: each takes a commented options dataclass (from which
``tinybnn/cli.py`` derives its ``--options``), calls the library's procedures, and writes what
they return to an output folder. The library itself writes no files except model files
(``tinybnn/io.py``).

========================  =====================================================================
module                    command
========================  =====================================================================
``jobs/train.py``         ``tinybnn train`` and ``tinybnn evaluate``
``jobs/compress.py``      ``tinybnn compress`` (the main job), with ``jobs/report.py`` (report.md)
``jobs/sweep.py``         ``tinybnn sweep``
``jobs/uncertainty.py``   ``tinybnn uncertainty``
``jobs/common.py``        what they share: options, output folders, JSON
========================  =====================================================================
"""
