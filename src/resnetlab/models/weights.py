"""Published trained weights, by name: ``create_model("resnet56", weights="cifar10")``.

A published file is a resnetlab checkpoint's ``model.safetensors`` (fp32 weights; metadata: the model and its
options, classes, image size, the normalization the net expects) with a ``published`` record added: the recipe
and full config it was trained with, the data (the JPEG copy of CIFAR-10 for the nets of the GPU evidence plan),
the test accuracy of the final weights (no model selection) and where it was measured. ``index.json`` beside the
files lists them with their sha256, which every load checks. Names follow timm's ``model.tag``:
``resnet56.cifar10``.

Folders searched, first match wins: ``$RESNETLAB_WEIGHTS`` (one folder holding an ``index.json``; a path that is
not a folder is refused), then the ``weights`` folder of the package. Files are added by
``resnetlab publish RUN_DIR`` (``train/publish.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from resnetlab.errors import UserError

PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
INDEX_FILE = "index.json"
INDEX_FORMAT = "resnetlab-weights/1"
ENV_VAR = "RESNETLAB_WEIGHTS"


@dataclass(frozen=True)
class PublishedWeights:
    """One entry of an index: ``name`` is ``model.tag``; ``record`` the index's summary of the file."""

    model: str
    tag: str
    path: Path
    sha256: str
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    def verify(self) -> None:
        """Refuse a missing file or one whose sha256 is not the recorded one."""
        if not self.path.is_file():
            raise UserError(f"{self.name}: its file {self.path} is missing; restore it or publish it again")
        found = file_sha256(self.path)
        if found != self.sha256:
            raise UserError(f"{self.name}: {self.path} has sha256 {found}, the index records {self.sha256}: the file "
                            "is damaged or was replaced; restore it or publish it again")

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(state dict, resnetlab metadata of the file), after checking the hash."""
        self.verify()
        with safe_open(self.path, framework="pt") as handle:
            raw = handle.metadata() or {}
        return load_file(self.path), json.loads(raw.get("resnetlab", "{}"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_folders() -> list[Path]:
    """The folders searched for published weights, in order.

    A ``$RESNETLAB_WEIGHTS`` that names no folder is refused, not skipped: searching the package's folder alone
    would load weights other than the ones it was set to find (a typo would give the package's ``resnet20.cifar10``
    in place of one's own)."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return [PACKAGE_WEIGHTS]
    folder = Path(value)
    if not folder.is_dir():
        found = "a file, not a folder" if folder.exists() else "no such folder"
        raise UserError(f"${ENV_VAR}={value}: {found}; point it at a folder of published weights (with an "
                        f"{INDEX_FILE}), or unset it to search the package's own")
    return [folder, PACKAGE_WEIGHTS]


def read_index(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: record}`` of a folder's ``index.json`` (empty when there is none)."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable weights index ({error})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise UserError(f"{path}: not a resnetlab weights index (format {found!r})")
    return dict(index.get("weights", {}))


def list_weights(model: str | None = None) -> list[str]:
    """Published names (``model.tag``), optionally of one model only, from every folder searched."""
    names: list[str] = []
    for folder in weight_folders():
        names += [name for name, record in read_index(folder).items()
                  if name not in names and (model is None or record["model"] == model)]
    return sorted(names)


def get_weights(model: str, tag: str) -> PublishedWeights:
    """The published weights ``tag`` of ``model``; an unknown name fails naming what is published."""
    name = f"{model}.{tag}"
    for folder in weight_folders():
        record = read_index(folder).get(name)
        if record is not None:
            return PublishedWeights(model, tag, Path(folder) / record["file"], record["sha256"], record)
    published = list_weights()
    of_model = [n for n in published if n.startswith(f"{model}.")]
    if of_model:
        hint = f"{model} has {', '.join(of_model)}"
    elif published:
        hint = f"published: {', '.join(published)}"
    else:
        hint = ("none are published yet (the GPU evidence plan trains them: benchmarks/evidence_plan.py; "
                "`resnetlab publish RUN_DIR` adds a trained run)")
    raise UserError(f"no published weights {tag!r} for {model}; {hint}")


def parse_weights_name(text: str) -> tuple[str, str] | None:
    """``resnet56.cifar10`` -> ``("resnet56", "cifar10")``; None for anything else (a path, say)."""
    model, dot, tag = text.partition(".")
    if not dot or not model or not tag or "/" in text or os.sep in text or "." in tag:
        return None
    return model, tag


def load_published(model: nn.Module, weights: PublishedWeights, options: dict[str, Any]) -> dict[str, Any]:
    """Load ``weights`` into ``model`` (built with ``options``) and return the file's metadata.

    The options the weights were trained with (number of classes, shortcut option) must not be overridden."""
    state, metadata = weights.load()
    for key, value in metadata.get("model_kwargs", {}).items():
        if key in options and options[key] != value:
            raise UserError(f"{weights.name} was trained with {key}={value!r}; drop {key}={options[key]!r}")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{weights.name}: the weights do not fit {weights.model} ({first})") from None
    return metadata
