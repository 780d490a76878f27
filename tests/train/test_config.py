"""Recipes as data, overrides in order, and refusal of bad values."""

import tomllib

import pytest

from resnetlab.train.config import TrainConfig, recipe_names, resolve_config, to_toml


def test_recipes_exist_and_validate():
    assert {"paper", "keras", "fast"} <= set(recipe_names())
    for name in recipe_names():
        resolve_config(name)


def test_keras_recipe_is_the_tutorial():
    config = resolve_config("keras")
    assert (config.optimizer, config.lr, config.batch_size, config.epochs) == ("adam", 1e-3, 32, 200)
    assert config.l2 == 1e-4 and config.weight_decay == 0.0  # coupled L2 in the loss, not decoupled decay
    assert config.select_on == "test" and config.val_split == 0 and config.model == "keras_resnet20v1"
    assert config.plateau_factor == pytest.approx(0.1 ** 0.5) and config.plateau_min_lr == 0.5e-6


def test_precedence_recipe_then_file_then_flags(tmp_path):
    file = tmp_path / "run.toml"
    file.write_text('lr = 0.05\nbatch_size = 64\nschedule = "cosine"\n')
    config = resolve_config("paper", file, {"batch_size": 32})
    assert (config.lr, config.batch_size, config.schedule, config.momentum) == (0.05, 32, "cosine", 0.9)


@pytest.mark.parametrize("text, message", [("learning_rate = 0.1\n", "unknown config key 'learning_rate'"),
                                           ('lr = "fast"\n', "must be float"),
                                           ("lr = -0.1\n", "lr must be positive"),
                                           ("batch_size = 0\n", "batch size must be positive"),
                                           ("lr = \n", "not valid TOML")])
def test_bad_config_file_refused_with_its_name(tmp_path, text, message):
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ValueError, match=message):
        resolve_config("paper", file)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown recipe 'papr'.*fast, keras, paper"):
        resolve_config("papr")


def test_resolved_config_round_trips_through_toml():
    config = resolve_config("keras", overrides={"seed": 3, "data": 'C:\\data "x"'})
    assert TrainConfig(**tomllib.loads(to_toml(config.to_dict()))) == config


def test_epochs_or_iterations_define_length():
    assert TrainConfig(iterations=0, epochs=3).total_steps(100) == 300
    assert TrainConfig(iterations=250, epochs=0).num_epochs(100) == 3
