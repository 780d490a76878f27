"""Using a trained checkpoint: rebuild its model and preprocessing, evaluate a split, classify image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnetlab.data import DeviceLoader, ImageTransform, Normalizer, StreamLoader, load_dataset, split_validation
from resnetlab.data.decode import decode_image
from resnetlab.data.pipeline import stream_splits
from resnetlab.data.stream import load_image
from resnetlab.errors import CheckpointError, DataError
from resnetlab.models import create_model, fold_batchnorm
from resnetlab.models.weights import get_weights, parse_weights_name
from resnetlab.train.checkpoint import STATE_FILE, load_checkpoint, read_state
from resnetlab.train.evaluate import Evaluation, evaluate
from resnetlab.train.precision import autocast_context


STREAM_EVAL_BATCH = 64  # streamed models are ImageNet-sized, and so are their inputs


@dataclass
class TrainedModel:
    model: nn.Module
    normalizer: Normalizer
    classes: list[str]
    image_size: int
    metadata: dict[str, Any]
    source: Path

    @property
    def streamed(self) -> bool:
        """Trained on the streaming path: evaluate and predict through its resize + centre crop, not a squash."""
        return self.metadata.get("pipeline") == "stream"


def weights_source(path: str | Path) -> Path:
    """``path`` itself, or for a name of published weights (``resnet20.cifar10``) their file, hash checked."""
    if not Path(path).exists() and (parsed := parse_weights_name(str(path))):
        published = get_weights(*parsed)
        published.verify()
        return published.path
    return Path(path)


def load_trained(path: str | Path, device: torch.device | str = "cpu", fold_bn: bool = False) -> TrainedModel:
    """A checkpoint (run directory, checkpoint directory, model.safetensors, or published weights such as
    ``resnet20.cifar10``) ready for inference, eval mode;
    ``fold_bn`` merges BatchNorm into the convolutions (faster, same outputs to float rounding; the layer
    responses of the paper's Figure 7 need the BN outputs, so they load without it)."""
    checkpoint = load_checkpoint(weights_source(path), with_state=False)
    meta = checkpoint.metadata
    try:
        classes, image_size = list(meta["classes"]), int(meta["image_size"])
        model = create_model(meta["model"], **meta["model_kwargs"])
        normalizer = Normalizer.from_state_dict({key: torch.tensor(value, dtype=torch.float32)
                                                 if isinstance(value, list) else value
                                                 for key, value in meta["normalizer"].items()})
    except KeyError as error:
        raise CheckpointError(f"{checkpoint.path}: the checkpoint metadata has no {error}; the file was not written "
                              "by resnetlab train, or was edited") from None
    except (TypeError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: unusable checkpoint metadata ({first_line})") from None
    if problem := weights_mismatch(model.state_dict(), checkpoint.model_state):
        raise CheckpointError(f"{checkpoint.path}: the metadata says {meta['model']} ({len(classes)} classes), but "
                              f"the weights do not fit it: {problem}; the file was written for another model")
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: checkpoint does not match its model ({first_line})") from None
    model = fold_batchnorm(model) if fold_bn else model.eval()
    # channels_last, as the training loop runs: faster on CUDA and on a CPU with oneDNN (benchmarks/README.md)
    return TrainedModel(model.to(device, memory_format=torch.channels_last), normalizer, classes, image_size, meta,
                        checkpoint.path)


def weights_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """How a state dict differs from the one a model expects, in words ("" when it fits): the layers only one of
    them has (``layer1.3``, not each of its tensors) and the tensors of another shape."""
    def layers(keys: list[str], where: str) -> str:
        names = list(dict.fromkeys(".".join(key.split(".")[:2 if key.count(".") > 1 else 1]) for key in keys))
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        return f"{len(names)} layer{'s' * (len(names) != 1)} only in the {where} ({', '.join(names[:4])}{more})"

    extra = [key for key in given if key not in expected]
    missing = [key for key in expected if key not in given]
    shapes = [f"{key} is {list(given[key].shape)} in the file, {list(value.shape)} in the model"
              for key, value in expected.items() if key in given and given[key].shape != value.shape]
    problems = ([layers(extra, "file")] if extra else []) + ([layers(missing, "model")] if missing else []) + (
        shapes[:3] + ([f"{len(shapes) - 3} more tensors of another shape"] if len(shapes) > 3 else []))
    return "; ".join(problems)


def evaluate_checkpoint(trained: TrainedModel, data: str | None, split: str = "test",
                        device: torch.device | str = "cpu", batch_size: int = 500, amp: bool = False,
                        val_split: int = 0, seed: int = 0, flip: bool = False) -> Evaluation:
    """Accuracy, loss and confusion matrix of ``split`` ("test", "train" or "val") of a dataset; ``amp``: bf16
    autocast (``precision.choose_precision`` decides it). The batches are ``eval_batches``'."""
    loader = eval_batches(trained, data, split, device, batch_size, val_split, seed)
    return evaluate(trained.model, loader.epoch(0), len(trained.classes), torch.device(device), amp, flip=flip)


def eval_batches(trained: TrainedModel, data: str | None, split: str = "test", device: torch.device | str = "cpu",
                 batch_size: int = 500, val_split: int = 0, seed: int = 0) -> DeviceLoader | StreamLoader:
    """The batches of ``split`` in order, prepared as the run's evaluation prepared them; ``.per_rank`` is their
    number of images. "val" is the run's held-out part of the training set: ``val_split`` images chosen with
    ``seed``, as training chose them; "train" is the rest. A streamed run's batches go through its evaluation
    transform (resize + centre crop), decoded per batch. The data's classes must be the checkpoint's."""
    if trained.streamed:
        if split == "val":
            raise DataError("a streamed run has no validation split here: evaluate --split test or train")
        splits = stream_splits(data, trained.image_size, "none")
        classes = splits.classes
        loader: DeviceLoader | StreamLoader = StreamLoader(
            splits.test if split == "test" else splits.train, min(batch_size, STREAM_EVAL_BATCH), device=device,
            normalizer=trained.normalizer, shuffle=False, drop_last=False, channels_last=True)
    else:
        dataset = split_validation(load_dataset(data, image_size=trained.image_size), val_split, seed=seed)
        classes = dataset.classes
        arrays = {"test": dataset.test, "train": dataset.train, "val": dataset.val}[split]
        if arrays is None:
            raise DataError("this run has no validation split (val_split = 0): evaluate --split test or train")
        loader = DeviceLoader(arrays, batch_size, device=device, normalizer=trained.normalizer, shuffle=False,
                              drop_last=False, channels_last=True)
    if classes != trained.classes:
        raise DataError(class_mismatch(classes, trained.classes))
    return loader


def run_config(source: Path) -> dict[str, Any]:
    """The training config stored beside a checkpoint's weights (in its training state)."""
    folder = source if source.is_dir() else source.parent
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{source}: no training state beside the weights, so the run's validation split is "
                              "unknown; give the run directory or a checkpoint directory")
    return dict(read_state(folder / STATE_FILE).get("config", {}))


def class_mismatch(data_classes: list[str], model_classes: list[str]) -> str:
    """What differs between the data's classes and the checkpoint's, in full (or counted, when many)."""
    def names(items: list[str]) -> str:
        return ", ".join(items) if len(items) <= 12 else f"{', '.join(items[:12])} and {len(items) - 12} more"

    only_data = [c for c in data_classes if c not in model_classes]
    only_model = [c for c in model_classes if c not in data_classes]
    if not only_data and not only_model:
        return (f"the data has the checkpoint's {len(model_classes)} classes in another order (data: "
                f"{names(data_classes)}; checkpoint: {names(model_classes)})")
    return (f"the data's {len(data_classes)} classes differ from the checkpoint's {len(model_classes)}: only in the "
            f"data: {names(only_data) or '-'}; only in the checkpoint: {names(only_model) or '-'}")


@torch.no_grad()
def predict_files(trained: TrainedModel, paths: list[str | Path], top_k: int = 3,
                  amp: bool = False) -> list[dict[str, Any]]:
    """Top-k classes and probabilities for each image file, prepared as the run's evaluation did (resized to the
    model's input size, or for a streamed run resized and centre-cropped); ``amp``: bf16 autocast."""
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"not a file: {path}")
    if trained.streamed:
        transform = ImageTransform.for_eval(trained.image_size, int(trained.metadata["eval_resize"]))
        images = np.stack([load_image(Path(path), transform) for path in paths])
    else:
        images = np.stack([decode_image(str(path), Path(path), trained.image_size) for path in paths])
    device = next((p.device for p in trained.model.parameters()), torch.device("cpu"))  # none: ONNX Runtime
    batch = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)
    with autocast_context(device, amp):
        logits = trained.model(trained.normalizer(batch).contiguous(memory_format=torch.channels_last))
    probabilities = torch.softmax(logits.float(), dim=1)
    k = min(top_k, len(trained.classes))
    values, indices = probabilities.topk(k, dim=1)
    return [{"file": str(path),
             "top": [{"class": trained.classes[i], "probability": p} for p, i in zip(v.tolist(), ix.tolist())]}
            for path, v, ix in zip(paths, values, indices)]
