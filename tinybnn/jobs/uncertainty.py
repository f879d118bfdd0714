"""``tinybnn uncertainty``: the measurements of :mod:`tinybnn.robustness` and
:mod:`tinybnn.uncertainty` on a Bayesian and a vanilla network, written to an output folder.

Writes into ``options.out``::

    uncertainty.json   every number: the models, the summaries on the clean test images, noise,
                       FGSM (untargeted and targeted), out-of-distribution AUROCs, calibration,
                       the Monte Carlo comparison, the authors' reported figures, the options
    noise.png          accuracy and mean predictive variance against the noise std
    fgsm.png           accuracy and targeted success rate against eps
    ood.png            histograms of each uncertainty score, in- against out-of-distribution
    reliability.png    the reliability diagram with each network's ECE
    monte_carlo.png    Monte Carlo summaries against the propagated ones, against S

Give both ``--bayes-model`` and ``--vanilla-model`` (files written by ``tinybnn train``), or
neither: then a quick pair is trained first with :func:`tinybnn.jobs.train.train_run` (the paper's
CNN with ``--quick-kernels`` kernels on ``--quick-subset`` training images for
``--quick-epochs`` epochs with the ``--quick-preset`` schedule), written to
``OUT/quick_bayes`` and ``OUT/quick_vanilla``.
"""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import data, dataset_files, io
from ..errors import ConfigError
from ..evaluate import predict
from ..monte_carlo import mc_agreement, mc_predictive
from ..robustness import (DEFAULT_EPSILONS, DEFAULT_STDS, MAX_EPS, MAX_STD, TARGETS,
                         check_levels, fgsm, noise_robustness, ood_detection)
from ..uncertainty import calibration, summary_table
from .common import dataset_field, option, prepare_output, write_json
from .train import TrainOptions, train_run

#: The authors' released runs (docs/PAPER.md; later code, N = 32, MNIST), in percent.
AUTHORS_REPORTED = {
    "source": "the authors' later code, N = 32, MNIST (docs/PAPER.md); not measured here",
    "noise": {"std": [0.1, 0.2, 0.3, 0.4, 0.5], "vdp": [97.6, 96.9, 94.0, 86.7, 76.8],
              "deterministic": [97.4, 89.3, 77.2, 64.4, 50.9]},
    "fgsm_targeted": {"epsilon": [0.05, 0.1, 0.15], "vdp": [96.7, 94.4, 91.9],
                      "deterministic": [94.2, 76.4, 55.0]},
}

#: Pseudo-dataset name for out-of-distribution images drawn uniformly in [0, 1] (seeded).
UNIFORM = "uniform"


def _floats(text):
    return ",".join(f"{v:g}" for v in text)


@dataclass
class UncertaintyOptions:
    """Everything ``tinybnn uncertainty`` needs."""

    bayes_model: str = field(default="", metadata=option(
        "the Bayesian model file (from 'tinybnn train'); with --vanilla-model, or leave both "
        "empty to train a quick pair"))
    vanilla_model: str = field(default="", metadata=option(
        "the vanilla model file (from 'tinybnn train --vanilla')"))
    dataset: str = dataset_field("in-distribution test set (the models' input shape)")
    ood_dataset: str = field(default="fashion_mnist", metadata=option(
        "out-of-distribution test set of the same image shape, or 'uniform' (uniform noise "
        "images)"))
    test_subset: int = field(default=2000, metadata=option(
        "test images used (class-balanced, seeded), also the number of OOD images; 0 for all"))
    noise_stds: str = field(default=_floats(DEFAULT_STDS), metadata=option(
        f"standard deviations of the additive Gaussian noise, comma-separated, in [0, "
        f"{MAX_STD:g}]"))
    epsilons: str = field(default=_floats(DEFAULT_EPSILONS), metadata=option(
        f"FGSM step sizes, comma-separated, in [0, {MAX_EPS:g}]"))
    target: str = field(default="next", metadata=option(
        "target of the targeted FGSM: next ((label + 1) mod K) or least_likely (the clean "
        "prediction's least likely class)", choices=TARGETS))
    clip: bool = field(default=True, metadata=option(
        "clip perturbed images to [0, 1] (pixels of the shipped sets lie there)"))
    bins: int = field(default=15, metadata=option("equal-width confidence bins of the ECE"))
    mc_samples: int = field(default=100, metadata=option(
        "Monte Carlo weight samples S for the comparison with the propagated moments (0: skip)"))
    mc_images: int = field(default=500, metadata=option(
        "test images of the Monte Carlo comparison (a seeded random choice)"))
    quick_kernels: int = field(default=32, metadata=option(
        "quick pair (no model files given): conv kernels N"))
    quick_subset: int = field(default=10000, metadata=option(
        "quick pair: training images (class-balanced, seeded; 0 for all)"))
    quick_epochs: int = field(default=3, metadata=option("quick pair: epochs"))
    quick_preset: str = field(default="tinybnn", metadata=option(
        "quick pair: training preset (its batch size, learning rates and initial variances)"))
    seed: int = field(default=0, metadata=option(
        "seed of the subsets, the noise, the Monte Carlo draws and a quick pair"))
    out: str = field(default="runs/uncertainty", metadata=option("output folder"))
    progress: bool = field(default=True, metadata=option("show progress while training"))

    def checked(self):
        """Parsed and checked: (options, stds list, epsilons list); ConfigError otherwise."""
        stds = check_levels(_split(self.noise_stds, "noise stds"), "noise stds", MAX_STD)
        eps = check_levels(_split(self.epsilons, "epsilons"), "epsilons", MAX_EPS)
        for name in ("test_subset", "mc_samples", "mc_images", "quick_subset"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= 0, found {v!r}")
        for name in ("bins", "quick_kernels", "quick_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be an integer >= 1, found {v!r}")
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, found {self.target!r}")
        if bool(self.bayes_model) != bool(self.vanilla_model):
            raise ConfigError("give both --bayes-model and --vanilla-model, or neither (to "
                              "train a quick pair); found only one")
        if self.dataset not in dataset_files.available():
            raise ConfigError(f"unknown dataset {self.dataset!r}; known: "
                              f"{', '.join(dataset_files.available())}")
        if self.ood_dataset != UNIFORM and self.ood_dataset not in dataset_files.available():
            raise ConfigError(f"unknown OOD dataset {self.ood_dataset!r}; known: "
                              f"{', '.join(dataset_files.available())}, {UNIFORM}")
        return self, stds, eps


def _split(text, what):
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, found {text!r}") from None


def load_classifier(path, *, bayesian):
    """A model file holding a (Bayesian or vanilla) classifier; ConfigError otherwise."""
    if not Path(path).is_file():
        raise ConfigError(f"no model file at {path}")
    model, meta = io.load(path)
    kind = "Bayesian" if bayesian else "vanilla"
    if model.task != "classification":
        raise ConfigError(f"{path} holds a {model.task} network; the uncertainty measurements "
                          f"need a classifier")
    if model.bayesian != bayesian:
        found = "Bayesian" if model.bayesian else "vanilla"
        raise ConfigError(f"{path} should hold a {kind} network, found a {found} one")
    return model, meta


def quick_pair(o, log):
    """Train the Bayesian and vanilla paper CNN; returns the two model paths."""
    paths = []
    for vanilla in (False, True):
        folder = Path(o.out) / ("quick_vanilla" if vanilla else "quick_bayes")
        log(f"training the quick {'vanilla' if vanilla else 'Bayesian'} pair member into {folder}")
        train_run(TrainOptions(model="cnn", kernels=o.quick_kernels, vanilla=vanilla,
                               dataset=o.dataset, subset=o.quick_subset or None,
                               preset=o.quick_preset, epochs=o.quick_epochs, seed=o.seed,
                               out=str(folder), progress=o.progress))
        paths.append(str(folder / "model.npz"))
    return paths


def _images(name, model, n, seed, shape):
    """Test images of ``name`` (or uniform noise) in the model's dtype: (x, y or None)."""
    dtype = model.dtype.type
    if name == UNIFORM:
        x = np.random.default_rng(seed).random((n,) + tuple(shape)).astype(dtype)
        return x, None
    ds = data.load(name, test_subset=n or None, seed=seed, dtype=dtype)
    if ds.test.x.shape[1:] != tuple(shape):
        raise ConfigError(f"the models take images of shape {tuple(shape)}, {name} has "
                          f"{ds.test.x.shape[1:]}")
    return ds.test.x, ds.test.y


def _model_entry(path, model, meta, x, y):
    mean, cov = predict(model, x)
    opts = meta.get("options", {})
    return {"path": str(path), "bayesian": model.bayesian, "spec": model.spec(),
            "trained": {k: opts.get(k) for k in ("model", "kernels", "dataset", "subset",
                                                 "preset", "epochs", "batch_size", "lr",
                                                 "final_lr", "seed", "dtype")},
            "test_accuracy": float((mean.argmax(axis=1) == y).mean()),
            "summaries": summary_table(mean, cov, y)}, (mean, cov)


def _without_arrays(ood):
    return {k: v for k, v in ood.items() if k not in ("scores_in", "scores_out")}


def uncertainty_run(options, log=print):
    """Measure, write uncertainty.json and the PNGs; returns the JSON dict."""
    o, stds, eps = options.checked()
    out = prepare_output(o.out)
    start = time.perf_counter()
    if o.bayes_model:
        paths = [o.bayes_model, o.vanilla_model]
    else:
        paths = quick_pair(o, log)
    models = {"bayes": load_classifier(paths[0], bayesian=True),
              "vanilla": load_classifier(paths[1], bayesian=False)}
    shapes = {m.input_shape for m, _ in models.values()}
    if len(shapes) != 1:
        raise ConfigError(f"the two models take different input shapes: {sorted(shapes)}")
    shape = shapes.pop()

    result = {"options": asdict(o), "dataset": o.dataset, "ood_dataset": o.ood_dataset,
              "models": {}, "noise": {}, "fgsm": {"untargeted": {}, "targeted": {}}, "ood": {},
              "calibration": {}, "reference": AUTHORS_REPORTED}
    ood_raw, propagated = {}, {}
    for key, (model, meta) in models.items():
        x, y = _images(o.dataset, model, o.test_subset, o.seed, shape)
        x_ood, _ = _images(o.ood_dataset, model, o.test_subset or len(x), o.seed, shape)
        log(f"{key}: {len(x)} test images of {o.dataset}, {len(x_ood)} of {o.ood_dataset}")
        entry, (mean, cov) = _model_entry(paths[0 if key == "bayes" else 1], model, meta, x, y)
        result["models"][key] = entry
        propagated[key] = (x, y, mean, cov)
        result["calibration"][key] = calibration(mean, y, o.bins)
        log(f"{key}: noise")
        result["noise"][key] = noise_robustness(model, x, y, stds, seed=o.seed, clip=o.clip)
        log(f"{key}: FGSM")
        result["fgsm"]["untargeted"][key] = fgsm(model, x, y, eps, clip=o.clip)
        result["fgsm"]["targeted"][key] = fgsm(model, x, y, eps, targeted=True,
                                               target=o.target, clip=o.clip)
        log(f"{key}: out-of-distribution")
        ood_raw[key] = ood_detection(model, x, x_ood)
        result["ood"][key] = _without_arrays(ood_raw[key])
    result["n_test"] = len(propagated["bayes"][0])
    if o.mc_samples:
        log(f"Monte Carlo predictive: {o.mc_samples} weight samples on {o.mc_images} images")
        result["monte_carlo"] = monte_carlo(models["bayes"][0], propagated["bayes"], o)
    result["seconds"] = time.perf_counter() - start
    write_json(out / "uncertainty.json", result)
    _figures(result, ood_raw, out, o)
    return result


def summary(result):
    """What ``tinybnn uncertainty`` prints of a result: each model's test accuracy, accuracy
    under noise (one per std), out-of-distribution AUROC (one per summary) and ECE."""
    return {k: {"test_accuracy": v["test_accuracy"],
                "noise_accuracy": result["noise"][k]["accuracy"],
                "ood_auroc": result["ood"][k]["auroc"], "ece": result["calibration"][k]["ece"]}
            for k, v in result["models"].items()}


def monte_carlo(model, prop, o):
    """Monte Carlo against propagated summaries on ``o.mc_images`` test images, with costs."""
    x, y, mean, cov = prop
    rng = np.random.default_rng(o.seed)
    n = min(o.mc_images, len(x)) if o.mc_images else len(x)
    pick = np.sort(rng.choice(len(x), size=n, replace=False))
    t0 = time.perf_counter()
    vdp = predict(model, x[pick])
    t_vdp = time.perf_counter() - t0
    marks = [s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if s < o.mc_samples]
    t0 = time.perf_counter()
    mc = mc_predictive(model, x[pick], o.mc_samples, rng, checkpoints=marks)
    t_mc = time.perf_counter() - t0
    out = mc_agreement(vdp, mc, y[pick])
    out.update({"n_images": int(n), "seconds_propagated": t_vdp, "seconds_mc": t_mc,
                "mc_samples": int(o.mc_samples),
                "propagated_accuracy": float((vdp[0].argmax(axis=1) == y[pick]).mean())})
    return out


def _figures(result, ood_raw, out, o):
    """Write the PNGs of a run (matplotlib is imported only here, when there is a figure)."""
    from .. import plots, plots_uncertainty as pu

    kinds = ("bayes", "vanilla")
    on_mnist = o.dataset == "mnist"
    ref = AUTHORS_REPORTED
    noise_ref = ({"authors' VDP (reported)": (ref["noise"]["std"], ref["noise"]["vdp"]),
                  "authors' deterministic (reported)": (ref["noise"]["std"],
                                                        ref["noise"]["deterministic"])}
                 if on_mnist else None)
    f = ref["fgsm_targeted"]
    fgsm_ref = ({"authors' VDP, targeted (reported)": (f["epsilon"], f["vdp"]),
                 "authors' deterministic, targeted (reported)": (f["epsilon"],
                                                                 f["deterministic"])}
                if on_mnist else None)
    n = result["n_test"]
    plots.save(pu.noise_robustness({k: result["noise"][k] for k in kinds}, noise_ref,
                                      title=f"Additive Gaussian noise, {o.dataset} "
                                            f"({n} test images)"), out / "noise.png")
    plots.save(pu.fgsm_robustness(result["fgsm"], fgsm_ref,
                                     title=f"FGSM, {o.dataset} ({n} test images)"),
               out / "fgsm.png")
    plots.save(pu.ood_histograms(ood_raw, in_name=o.dataset, out_name=o.ood_dataset),
               out / "ood.png")
    plots.save(pu.reliability_diagram(result["calibration"],
                                         title=f"Reliability diagram, {o.dataset}"),
               out / "reliability.png")
    if "monte_carlo" in result:
        plots.save(pu.mc_convergence(result["monte_carlo"]), out / "monte_carlo.png")
