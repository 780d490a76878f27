"""Published weights: publish a trained run, load it by name (sha256 checked), through torch.hub, and eval it."""

import json
from pathlib import Path

import pytest
import torch

from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.models import create_model
from resnetlab.models import weights as weights_module
from resnetlab.models.weights import INDEX_FILE, PACKAGE_WEIGHTS, file_sha256, get_weights, list_weights, read_index
from resnetlab.train.checkpoint import list_checkpoints, load_checkpoint
from resnetlab.train.config import resolve_config
from resnetlab.train.loop import fit
from resnetlab.train.publish import publish, recipe_of

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.xz"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data):
    config = resolve_config("paper", overrides=dict(model="resnet20", data=str(tiny_data), iterations=0, epochs=1,
                                                    val_split=0, batch_size=16, deterministic=True,
                                                    tensorboard=False))
    run = tmp_path_factory.mktemp("publish") / "resnet20"
    fit(config, run, show_progress=False, log=lambda _: None)
    return run


@pytest.fixture
def weights_dir(tmp_path, monkeypatch, finished_run):
    """The tiny run published into a folder of its own, the only weights searched (not the package's)."""
    monkeypatch.setattr(weights_module, "PACKAGE_WEIGHTS", tmp_path / "no-package-weights")
    folder = tmp_path / "weights"
    publish(finished_run, "tiny", folder, data_description="a tiny test folder", log=lambda _: None)
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(folder))
    return folder


def test_published_weights_load_by_name_and_equal_the_final_checkpoint(finished_run, weights_dir):
    model = create_model("resnet20", weights="tiny")
    final = load_checkpoint(list_checkpoints(finished_run)[0]).model_state
    state = model.state_dict()
    assert state.keys() == final.keys()
    for key in final:
        assert torch.equal(state[key], final[key]), key
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
    assert list_weights() == ["resnet20.tiny"]


def test_the_index_records_hash_recipe_data_accuracy_and_normalization(finished_run, weights_dir):
    record = read_index(weights_dir)["resnet20.tiny"]
    assert record["sha256"] == file_sha256(weights_dir / record["file"])
    assert record["recipe"].startswith("paper with ")
    assert record["data"] == "a tiny test folder"
    assert record["normalization"] == "pixel_mean"
    results = json.loads((finished_run / "results.json").read_text())
    assert record["test_acc"] == pytest.approx(results["final_test_acc"], abs=1e-9)  # final weights, no selection
    metadata = get_weights("resnet20", "tiny").load()[1]
    assert metadata["published"]["config"]["model"] == "resnet20"
    assert metadata["normalizer"]["kind"] == "pixel_mean"  # the per-pixel mean image the net expects
    assert torch.tensor(metadata["normalizer"]["mean"]).shape == (3, 32, 32)


def test_recipe_names_a_config_or_what_differs():
    assert recipe_of(resolve_config("paper", overrides={"model": "resnet56", "seed": 3}).to_dict()) == "paper"
    assert recipe_of(resolve_config("paper", overrides={"lr": 0.05}).to_dict()) == "paper with lr=0.05"


def test_eval_of_published_weights_reproduces_the_recorded_accuracy(weights_dir, tiny_data, capsys):
    assert main(["eval", "resnet20.tiny", "--data", str(tiny_data), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == report["recorded"]["test_acc"]
    assert report["images"] == report["recorded"]["test_images"] == 24


def test_torch_hub_loads_from_a_clone(weights_dir):
    model = torch.hub.load(str(REPO), "resnet20", weights="tiny", source="local")
    expected = create_model("resnet20", weights="tiny")
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    untrained = torch.hub.load(str(REPO), "resnet56", source="local")
    assert sum(p.numel() for p in untrained.parameters()) == 853_018


def test_a_changed_file_is_refused_naming_its_hash(weights_dir):
    path = weights_dir / read_index(weights_dir)["resnet20.tiny"]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        create_model("resnet20", weights="tiny")


def test_unknown_weights_name_what_exists(weights_dir):
    with pytest.raises(UserError, match=r"no published weights 'cifar10' for resnet20; resnet20 has resnet20\.tiny"):
        create_model("resnet20", weights="cifar10")
    with pytest.raises(UserError, match=r"published: resnet20\.tiny"):
        create_model("resnet56", weights="cifar10")
    with pytest.raises(UserError, match="num_classes"):
        create_model("resnet20", weights="tiny", num_classes=100)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_weights_folder_variable_that_names_no_folder_is_refused(tmp_path, monkeypatch, kind):
    """Searching the package's folder alone would load other weights than the ones asked for."""
    target = tmp_path / "my-weights"
    if kind == "file":
        target.write_text("not a folder")
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(target))
    found = "no such folder" if kind == "missing" else "a file, not a folder"
    with pytest.raises(UserError, match=rf"\$RESNETLAB_WEIGHTS={target}: {found}; .*or unset it"):
        create_model("resnet20", weights="cifar10")
    with pytest.raises(UserError, match="RESNETLAB_WEIGHTS"):
        list_weights()


def test_an_empty_weights_folder_is_searched_without_complaint(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "PACKAGE_WEIGHTS", tmp_path / "no-package-weights")
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(tmp_path))
    assert list_weights() == []


@pytest.mark.parametrize("content", [b"[1, 2]", b'"weights"', b"\xff\xfe{}", b'{"format": 0}'])
def test_an_index_that_is_not_a_weights_index_is_one_clear_error(tmp_path, content):
    (tmp_path / INDEX_FILE).write_bytes(content)
    with pytest.raises(UserError, match="weights index"):
        read_index(tmp_path)


def test_an_unfinished_run_is_not_published(finished_run, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="has not finished"):
        publish(tmp_path / "run", "x", tmp_path / "w", log=lambda _: None)


def test_publish_command_and_weights_listing(finished_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "w"
    assert main(["publish", str(finished_run), "--tag", "cli", "--weights-dir", str(folder)]) == 0
    monkeypatch.setenv("RESNETLAB_WEIGHTS", str(folder))
    assert main(["weights"]) == 0
    assert "resnet20.cli" in capsys.readouterr().out
    assert main(["eval", "resnet20.nothing"]) == 2


def test_the_package_index_is_consistent():
    """Every file the package publishes exists with its recorded sha256, says what it was trained on, names no
    path of the machine that published it, and loads by name into the model it records."""
    for name, record in read_index(PACKAGE_WEIGHTS).items():
        assert (PACKAGE_WEIGHTS / record["file"]).is_file(), name
        assert file_sha256(PACKAGE_WEIGHTS / record["file"]) == record["sha256"], name
        assert record["data"] and record["recipe"] and record["trained_on"] and 0 < record["test_acc"] <= 1, name
        assert "/" not in record["data_source"], name
        model = create_model(record["model"], weights=record["tag"])
        assert sum(p.numel() for p in model.parameters()) == record["params"], name
        assert get_weights(record["model"], record["tag"]).load()[1]["published"]["config"]["model"] == record["model"]
    assert (PACKAGE_WEIGHTS / INDEX_FILE).is_file()


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.exists(), reason=f"{ARCHIVE} not present")
@pytest.mark.parametrize("name", sorted(read_index(PACKAGE_WEIGHTS)))
def test_eval_of_each_package_weight_reproduces_its_recorded_accuracy(name, capsys):
    """What the README promises: `resnetlab eval resnet20.cifar10 --data <the JPEG archive>` gives the number
    the index records, exactly (the same fp32, BatchNorm-folded evaluation on the CPU)."""
    assert main(["eval", name, "--data", str(ARCHIVE), "--device", "cpu", "--amp", "off", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == report["recorded"]["test_images"] == 10_000
    assert report["accuracy"] == report["recorded"]["test_acc"]


def test_a_published_file_can_be_published_again_elsewhere_keeping_its_record(weights_dir, tmp_path, tiny_data):
    """What a GPU session's files go through: measured again on this machine's CPU, recipe and data kept."""
    first = read_index(weights_dir)["resnet20.tiny"]
    assert first["data_source"] == "tiny"  # the folder's name, not a path of the machine that published it
    with pytest.raises(UserError, match="give that data with --data"):
        publish(weights_dir / first["file"], "tiny", tmp_path / "again", log=lambda _: None)
    again = publish(weights_dir / first["file"], "tiny", tmp_path / "again", data=str(tiny_data), log=lambda _: None)
    assert again.record["test_acc"] == first["test_acc"] and again.record["eval_device"] == "cpu"
    assert again.record["recipe"] == first["recipe"] and again.record["data"] == first["data"]
    assert again.record["training_final_test_acc"] == first["training_final_test_acc"]
    for key, value in again.load()[0].items():
        assert torch.equal(value, get_weights("resnet20", "tiny").load()[0][key]), key
