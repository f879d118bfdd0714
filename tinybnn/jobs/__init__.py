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
``jobs/data.py``          ``tinybnn data`` (the dataset files; it writes nothing)
``jobs/imports.py``       ``tinybnn import`` (a model file from weights trained elsewhere)
``jobs/common.py``        what they share: options, output folders, JSON
========================  =====================================================================

:data:`JOBS` names the options dataclasses of train, compress, sweep and uncertainty and what
``--help`` says of those commands; this module imports nothing, so reading it costs nothing.
``data_run``, ``import_run`` and ``evaluate_run`` take plain arguments instead, parsed by hand.
"""

#: The jobs whose command's options are the fields of their options dataclass: the command's
#: name -> (the dataclass, as "module.Class" in this package; the command's line in ``tinybnn
#: --help``; its description). tinybnn/cli.py builds each parser from this (and the dataclass).
JOBS = {
    "compress": ("compress.CompressOptions",
                 "self-compress the paper's Bayesian CNN, stage by stage (the main job)",
                 "Train the paper's Bayesian CNN (and a vanilla one with the same budget), "
                 "then repeatedly rank its kernels, remove the redundant ones and fine-tune, "
                 "with plots at every stage. Writes OUT/report.json, OUT/report.md, "
                 "OUT/model.npz (the compressed network), OUT/trained.npz (the network "
                 "before compression, for --model) and PNG plots. With no options it runs "
                 "the quick default of the README."),
    "sweep": ("sweep.SweepOptions",
              "train Bayesian and vanilla CNNs over a grid of kernel counts, in parallel",
              "The paper's experiment: train the paper's CNN, Bayesian and vanilla, for "
              "every kernel count, dataset, preset and seed; count near-zero kernels; "
              "write OUT/sweep.json and plots. Finished runs are reused."),
    "train": ("train.TrainOptions", "train the paper's CNN or an MLP, Bayesian or vanilla",
              "Train a network on a shipped dataset and write OUT/model.npz (rewritten "
              "after every epoch), OUT/metrics.json and OUT/learning_curves.png."),
    "uncertainty": ("uncertainty.UncertaintyOptions",
                    "robustness, out-of-distribution, calibration: Bayesian vs vanilla",
                    "Measure a Bayesian and a vanilla classifier under additive Gaussian noise "
                    "and FGSM (untargeted and targeted), on out-of-distribution images "
                    "(AUROC of each uncertainty summary), for calibration (ECE), and compare "
                    "the propagated moments with a Monte Carlo predictive. Writes "
                    "OUT/uncertainty.json, noise.png, fgsm.png, ood.png, reliability.png and "
                    "monte_carlo.png. Without model files it first trains a quick pair of "
                    "paper CNNs (the --quick-* options)."),
}
