"""Cold start of the main job: the seconds of numba compilation before its first training step.

``tinybnn compress`` (the README's main job) first trains the paper's Bayesian CNN with the
preset ``authors2019_quick`` (one image per update). Each repeat runs a fresh process with an
empty numba cache (``NUMBA_CACHE_DIR`` a new temporary folder, as on a fresh clone), which
imports tinybnn, builds that network as the job does (``compress.Target.build``) and times

- ``first``: ``fit`` on 20 MNIST images with the preset's settings, compilation included;
- ``again``: the same ``fit`` once more on a fresh network, everything compiled;

``first - again`` is the compilation the main job waits for before it trains, in wall time and
in the process's CPU time (on a shared virtual machine the wall time of the same run varies by
20 %; the CPU time less); ``import`` is ``import tinybnn.compress``. It prints the median over the repeats and every repeat. Nothing else
should run on the machine meanwhile::

    python benchmarks/cold_start.py            # 3 repeats
    python benchmarks/cold_start.py 5
"""

import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import time
t0 = time.perf_counter()
from tinybnn import compress, data, presets
from tinybnn.train import fit
t_import = time.perf_counter() - t0
config = presets.resolve("authors2019_quick")
ds = data.load("mnist", subset=20, validation=0.0, seed=0)
target = compress.Target("cnn", ds.train.x.shape[1:], 10)
times = []
for _ in range(2):
    model = target.build(32, config, seed=0)
    t1, c1 = time.perf_counter(), time.process_time()
    fit(model, ds.train, **config.fit_kwargs(55000, seed=0, epochs=1))
    times += [time.perf_counter() - t1, time.process_time() - c1]
print(t_import, *times)
"""


def main(repeats=3):
    runs = []
    env0 = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            res = subprocess.run([sys.executable, "-c", CHILD], env=dict(env0, NUMBA_CACHE_DIR=cache),
                                 check=True, capture_output=True, text=True)
        runs.append([float(v) for v in res.stdout.split()])
    runs = np.array(runs)
    wall, cpu = runs[:, 1] - runs[:, 3], runs[:, 2] - runs[:, 4]
    print(f"import {np.median(runs[:, 0]):.2f} s; first fit {np.median(runs[:, 1]):.2f} s, "
          f"again {np.median(runs[:, 3]):.2f} s; compilation {np.median(wall):.2f} s of wall "
          f"time, {np.median(cpu):.2f} s of CPU time (medians of {repeats}; each: "
          f"{', '.join(f'{w:.2f}/{c:.2f}' for w, c in zip(wall, cpu))})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
