"""tinybnn.presets: the named recipes, how a run's overrides resolve them, and every refusal."""

import math

import pytest

from tinybnn import presets
from tinybnn.errors import ConfigError
from tinybnn.losses import REGULARISERS


def test_every_preset_is_a_valid_config_under_its_own_name():
    for name, config in presets.PRESETS.items():
        assert config.name == name
        assert config.regulariser in REGULARISERS
        presets.check(config)                      # raises on an impossible setting
        assert presets.resolve(name) == config     # no override: the preset itself


def test_the_authors_recipe_is_the_one_docs_paper_md_describes():
    c = presets.get("authors2019")
    assert (c.regulariser, c.epochs, c.batch_size, c.lr, c.final_lr) == \
        ("authors2019", 10, 1, 1e-4, None)
    assert c.rho_init == (-12.0, -2.2)
    quick = presets.get("authors2019_quick")
    assert (quick.epochs, quick.batch_size, quick.lr, quick.final_lr, quick.last_variance) == \
        (2, 1, 1e-3, 1e-4, 1.0)


def test_overrides_replace_only_what_is_given():
    c = presets.resolve("authors2019", epochs=3, lr=None, rho_init="-5,-1", reg_scale=2.0)
    base = presets.get("authors2019")
    assert (c.epochs, c.lr, c.rho_init, c.reg_scale) == (3, base.lr, (-5.0, -1.0), 2.0)
    assert c.batch_size == base.batch_size and c.regulariser == base.regulariser


def test_last_variance_zero_means_drawn_like_the_others():
    assert presets.get("authors2019_quick").last_variance == 1.0
    assert presets.resolve("authors2019_quick", last_variance=0).last_variance is None
    assert presets.resolve("authors2019_quick", last_variance=0.5).last_variance == 0.5


def test_the_objective_carries_the_config():
    c = presets.resolve("elbo_beta", reg_scale=0.5)
    o = c.objective(1234)
    assert (o.regulariser, o.n_train, o.nll_beta, o.reg_scale) == ("elbo", 1234, 1.0, 0.5)
    assert presets.get("authors_later").objective(10).nll_scale == 0.5


@pytest.mark.parametrize("epochs, snapshots", [(2, 4), (4, 4), (5, 1), (10, 1)])
def test_short_trainings_record_the_kernels_four_times_an_epoch(epochs, snapshots):
    kw = presets.get("authors2019").fit_kwargs(100, seed=3, epochs=epochs)
    assert kw["snapshots"] == snapshots and kw["epochs"] == epochs and kw["seed"] == 3


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known presets: authors2019"):
        presets.get("nope")
    with pytest.raises(ConfigError, match=r"unknown training settings \['epoch'\]; known: "):
        presets.resolve("authors2019", epoch=3)


@pytest.mark.parametrize("override, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1, found 0"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1, found 2.5"),
    ({"batch_size": 0}, "batch size must be an integer >= 1, found 0"),
    ({"lr": -1e-3}, "the learning rate must be a positive number, found -0.001"),
    ({"lr": math.inf}, "the learning rate must be a positive number, found inf"),
    ({"final_lr": 0.0}, "the final learning rate must be a positive number, found 0.0"),
    ({"nll_beta": 1.5}, r"nll beta must lie in \[0, 1\], found 1.5"),
    ({"last_variance": -1.0}, "last variance must be a positive variance, found -1.0"),
    ({"reg_scale": -2.0}, "reg scale must be a number >= 0, found -2.0"),
    ({"rho_rate": 0.0}, "rho rate must be a positive number, found 0.0"),
])
def test_impossible_settings_are_refused_naming_what_was_found(override, message):
    with pytest.raises(ConfigError, match=message):
        presets.resolve("authors2019", **override)


@pytest.mark.parametrize("text", ["-2", "-1,-3", "a,b", "-1,-2,-3"])
def test_a_bad_rho_range_is_refused(text):
    with pytest.raises(ConfigError, match=r"rho init must be 'low,high' with low <= high, found"):
        presets.rho_range(text, "authors2019")


def test_rho_range_reads_text_pairs_and_the_presets_default():
    assert presets.rho_range("-3,-1", "elbo") == (-3.0, -1.0)
    assert presets.rho_range((-3, -1), "elbo") == (-3.0, -1.0)
    assert presets.rho_range(None, "elbo") == presets.get("elbo").rho_init
