"""The ``tinybnn`` command line (also ``python -m tinybnn``): a thin parser over tinybnn/jobs/.

Each command is two functions side by side:

* ``add_<name>_parser(subparsers)`` declares its options and sets ``run=<name>_command``; for
  the jobs of :data:`tinybnn.jobs.JOBS` it is made by :func:`job_parser`, one option per field
  of the job's options dataclass;
* ``<name>_command(args) -> int`` does the work by calling a job, and returns the exit code.

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
from tinybnn.errors import TinyBNNError

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
    from tinybnn.jobs.data import data_run

    data_run(verify=args.verify, as_json=args.json)
    return 0


# --------------------------------------------------------------------------------------------
# The jobs (tinybnn compress, the main job; sweep, the paper's experiment; train; uncertainty):
# their options derived from a commented dataclass (tinybnn.jobs: TrainOptions and friends)
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


def job_parser(name, run):
    """The parser-builder of ``tinybnn <name>``, a job of :data:`tinybnn.jobs.JOBS` that ``run``
    runs: its texts from there, one option per field of the job's options dataclass."""
    def add_parser(subparsers):
        import importlib

        from tinybnn.jobs import JOBS

        where, help_line, description = JOBS[name]
        module, cls = where.rsplit(".", 1)
        options = getattr(importlib.import_module(f"tinybnn.jobs.{module}"), cls)
        p = subparsers.add_parser(name, help=help_line, description=description)
        add_dataclass_options(p, options)
        p.set_defaults(run=run)

    add_parser.__name__ = add_parser.__qualname__ = f"add_{name}_parser"
    return add_parser


def run_job(job, options, args):
    """Run ``job`` (a function of tinybnn.jobs) on the ``options`` dataclass built from
    ``args``, its log lines on stderr; return what it returns."""
    return job(options_from_args(options, args),
               log=lambda m: print(m, file=sys.stderr, flush=True))


def print_summary(summary, wrote):
    """``summary`` as one JSON line on stdout, then ``wrote <wrote>`` on stderr."""
    print(json.dumps(summary))
    print(f"wrote {wrote}", file=sys.stderr)


def compress_command(args):
    from tinybnn.jobs.compress import CompressOptions, compress_run

    report = run_job(compress_run, CompressOptions, args)
    print_summary({k: report[k] for k in ("start_kernels", "final_kernels", "start_test_accuracy",
                                          "final_test_accuracy", "stop_reason", "seconds")},
                  f"{args.out}/report.md, report.json, model.npz"
                  f"{'' if args.model else ', trained.npz'} and plots")
    return 0


def sweep_command(args):
    from tinybnn.jobs.sweep import SweepOptions, sweep

    result = sweep(options_from_args(SweepOptions, args))
    print(json.dumps(result["summary"], indent=2))
    return 0


def train_command(args):
    from tinybnn.jobs.train import TrainOptions, train_run

    metrics = run_job(train_run, TrainOptions, args)
    print_summary({k: metrics[k] for k in ("test_accuracy", "n_kernels", "n_parameters",
                                           "epochs", "seconds", "preset", "dataset")},
                  f"{metrics['options']['out']}/model.npz, metrics.json, learning_curves.png, "
                  f"kernel_norms.png")
    return 0


def uncertainty_command(args):
    from tinybnn.jobs.uncertainty import UncertaintyOptions, summary, uncertainty_run

    result = run_job(uncertainty_run, UncertaintyOptions, args)
    print_summary(summary(result), f"{args.out}/uncertainty.json and PNG plots")
    return 0


add_compress_parser = job_parser("compress", compress_command)
add_sweep_parser = job_parser("sweep", sweep_command)
add_train_parser = job_parser("train", train_command)
add_uncertainty_parser = job_parser("uncertainty", uncertainty_command)


# --------------------------------------------------------------------------------------------
# tinybnn evaluate
# --------------------------------------------------------------------------------------------

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
    from tinybnn.jobs.imports import import_run

    import_run(args.format, args.source, args.out)
    return 0


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
