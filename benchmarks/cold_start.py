"""Cold start of the main job: the seconds of numba compilation before its first training step.

``tinybnn compress`` (the README's main job) first trains the paper's Bayesian CNN with the
preset ``authors2019_quick`` (one image per update). Each repeat runs a fresh process with an
empty numba cache (``NUMBA_CACHE_DIR`` a new temporary folder, as on a fresh clone), which
imports tinybnn, builds that network as the job does (``compress.Target.build``) and times

- ``first``: ``fit`` on 20 MNIST images with the preset's settings, compilation included;
- ``again``: the same ``fit`` once more on a fresh network, everything compiled;

``first - again`` is the compilation the main job waits for before it trains; ``import`` is
``import tinybnn.compress``. It prints the median over the repeats and every repeat. Nothing else
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
    t1 = time.perf_counter()
    fit(model, ds.train, **config.fit_kwargs(55000, seed=0, epochs=1))
    times.append(time.perf_counter() - t1)
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
    compile_s = runs[:, 1] - runs[:, 2]
    print(f"import {np.median(runs[:, 0]):.2f} s; first fit {np.median(runs[:, 1]):.2f} s, "
          f"again {np.median(runs[:, 2]):.2f} s; compilation {np.median(compile_s):.2f} s "
          f"(median of {repeats}; each: {', '.join(f'{c:.2f}' for c in compile_s)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
