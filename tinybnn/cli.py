"""The ``tinybnn`` command line (also ``python -m tinybnn``).

Each command is two functions side by side:

* ``add_<name>_parser(subparsers)`` declares its options and sets ``run=<name>_command``;
* ``<name>_command(args) -> int`` does the work by calling library functions, and returns the
  exit code.

Adding a command means writing that pair and appending its ``add_..._parser`` to
:data:`COMMANDS`; no other command changes. Commands import what they need inside their
function, so that ``tinybnn --help`` stays fast (no numba compilation, no matplotlib).

Exit codes: 0 success; 2 a usage error or a :class:`~tinybnn.errors.TinyBNNError` (bad input,
bad file, bad option), reported as ONE line ``tinybnn: error: <message>`` on stderr; 130 when
interrupted with Ctrl-C. Any other exception is a bug in tinybnn and keeps its traceback.
"""

import argparse
import json
import os
import sys

from tinybnn import __version__
from tinybnn.errors import DataError, TinyBNNError

PROG = "tinybnn"

DESCRIPTION = """\
tinybnn: self-compression in Bayesian neural networks, by variational density propagation.

The main job is `tinybnn compress`: train the paper's Bayesian CNN on the shipped MNIST (and a
vanilla one with the same budget), then remove the kernels it has learned to switch off, stage
by stage, with plots and a report. `tinybnn COMMAND --help` describes each command."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``tinybnn: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------
# tinybnn data
# --------------------------------------------------------------------------------------------

def add_data_parser(subparsers):
    p = subparsers.add_parser(
        "data", help="list the shipped datasets, where each file was found, check checksums",
        description="List the datasets, where each file was found and, with --verify, whether "
                    "its sha256 matches the one tinybnn expects. Files are looked for in "
                    "$TINYBNN_DATA (if set), then in the installed package, then in the "
                    "source checkout.")
    p.add_argument("--verify", action="store_true",
                   help="hash every file and compare with the expected sha256 "
                        "(exit code 2 if any file is missing or differs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=data_command)


def data_command(args):
    from tinybnn import dataset_files

    rows = dataset_files.status(verify=args.verify)
    if args.json:
        print(json.dumps([{
            "name": r.name, "file": r.file, "found_in": r.place,
            "path": None if r.path is None else str(r.path),
            "expected_sha256": r.expected_sha256, "found_sha256": r.found_sha256,
            "ok": r.ok} for r in rows], indent=2))
    else:
        verdicts = {True: "sha256 ok", False: "MISMATCH", None: "found (not verified)"}
        print(f"{'dataset':<14} {'status':<21} {'found in':<18} path")
        for r in rows:
            verdict = "MISSING" if r.path is None else verdicts[r.ok]
            print(f"{r.name:<14} {verdict:<21} {r.place or '-':<18} {r.path or '-'}")
        if not args.verify:
            print("(run 'tinybnn data --verify' to check the sha256 of each file)")
    bad = [r for r in rows if r.ok is False]
    if bad:
        what = ", ".join(f"{r.name} ({'missing' if r.path is None else 'checksum mismatch'})"
                         for r in bad)
        raise DataError(f"{len(bad)} of {len(rows)} dataset files failed: {what}")
    return 0


# --------------------------------------------------------------------------------------------
# Options derived from a commented dataclass (tinybnn.jobs: TrainOptions and friends)
# --------------------------------------------------------------------------------------------

def add_dataclass_options(parser, cls):
    """One ``--name`` per field of ``cls``, typed from the field, helped from its metadata; its
    own fields first, then those it inherits (the schedule's, tinybnn.jobs.common)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)
                 for f in dataclasses.fields(base)}
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name in inherited):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = meta.pop("help", "")
        kind = hints[f.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        default = f.default
        shown = "the preset's" if default is None else (
            f"{default:.4g}" if isinstance(default, float) else default)
        if base is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=base, default=default,
                                metavar=f.name.upper(), help=f"{help_text} [{shown}]", **meta)


def options_from_args(cls, args):
    """Build ``cls`` from the parsed arguments named like its fields."""
    import dataclasses

    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


# --------------------------------------------------------------------------------------------
# tinybnn train / tinybnn evaluate
# --------------------------------------------------------------------------------------------

def add_train_parser(subparsers):
    from tinybnn.jobs.train import TrainOptions

    p = subparsers.add_parser(
        "train", help="train the paper's CNN or an MLP, Bayesian or vanilla",
        description="Train a network on a shipped dataset and write OUT/model.npz (rewritten "
                    "after every epoch), OUT/metrics.json and OUT/learning_curves.png.")
    add_dataclass_options(p, TrainOptions)
    p.set_defaults(run=train_command)


def train_command(args):
    from tinybnn.jobs.train import TrainOptions, train_run

    metrics = train_run(options_from_args(TrainOptions, args),
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({k: metrics[k] for k in ("test_accuracy", "n_kernels", "n_parameters",
                                               "epochs", "seconds", "preset", "dataset")}))
    print(f"wrote {metrics['options']['out']}/model.npz, metrics.json, learning_curves.png, "
          f"kernel_norms.png", file=sys.stderr)
    return 0


def add_evaluate_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="evaluate a model file on a test set; print metrics as JSON",
        description="Load a model written by 'tinybnn train' (or 'compress') and print its "
                    "test metrics as JSON, with the same keys as metrics.json. The model file "
                    "is named either as MODEL or with --model PATH (as in 'compress' and "
                    "'uncertainty'), not both.")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="path of a model file (.npz); or use --model")
    p.add_argument("--model", dest="model_option", default=None, metavar="PATH",
                   help="path of a model file (.npz), the same as MODEL")
    p.add_argument("--dataset", default=None,
                   help="dataset to evaluate on [the one the model was trained on]")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images (class-balanced, seeded) [all]")
    p.add_argument("--seed", type=int, default=0, help="seed of the test subset [0]")
    p.set_defaults(run=evaluate_command, usage_error=p.error)


def evaluate_command(args):
    from tinybnn.jobs.train import evaluate_run

    if (args.model is None) == (args.model_option is None):
        problem = ("give the model file once, as MODEL or as --model PATH, not both"
                   if args.model is not None else
                   "the model file is required: give it as MODEL or as --model PATH")
        try:
            args.usage_error(problem)        # prints 'tinybnn: error: ...', raises SystemExit(2)
        except SystemExit as stop:           # main() returns exit codes; it does not raise
            return stop.code
    model = args.model if args.model is not None else args.model_option
    metrics = evaluate_run(model, dataset=args.dataset, test_subset=args.test_subset,
                           seed=args.seed)
    print(json.dumps(metrics, indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# tinybnn compress (the main job)
# --------------------------------------------------------------------------------------------

def add_compress_parser(subparsers):
    from tinybnn.jobs.compress import CompressOptions

    p = subparsers.add_parser(
        "compress", help="self-compress the paper's Bayesian CNN, stage by stage (the main job)",
        description="Train the paper's Bayesian CNN (and a vanilla one with the same budget), "
                    "then repeatedly rank its kernels, remove the redundant ones and fine-tune, "
                    "with plots at every stage. Writes OUT/report.json, OUT/report.md, "
                    "OUT/model.npz (the compressed network), OUT/trained.npz (the network "
                    "before compression, for --model) and PNG plots. With no options it runs "
                    "the quick default of the README.")
    add_dataclass_options(p, CompressOptions)
    p.set_defaults(run=compress_command)


def compress_command(args):
    from tinybnn.jobs.compress import CompressOptions, compress_run

    report = compress_run(options_from_args(CompressOptions, args),
                          log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: report[k] for k in ("start_kernels", "final_kernels",
                                              "start_test_accuracy", "final_test_accuracy",
                                              "stop_reason", "seconds")}))
    print(f"wrote {args.out}/report.md, report.json, model.npz"
          f"{'' if args.model else ', trained.npz'} and plots", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# tinybnn sweep (the paper's experiment)
# --------------------------------------------------------------------------------------------

def add_sweep_parser(subparsers):
    from tinybnn.jobs.sweep import SweepOptions

    p = subparsers.add_parser(
        "sweep", help="train Bayesian and vanilla CNNs over a grid of kernel counts, in parallel",
        description="The paper's experiment: train the paper's CNN, Bayesian and vanilla, for "
                    "every kernel count, dataset, preset and seed; count near-zero kernels; "
                    "write OUT/sweep.json and plots. Finished runs are reused.")
    add_dataclass_options(p, SweepOptions)
    p.set_defaults(run=sweep_command)


def sweep_command(args):
    from tinybnn.jobs.sweep import SweepOptions, sweep

    result = sweep(options_from_args(SweepOptions, args))
    print(json.dumps(result["summary"], indent=2))
    return 0


# --------------------------------------------------------------------------------------------
# tinybnn uncertainty
# --------------------------------------------------------------------------------------------

def add_uncertainty_parser(subparsers):
    from tinybnn.jobs.uncertainty import UncertaintyOptions

    p = subparsers.add_parser(
        "uncertainty", help="robustness, out-of-distribution, calibration: Bayesian vs vanilla",
        description="Measure a Bayesian and a vanilla classifier under additive Gaussian noise "
                    "and FGSM (untargeted and targeted), on out-of-distribution images "
                    "(AUROC of each uncertainty summary), for calibration (ECE), and compare "
                    "the propagated moments with a Monte Carlo predictive. Writes "
                    "OUT/uncertainty.json, noise.png, fgsm.png, ood.png, reliability.png and "
                    "monte_carlo.png. Without model files it first trains a quick pair of "
                    "paper CNNs (the --quick-* options).")
    add_dataclass_options(p, UncertaintyOptions)
    p.set_defaults(run=uncertainty_command)


def uncertainty_command(args):
    from tinybnn.jobs.uncertainty import UncertaintyOptions, uncertainty_run

    result = uncertainty_run(options_from_args(UncertaintyOptions, args),
                             log=lambda m: print(m, file=sys.stderr))
    short = {k: {"test_accuracy": v["test_accuracy"]} for k, v in result["models"].items()}
    for k in short:
        short[k]["noise_accuracy"] = result["noise"][k]["accuracy"]
        short[k]["ood_auroc"] = result["ood"][k]["auroc"]
        short[k]["ece"] = result["calibration"][k]["ece"]
    print(json.dumps(short))
    print(f"wrote {args.out}/uncertainty.json and PNG plots", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# tinybnn import
# --------------------------------------------------------------------------------------------

#: The keys of tinybnn.importers.IMPORTERS, spelled out so that `tinybnn --help` need not import
#: the library (tests/test_importers.py checks they agree).
IMPORT_FORMATS = ("authors2019",)


def add_import_parser(subparsers):
    p = subparsers.add_parser(
        "import", help="turn weights trained elsewhere into a tinybnn model file",
        description="Read weights written by other code and write a tinybnn model file "
                    "(metadata: the dataset, the source file and its sha256, what was "
                    "converted). authors2019: the weights pickle of the authors' 2019 TF1 "
                    "code (a list of 6 float32 arrays: conv means HWIO (5, 5, 1, N), conv rho "
                    "(N,), FC means (144 N, 10) in HWC row order, FC rho, FC bias, FC bias rho "
                    "(10,) each; or a dict, keys in tinybnn/importers.py). The pickle is read "
                    "admitting numpy arrays only; the FC bias rho is dropped (tinybnn's biases "
                    "are point values).")
    p.add_argument("format", choices=IMPORT_FORMATS, metavar="FORMAT",
                   help=f"the source's format: {', '.join(IMPORT_FORMATS)}")
    p.add_argument("source", metavar="PKL", help="the file to read")
    p.add_argument("out", metavar="OUT.npz", help="the model file to write (atomically)")
    p.set_defaults(run=import_command)


def import_command(args):
    from tinybnn import io
    from tinybnn.importers import IMPORTERS

    model, meta = IMPORTERS[args.format](args.source)
    io.save(args.out, model, meta)
    for line in import_report(model, meta, args.out):
        print(line)
    return 0


def import_report(model, meta, out):
    """The lines `tinybnn import` prints: what was read, converted, dropped and written."""
    from tinybnn.units import NEAR_ZERO, unit_norms, weight_layers

    got, n = meta["imported"], meta["options"]["kernels"]
    lines = [f"read {got['source']} ({got['format']}, a {got['pickle_form']} of "
             f"{len(got['source_shapes'])} {got['dtype']} arrays, sha256 {got['source_sha256']})"]
    lines += [f"  {c}" for c in got["converted"]]
    lines += [f"  {k} {tuple(got['source_shapes'][k])} dropped: {d['why']} (its values range "
              f"from {d['min']:.3g} to {d['max']:.3g})" for k, d in got["dropped"].items()]
    norms = unit_norms(model[weight_layers(model)[0]])
    low = sorted(norms[norms < NEAR_ZERO])
    lines.append(f"kernels with a mean norm below {NEAR_ZERO:g}: {len(low)} of {n}"
                 + (f" ({', '.join(f'{v:.2g}' for v in low)})" if low else ""))
    lines.append(f"wrote {out}: the Bayesian paper CNN, N = {n}, {model.dtype}, for "
                 f"{meta['options']['dataset']} (try: tinybnn evaluate --model {out})")
    return lines


# --------------------------------------------------------------------------------------------
# The parser and main()
# --------------------------------------------------------------------------------------------

#: One parser-builder per command, in the order ``--help`` lists them.
COMMANDS = [add_compress_parser, add_sweep_parser, add_train_parser, add_evaluate_parser,
            add_uncertainty_parser, add_data_parser, add_import_parser]


def build_parser():
    parser = _Parser(prog=PROG, description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:       # --help, --version (0) and usage errors (2)
        return stop.code if isinstance(stop.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except TinyBNNError as err:
        message = " ".join(str(err).split())       # the contract: one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # tinybnn.checkpoints.Interrupted names the last checkpoint
        detail = getattr(err, "message", "")
        print(f"{PROG}: interrupted{'; ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:          # e.g. `tinybnn data | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
