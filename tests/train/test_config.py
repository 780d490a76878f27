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
    with pytest.raises(ValueError,
                       match="unknown recipe 'papr'.*cpu, fast, finetune, imagenet, keras, keras-example, paper"):
        resolve_config("papr")


def test_resolved_config_round_trips_through_toml():
    config = resolve_config("keras", overrides={"seed": 3, "data": 'C:\\data "x"'})
    assert TrainConfig(**tomllib.loads(to_toml(config.to_dict()))) == config


def test_epochs_or_iterations_define_length():
    assert TrainConfig(iterations=0, epochs=3).total_steps(100) == 300
    assert TrainConfig(iterations=250, epochs=0).num_epochs(100) == 3


def test_every_field_is_documented_and_has_a_train_flag():
    import argparse
    from dataclasses import fields

    from resnetlab.cli_config import add_config_flags, flag_name

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    text = parser.format_help()
    for spec in fields(TrainConfig):
        assert spec.metadata["help"].strip(), spec.name
        assert flag_name(spec) in text, spec.name


def test_generated_flags_give_only_what_was_typed():
    import argparse

    from resnetlab.cli_config import add_config_flags, add_set_flag, config_overrides

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    add_set_flag(parser)
    args = parser.parse_args(["--no-drop-last", "--milestones", "0.4,0.8", "--wd", "5e-4", "--epochs", "3",
                              "--compile", "--set", "gamma=0.2"])
    assert config_overrides(args) == {"drop_last": False, "milestones": [0.4, 0.8], "weight_decay": 5e-4,
                                      "epochs": 3, "iterations": 0, "compile": True, "gamma": 0.2}
    assert config_overrides(parser.parse_args([])) == {}
    config = resolve_config("paper", overrides=config_overrides(args))
    assert not config.drop_last and config.milestones == [0.4, 0.8] and config.iterations == 0


def test_resume_config_refuses_fixed_fields_and_logs_the_rest():
    from resnetlab.train.resume import FIXED_ON_RESUME, resume_config

    assert {"model", "data", "seed", "batch_size", "val_split"} <= set(FIXED_ON_RESUME)
    stored = TrainConfig(epochs=2, iterations=0).to_dict()
    lines = []
    resumed = resume_config(stored, {"epochs": 5, "model": "resnet20", "lr": 0.05}, lines.append)
    assert resumed.epochs == 5 and resumed.lr == 0.05 and len(lines) == 2
    with pytest.raises(ValueError, match="cannot change model of an existing run"):
        resume_config(stored, {"model": "resnet56"}, lines.append, "runs/x")


def test_resume_config_takes_another_spelling_of_the_stored_data_path(tmp_path, monkeypatch):
    """An experiment given ``--data ../x`` resumes a run that ``resnetlab train`` stored with the absolute path."""
    from resnetlab.train.resume import resume_config

    archive = tmp_path / "data" / "images.tar.xz"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    stored = TrainConfig(data=str(archive)).to_dict()
    lines = []
    assert resume_config(stored, {"data": "../data/images.tar.xz"}, lines.append).data == str(archive)
    assert lines == []
    other = tmp_path / "data" / "other.tar.xz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot change data of an existing run"):
        resume_config(stored, {"data": "../data/other.tar.xz"}, lines.append)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_checkpoints_below_one_is_refused(keep):
    with pytest.raises(ValueError, match=f"keep_checkpoints must be at least 1 .*got {keep}"):
        resolve_config("paper", overrides={"keep_checkpoints": keep})


def test_a_config_file_that_is_a_folder_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=f"config file {tmp_path} is a folder; give a .toml file"):
        resolve_config("paper", tmp_path)


@pytest.mark.parametrize("typed, meant", [("batch-size", "batch_size"), ("learning_rate", "lr"),
                                          ("wd", "weight_decay"), ("strict-size", "strict_image_size"),
                                          ("momentun", "momentum")])
def test_an_unknown_key_suggests_the_one_meant(typed, meant):
    with pytest.raises(ValueError, match=f"command line: unknown config key '{typed}'; did you mean '{meant}'\\?"):
        resolve_config("paper", overrides={typed: 1})


def test_an_unknown_key_without_a_near_one_points_to_the_list():
    with pytest.raises(ValueError, match=r"unknown config key 'zzz' \(`resnetlab train --help` lists every key"):
        resolve_config("paper", overrides={"zzz": 1})
