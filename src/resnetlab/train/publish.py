"""Publish a trained run's final weights into a weights folder (``resnetlab publish RUN_DIR``).

The final step checkpoint is taken (the weights the run's final errors describe: no model selection), its test
accuracy measured again exactly as ``resnetlab eval`` measures it, and the fp32 weights written with a
``published`` record (recipe, config, data, accuracy, where it was measured) next to the checkpoint's own
metadata; ``index.json`` gets the file's sha256. ``models/weights.py`` reads them back.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import resnetlab
from resnetlab.data.sources import NAMED_SOURCES
from resnetlab.errors import UserError
from resnetlab.files import atomic_path, atomic_write_text, check_output_file
from resnetlab.models.weights import (INDEX_FILE, INDEX_FORMAT, PACKAGE_WEIGHTS, PublishedWeights, file_sha256,
                                      read_index)
from resnetlab.train.checkpoint import FORMAT, list_checkpoints, load_checkpoint
from resnetlab.train.config import recipe_names, resolve_config
from resnetlab.train.history import read_history
from resnetlab.train.inference import evaluate_checkpoint, load_trained

# Fields that do not change what is trained (or only where it runs), left out when naming a config's recipe.
NOT_RECIPE = {"model", "seed", "data", "device", "tensorboard", "log_every", "eval_every", "checkpoint_every",
              "keep_checkpoints", "cuda_graphs", "compile", "deterministic", "shortcut"}
BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # state, not parameters
EVAL_SETTINGS = "final weights, whole test split, fp32, BatchNorm folded, channels_last (as resnetlab eval)"


def recipe_of(config: dict[str, Any]) -> str:
    """The recipe a config is (``"paper"``), or the nearest one and what differs (``"fast with lr=0.8"``)."""
    best: tuple[int, str, list[str]] | None = None
    for name in recipe_names():
        values = resolve_config(name).to_dict()
        changed = [f"{key}={config[key]!r}" for key in sorted(values)
                   if key not in NOT_RECIPE and key in config and config[key] != values[key]]
        if best is None or len(changed) < best[0]:
            best = (len(changed), name, changed)
    _, name, changed = best
    return name if not changed else f"{name} with {', '.join(changed)}"


def final_checkpoint_of(source: Path) -> Path:
    """A finished run's last step checkpoint; a checkpoint directory or weights file as given."""
    if (source / "checkpoints").is_dir():
        if not (source / "results.json").exists():
            raise UserError(f"{source} has not finished training (no results.json); finish it first, or name one "
                            "of its checkpoint directories to publish those weights as they are")
        found = list_checkpoints(source, "step")
        if not found:
            raise UserError(f"{source}: no step checkpoint to publish")
        return found[0]
    if not source.exists():
        raise UserError(f"nothing to publish at {source}")
    return source


def data_sha256(data: str) -> str | None:
    path = Path(data)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def portable_data(data: str) -> str:
    """How a published file names its data: a file by its name (its sha256 is recorded beside it), not by a path
    that only exists on the machine that published it; a named dataset (``cifar10``) as it is."""
    path = Path(data)
    return path.name if path.exists() else data


def trained_on(environment: dict[str, Any]) -> str | None:
    """The hardware a run trained on, in words: the GPU, or the processor with its generation and threads."""
    if environment.get("gpu"):
        return str(environment["gpu"])
    if environment.get("device") != "cpu" or not environment.get("cpu_model"):
        return environment.get("device")
    generation = f" ({environment['cpu_generation']})" if environment.get("cpu_generation") else ""
    return f"cpu: {environment['cpu_model']}{generation}, {environment.get('cpu_threads', '?')} threads"


def publish(source: str | Path, tag: str = "cifar10", weights_dir: str | Path | None = None, *,
            data: str | None = None, data_description: str = "", device: str = "cpu", replace: bool = False,
            log=print) -> PublishedWeights:
    """Write ``<model>-<tag>.safetensors`` into ``weights_dir`` (default: the package's) and index it.

    Everything is checked before anything is written: the tag, the folder and its index, the run, the data (by
    measuring on it). Weights already published under the name are kept unless ``replace``. The index is written
    while the new file still has its temporary name, and put back if that file cannot take its place, so the index
    always describes the files beside it."""
    if not tag or not tag.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"a tag is letters, digits, '-' and '_' (e.g. cifar10), got {tag!r}")
    folder = Path(weights_dir) if weights_dir else PACKAGE_WEIGHTS
    index_path = check_output_file(folder / INDEX_FILE)  # and the folder: one, or one that can be made, writable
    index = read_index(folder)
    source = Path(source)
    checkpoint_path = final_checkpoint_of(source)
    checkpoint = load_checkpoint(checkpoint_path, with_state=checkpoint_path.is_dir())
    trained = load_trained(checkpoint_path, device, fold_bn=True)  # refuses metadata or weights that do not fit
    metadata = {key: value for key, value in checkpoint.metadata.items() if key != "published"}
    name, file_name = f"{metadata['model']}.{tag}", f"{metadata['model']}-{tag}.safetensors"
    weights_path = check_output_file(folder / file_name)
    if not replace:
        refuse_to_replace(name, index, weights_path)
    earlier = checkpoint.metadata.get("published", {})
    config = checkpoint.state["config"] if checkpoint.state else earlier.get("config", {})
    stored = metadata.get("data") or None
    data = data or stored
    if data is None:
        raise UserError(f"{checkpoint_path} does not say which data it was trained on; give --data")
    if data == stored and not Path(data).exists() and data.lower() not in NAMED_SOURCES:
        raise UserError(f"{checkpoint_path} was trained on {data}, which is not here; give that data with --data "
                        "PATH to measure its test accuracy")

    log(f"measuring {metadata['model']} on the test split of {data} ({device})")
    result = evaluate_checkpoint(trained, data, "test", device)
    history = read_history(source) if source.is_dir() else []
    last = next((row for row in reversed(history) if not row.get("partial")), {})
    environment_file = source / "environment.json"
    environment = json.loads(environment_file.read_text()) if environment_file.exists() else {}
    named_data = portable_data(str(data))
    metadata["data"] = named_data
    config = {**config, "data": named_data} if "data" in config else config
    record = {
        "model": metadata["model"], "tag": tag, "model_kwargs": metadata.get("model_kwargs", {}),
        "params": sum(t.numel() for k, t in checkpoint.model_state.items() if not k.endswith(BATCHNORM_BUFFERS)),
        "recipe": recipe_of(config) if config else earlier.get("recipe", "unknown"),
        "data": data_description or earlier.get("data", "") or named_data, "data_source": named_data,
        "data_sha256": data_sha256(str(data)) or earlier.get("data_sha256"),
        "normalization": config.get("normalization", earlier.get("normalization", "")),
        "test_acc": result.accuracy, "test_images": result.count, "eval_device": str(device),
        "eval_settings": EVAL_SETTINGS, "steps": metadata.get("step"),
        "training_final_test_acc": last.get("test_acc", earlier.get("training_final_test_acc")),
        "trained_on": trained_on(environment) or earlier.get("trained_on"),
        "precision": environment.get("precision", {}).get("precision") or earlier.get("precision"),
        "published": time.strftime("%Y-%m-%d"), "resnetlab": resnetlab.__version__, "torch": torch.__version__,
    }
    tensors = {key: value.detach().float().contiguous() if value.is_floating_point() else value.contiguous()
               for key, value in checkpoint.model_state.items()}
    published_meta = {**metadata, "published": {**record, "config": config}}
    previous_index = index_path.read_text() if index_path.is_file() else None
    index_written = False
    try:
        with atomic_path(weights_path) as temporary:
            save_file(tensors, temporary, metadata={"format": FORMAT, "resnetlab": json.dumps(published_meta)})
            sha = file_sha256(temporary)
            index[name] = {**record, "file": file_name, "sha256": sha, "bytes": temporary.stat().st_size}
            write_index(index_path, index)
            index_written = True
    except BaseException:
        if index_written and not (weights_path.is_file() and file_sha256(weights_path) == sha):
            restore(index_path, previous_index)
        raise
    log(f"published {name}: {weights_path} (sha256 {sha[:12]}...), test accuracy {100 * result.accuracy:.2f}% "
        f"on {result.count} images, recipe {record['recipe']}")
    return PublishedWeights(metadata["model"], tag, weights_path, sha, index[name])


def refuse_to_replace(name: str, index: dict[str, dict[str, Any]], weights_path: Path) -> None:
    """Published weights are replaced only when asked: the name is taken in the index, or the file is there."""
    if name in index:
        record = index[name]
        accuracy = f"{100 * record['test_acc']:.2f} %, " if isinstance(record.get("test_acc"), (int, float)) else ""
        raise UserError(f"{name} is already published in {weights_path.parent} ({accuracy}recipe "
                        f"{record.get('recipe', 'unknown')}); use another --tag, or --replace to overwrite it")
    if weights_path.exists():
        raise UserError(f"{weights_path} is there but {weights_path.parent / INDEX_FILE} does not list it; move it "
                        "away, or give --replace to overwrite it")


def write_index(path: Path, index: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps({"format": INDEX_FORMAT, "weights": dict(sorted(index.items()))}, indent=1)
                      + "\n")


def restore(index_path: Path, previous: str | None) -> None:
    """Put an index back as it was (or remove it, when there was none)."""
    if previous is None:
        index_path.unlink(missing_ok=True)
    else:
        atomic_write_text(index_path, previous)
