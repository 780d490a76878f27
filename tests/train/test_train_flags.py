"""``resnetlab train``'s flags that contradict each other or the run they meet: each is refused in one line with
nothing written, or applied and said so; none is silently ignored."""

import shutil

import pytest

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.seeds import fit_seeds

TINY = ["--model", "resnet8", "--epochs", "1", "--batch-size", "16", "--val-split", "0", "--quiet",
        "--no-tensorboard"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data):
    """A one-epoch resnet8 run of the tiny data, copied by the tests that change it."""
    run = tmp_path_factory.mktemp("flags") / "run"
    assert main(["train", "--data", str(tiny_data), "--out", str(run), *TINY]) == 0
    return run


def files_of(folder):
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def one_line_error(capsys, *expected):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def test_resume_and_out_together_are_refused_and_out_is_not_created(finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    capsys.readouterr()
    assert main(["train", "--resume", str(finished_run), "--out", str(other), "--quiet"]) == 2
    one_line_error(capsys, "give --out or --resume, not both")
    assert not other.exists()


def test_seeds_with_resume_are_refused_and_nothing_is_trained_inside_the_run(finished_run, tiny_data, capsys):
    before = files_of(finished_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(finished_run), "--seeds", "0", "--data", str(tiny_data), *TINY]) == 2
    one_line_error(capsys, "--seeds starts new runs; it cannot be combined with --resume")
    assert files_of(finished_run) == before


def test_seeds_into_a_directory_that_holds_one_run_are_refused(finished_run, tiny_data, capsys):
    before = files_of(finished_run)
    capsys.readouterr()
    assert main(["train", "--out", str(finished_run), "--seeds", "0", "--data", str(tiny_data), *TINY]) == 2
    one_line_error(capsys, f"{finished_run} holds a single run; --seeds trains one run per seed")
    assert files_of(finished_run) == before


def test_no_resume_with_seeds_refuses_a_seed_that_holds_a_run(finished_run, tiny_data, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_run, sweep / "seed-1")
    before = files_of(sweep)
    capsys.readouterr()
    assert main(["train", "--out", str(sweep), "--seeds", "0,1", "--no-resume", "--data", str(tiny_data),
                 *TINY]) == 2
    one_line_error(capsys, f"{sweep / 'seed-1'} already holds a run; choose another --out or drop --no-resume")
    assert files_of(sweep) == before and not (sweep / "seed-0").exists()


def test_fit_seeds_without_resume_starts_each_seed_anew(finished_run, tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_run, sweep / "seed-0")
    config = resolve_config("paper", overrides={"model": "resnet8", "data": str(tiny_data), "epochs": 2,
                                                "iterations": 0, "batch_size": 16, "val_split": 0,
                                                "tensorboard": False})
    lines = []
    fit_seeds(config, sweep, [0], log=lines.append, show_progress=False, resume=False)
    assert not any(line.startswith("resuming") for line in lines)
    assert load_checkpoint(list_checkpoints(sweep / "seed-0")[0]).state["progress"]["epoch"] == 2


def test_a_seed_given_twice_is_refused(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "twice"), "--seeds", "0,0", "--data", str(tiny_data), *TINY])
    assert exit_.value.code == 2 and "seed 0 is given twice" in capsys.readouterr().err
    with pytest.raises(UserError, match="seed 3 is given twice"):
        fit_seeds(resolve_config("paper"), tmp_path / "twice", [3, 1, 3])
    assert not (tmp_path / "twice").exists()


def test_concurrent_without_seeds_is_refused(tiny_data, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "one"), "--concurrent", "2", "--data", str(tiny_data),
                 *TINY]) == 2
    one_line_error(capsys, "--concurrent trains the runs of --seeds side by side")
    assert not (tmp_path / "one").exists()


def test_a_config_file_on_an_existing_run_applies_as_flags_do(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (tmp_path / "lr.toml").write_text("lr = 0.05\nepochs = 2\niterations = 0\n")
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--config", str(tmp_path / "lr.toml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resume: overriding lr = 0.1 -> 0.05" in out and "resume: overriding epochs = 1 -> 2" in out
    assert load_checkpoint(list_checkpoints(run)[0]).state["config"]["lr"] == 0.05


@pytest.mark.parametrize("option, text", [
    (["--config", "CONFIG"], "--config CONFIG sets model = 'resnet56', but RUN has 'resnet8'"),
    (["--recipe", "fast"], "--recipe fast sets model = 'resnet20', but RUN has 'resnet8'"),
])
def test_a_recipe_or_config_that_changes_a_fixed_field_of_a_run_is_refused(finished_run, tmp_path, capsys, option,
                                                                           text):
    config = tmp_path / "c56.toml"
    config.write_text('lr = 0.5\nmodel = "resnet56"\n')
    option = [str(config) if part == "CONFIG" else part for part in option]
    before = files_of(finished_run)
    capsys.readouterr()
    assert main(["train", "--out", str(finished_run), *option, "--quiet"]) == 2
    err = one_line_error(capsys, text.replace("CONFIG", str(config)).replace("RUN", str(finished_run)))
    assert f"drop {option[0]} to continue the run as it is" in err
    assert files_of(finished_run) == before


def test_the_command_that_made_a_run_with_its_recipe_resumes_it(finished_run, tiny_data, capsys):
    capsys.readouterr()
    assert main(["train", "--recipe", "paper", "--data", str(tiny_data), "--out", str(finished_run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "overriding" not in out


def test_a_missing_path_in_resnetlab_data_is_named_with_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "nope"))
    assert main(["train", "--out", str(tmp_path / "run"), *TINY]) == 2
    one_line_error(capsys, f"$RESNETLAB_DATA={tmp_path / 'nope'}: no such path; fix or unset it, or give --data")
    assert not (tmp_path / "run").exists()
