"""Self-compression as the paper describes it, in memory: train, remove the kernels the network
switched off, retrain, and repeat until no kernel switches off (:func:`self_compress`).

One stage is the chain of :mod:`tinybnn.prune`'s steps::

    rank (||M_k||)  ->  select (the rule: below NEAR_ZERO = 1e-3, the paper's)  ->  remove
      ->  compare (how far the prediction moved)  ->  retrain  ->  measure

and :func:`self_compress` repeats it. Every decision reads the **validation** split: which stage
is kept (its validation accuracy may fall at most ``tolerance`` below the trained network's),
and when to stop. The test split is only measured and reported (``tests/test_compress.py``
changes the test labels and checks that no decision changes).

What the procedure is compared with (the *baselines*):

- the same trained networks pruned by kernel norm to a grid of sizes **without retraining**,
  Bayesian and vanilla (a vanilla network trained on the same data with the same budget);
- the vanilla network **pruned like the Bayesian one**, stage by stage: the same number of its
  lowest-norm kernels removed at each stage, then the same retraining;
- optionally, vanilla networks **retrained from scratch** at each size

(:mod:`tinybnn.baselines` computes the curves).

Retraining is a callable ``retrain(model, stage) -> (model, history)`` (:func:`finetune`
continues from the pruned weights, :func:`from_scratch` trains a new network of the smaller
size), so a notebook can pass its own. :mod:`tinybnn.jobs.compress` writes what this returns.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .architectures import mlp, paper_cnn
from .baselines import baselines
from .errors import ConfigError
from .measure import accuracies, measure
from .prune import compare, rank, remove, select
from .train import fit
from .units import NEAR_ZERO, n_units, unit_norms, unit_record


@dataclass(frozen=True)
class Target:
    """What is compressed: the paper's CNN (its conv kernels) or an MLP (the units of its first
    hidden layer; the other hidden sizes stay fixed).

    kind : "cnn" or "mlp";  input_shape, n_classes : of the data;  rest : the MLP's other
    hidden sizes after the pruned one.
    """

    kind: str
    input_shape: tuple
    n_classes: int
    rest: tuple = ()

    def __post_init__(self):
        if self.kind not in ("cnn", "mlp"):
            raise ConfigError(f"a compression target is 'cnn' or 'mlp', found {self.kind!r}")

    @property
    def layer(self):
        return "conv" if self.kind == "cnn" else "fc1"

    def build(self, n, config, *, bayesian=True, seed=0, dtype=np.float64):
        """A freshly initialised network with ``n`` kernels (units) in the pruned layer, its
        variances initialised as the TrainConfig ``config`` says."""
        kw = dict(bayesian=bayesian, input_shape=self.input_shape, seed=seed, dtype=dtype,
                  rho_range=config.rho_init, last_variance=config.last_variance)
        if self.kind == "cnn":
            return paper_cnn(n, n_classes=self.n_classes, **kw)
        return mlp((int(np.prod(self.input_shape)), n, *self.rest, self.n_classes), **kw)

    def count(self, model):
        """Kernels (units) of the pruned layer."""
        return n_units(model[self.layer])

    def check(self, model, path):
        """Raise ConfigError unless ``model`` (read from ``path``) is of this kind."""
        kinds = [type(layer).__name__ for _, layer in model.layers]
        cnn = (["Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear", "Softmax"],
               ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Softmax"])  # older files
        ok = kinds in cnn if self.kind == "cnn" else (
            kinds[:2] == ["Flatten", "Linear"] and kinds[-1] == "Softmax" and "Conv2d" not in kinds)
        if not ok or not model.bayesian:
            want = "a Bayesian paper CNN (conv -> pool -> relu -> flatten -> fc -> softmax)" \
                if self.kind == "cnn" else "a Bayesian MLP classifier"
            raise ConfigError(f"{path} is not {want}; found layers {' -> '.join(kinds)}")
        if model.input_shape != self.input_shape:
            raise ConfigError(f"{path} takes inputs of shape {model.input_shape}; the data has "
                              f"{self.input_shape}")


# ---------------------------------------------------------------------------------------------
# retraining
# ---------------------------------------------------------------------------------------------


def finetune(ds, config, *, epochs, seed=0, progress=False):
    """``retrain`` that continues training the pruned network from its weights, with
    ``config``'s schedule for ``epochs`` epochs (a new optimiser)."""
    def retrain(model, stage):
        kw = config.fit_kwargs(len(ds.train.y), seed=seed + stage, epochs=epochs,
                               progress=progress)
        return model, fit(model, ds.train, val=ds.val, **kw)
    return retrain


def from_scratch(ds, target, config, *, seed=0, dtype=np.float64, progress=False):
    """``retrain`` that trains a new network of the pruned size from scratch, with
    ``config``'s whole schedule."""
    def retrain(model, stage):
        new = target.build(target.count(model), config, bayesian=model.bayesian, seed=seed,
                           dtype=dtype)
        kw = config.fit_kwargs(len(ds.train.y), seed=seed, progress=progress)
        return new, fit(new, ds.train, val=ds.val, **kw)
    return retrain


# ---------------------------------------------------------------------------------------------
# one stage, and the loop
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How :func:`self_compress` compresses.

    rule, value   : the selection rule of tinybnn.prune.select and its parameter (default: the
                    paper's, remove the kernels with ||M_k||_F below 1e-3)
    criterion     : the ranking (tinybnn.prune.rank); the paper's is "norm"
    max_stages    : at most this many stages after the trained network
    tolerance     : a stage is kept while its validation accuracy is at least the trained
                    network's minus this (a fraction)
    target_kernels: stop once this many kernels or fewer remain (None: no target)
    check_examples: validation images on which the prediction's change on removal is measured
    """

    rule: str = "threshold"
    value: float = NEAR_ZERO
    criterion: str = "norm"
    max_stages: int = 5
    tolerance: float = 0.005
    target_kernels: int | None = None
    check_examples: int = 1000


def stage(model, target, ids, plan, retrain, ds, index, check_x):
    """One stage: rank, select, remove, compare, retrain. Returns (new model, its kernel ids,
    the record) or (None, ids, record) when the rule selects nothing."""
    t0 = time.perf_counter()
    ranking = rank(model, target.layer, plan.criterion)
    sel = select(ranking, plan.rule, plan.value)
    record = {"stage": index, "rule": plan.rule, "value": plan.value, "cutoff": sel.cutoff,
              "selection_note": sel.note, "removed": [int(ids[k]) for k in sel.removed]}
    if not sel.removed:
        return None, ids, record
    norms = unit_norms(model[target.layer])
    record["removed_norms"] = [float(norms[k]) for k in sel.removed]
    smaller = remove(model, target.layer, sel.removed)
    record["change_on_removal"] = vars(compare(model, smaller, check_x))
    record["before_retraining"] = accuracies(smaller, ds)
    new_ids = [ids[k] for k in sel.kept]
    smaller, record["history"] = retrain(smaller, index)
    record["seconds"] = time.perf_counter() - t0
    return smaller, new_ids, record


@dataclass
class CompressResult:
    """What :func:`self_compress` returns.

    stages     : a record per stage (dicts: kernels, their ids, what was removed, the change
                 on removal, the training history, the measurements, accepted); stage 0 is
                 the trained network
    model      : the last accepted network;  kernel_ids : its kernels' ids in the trained one
    trained    : the trained network (stage 0);  vanilla : its vanilla twin, or None
    baselines  : {label: [(kernels, test accuracy)]}
    stop_reason: why the loop ended
    """

    stages: list
    model: object
    kernel_ids: list
    trained: object
    vanilla: object = None
    baselines: dict = field(default_factory=dict)
    stop_reason: str = ""

    @property
    def accepted(self):
        """The records of the accepted stages (stage 0 included)."""
        return [r for r in self.stages if r["accepted"]]


def self_compress(ds, target, config, plan=Plan(), *, retrain, n_kernels=None, trained=None,
                  vanilla=True, seed=0, dtype=np.float64, progress=False, timing_x=None,
                  log=None):
    """Train a network with ``n_kernels`` kernels (or take ``trained``), then compress it stage
    by stage until the rule selects nothing, a stage is rejected on the validation split, the
    target size is reached or ``plan.max_stages`` stages ran; returns a CompressResult.

    ds : a tinybnn.data split set with ``train``, ``val`` (required: the decisions read it)
    and ``test``;  target : a Target;  config : the TrainConfig of the training, which the
    vanilla twin shares (the same data, seed and budget);  retrain : see :func:`finetune`;
    vanilla : also train the vanilla twin and prune it like the Bayesian network;
    timing_x : images on which inference is timed at every stage (None: not timed).
    """
    if ds.val is None:
        raise ConfigError("self-compression decides on a validation split; load the data with "
                          "validation > 0")
    if (trained is None) == (n_kernels is None):
        raise ConfigError("give either n_kernels (to train a network) or trained (a trained "
                          "network), not both or neither")
    say = log or (lambda message: None)
    trained, twin, s0 = _stage0(ds, target, config, plan, trained, n_kernels, vanilla, seed,
                                dtype, progress, timing_x, say)
    check_x = ds.val.x[:plan.check_examples]
    stages, current, current_twin, ids, stop = [s0], trained, twin, s0["kernel_ids"], None
    for k in range(1, plan.max_stages + 1):
        if plan.target_kernels is not None and len(ids) <= plan.target_kernels:
            stop = f"target size reached ({len(ids)} <= {plan.target_kernels} kernels)"
            break
        smaller, new_ids, record = stage(current, target, ids, plan, retrain, ds, k, check_x)
        if smaller is None:
            stop = f"no kernel selected by {plan.rule} (value {plan.value:g}) at stage {k}"
            break
        record.update(kernel_ids=new_ids, **measure(smaller, target.layer, ds, timing_x=timing_x))
        record["accepted"] = record["val_accuracy"] >= s0["val_accuracy"] - plan.tolerance
        if current_twin is not None:
            current_twin, record["vanilla"] = prune_like(current_twin, target, record, retrain,
                                                         ds, check_x, timing_x)
        stages.append(record)
        say(_stage_line(record))
        if not record["accepted"]:
            stop = (f"validation accuracy fell more than {plan.tolerance:g} below the trained "
                    f"network's ({record['val_accuracy']:.4f} < {s0['val_accuracy']:.4f} - "
                    f"{plan.tolerance:g}) at stage {k}")
            break
        current, ids = smaller, new_ids
    else:
        stop = f"max_stages ({plan.max_stages}) reached"
    result = CompressResult(stages, current, ids, trained, twin, stop_reason=stop)
    result.baselines = baselines(result, target, ds)
    say(f"stopped: {stop}")
    return result


def _stage0(ds, target, config, plan, trained, n_kernels, vanilla, seed, dtype, progress,
            timing_x, say):
    """Train the Bayesian network (unless given) and its vanilla twin; the stage-0 record."""
    kw = config.fit_kwargs(len(ds.train.y), seed=seed, progress=progress)
    s0 = {"stage": 0, "removed": [], "history": [], "accepted": True}
    if trained is None:
        trained = target.build(n_kernels, config, seed=seed, dtype=dtype)
        s0["start_units"] = unit_record(trained)
        say(f"training the Bayesian {target.kind} with {n_kernels} kernels/units on "
            f"{len(ds.train.y)} images: preset {config.name}, {config.epochs} epochs of "
            f"batches of {config.batch_size}")
        s0["history"] = fit(trained, ds.train, val=ds.val, **kw)
    twin = None
    if vanilla:
        say("training its vanilla twin with the same data, seed and budget")
        twin = target.build(target.count(trained), config, bayesian=False, seed=seed,
                            dtype=dtype)
        s0["vanilla_history"] = fit(twin, ds.train, val=ds.val, **kw)
    s0.update(kernel_ids=list(range(target.count(trained))),
              **measure(trained, target.layer, ds, timing_x=timing_x))  # measure counts "kernels"
    if twin is not None:
        s0["vanilla"] = measure(twin, target.layer, ds, timing_x=timing_x)
    say(f"stage 0: {s0['kernels']} kernels, {s0['switched_off']} switched off (norm below "
        f"{NEAR_ZERO:g}), validation accuracy {s0['val_accuracy']:.4f}")
    return trained, twin, s0


def _stage_line(r):
    norms = ", ".join(f"{v:.1e}" for v in r["removed_norms"][:5])
    more = ", ..." if len(r["removed"]) > 5 else ""
    return (f"stage {r['stage']}: removed {len(r['removed'])} (norms {norms}{more}); the "
            f"predictive mean moved by {r['change_on_removal']['max_mean_change']:.1e}; "
            f"{r['kernels']} kernels left, {r['switched_off']} switched off after retraining, "
            f"validation accuracy {r['val_accuracy']:.4f}{'' if r['accepted'] else ' (rejected)'}")


def prune_like(twin, target, record, retrain, ds, check_x, timing_x):
    """The vanilla twin's stage: remove as many of its lowest-norm kernels as the Bayesian stage
    ``record`` removed, measure the change and the accuracy, retrain it the same way. Returns
    (the retrained twin, its record)."""
    sel = select(rank(twin, target.layer, "norm"), "count", len(record["removed"]))
    norms = unit_norms(twin[target.layer])
    smaller = remove(twin, target.layer, sel.removed)
    out = {"removed_norms": [float(norms[k]) for k in sel.removed],
           "change_on_removal": vars(compare(twin, smaller, check_x)),
           "before_retraining": accuracies(smaller, ds)}
    smaller, out["history"] = retrain(smaller, record["stage"])
    out.update(measure(smaller, target.layer, ds, timing_x=timing_x))
    return smaller, out
