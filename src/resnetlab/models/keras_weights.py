"""Load the Keras tutorial's weights (a Keras 3 ``.weights.h5`` or ``.keras`` file) into ``keras_resnet_v1/v2``.

A ``.keras`` file is a zip holding ``config.json`` and ``model.weights.h5``; ``model.save_weights`` writes the
same HDF5 alone. In it, each layer of ``model.layers`` is a group ``layers/<group>/vars`` with datasets
``0..n``. The group is named after the layer's class plus a per-class counter in ``model.layers`` order
(``conv2d``, ``conv2d_1``, ...), not after the layer, and h5py lists groups alphabetically (``conv2d_10``
before ``conv2d_2``). ``model.layers`` is the graph's topological order, which is not the order the tutorial
creates its layers in: in ``resnet_v2`` a stage's 1x1 shortcut conv comes before the block's last conv. The
layer's own name (``conv2d_4``: Keras numbers each class's layers as it creates them) is in the ``vars``
group's ``name`` attribute, or, in older files, in ``config.json`` (same order as the groups); we sort each
class by that number, which is the order the PyTorch models register their modules in.

Variables, Keras -> PyTorch:
    Conv2D              kernel (kh, kw, in, out), bias                 -> weight (out, in, kh, kw), bias
    BatchNormalization  gamma, beta, moving_mean, moving_variance      -> weight, bias, running_mean, running_var
    Dense               kernel (in, out), bias                         -> weight (out, in), bias
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnetlab.errors import CheckpointError, UserError

# Keras group prefix -> (Keras class, PyTorch module type, PyTorch tensor names, Keras -> PyTorch axes or None).
KINDS: dict[str, tuple[str, type[nn.Module], tuple[str, ...], tuple[int, ...] | None]] = {
    "conv2d": ("Conv2D", nn.Conv2d, ("weight", "bias"), (3, 2, 0, 1)),
    "batch_normalization": ("BatchNormalization", nn.BatchNorm2d,
                            ("weight", "bias", "running_mean", "running_var"), None),
    "dense": ("Dense", nn.Linear, ("weight", "bias"), (1, 0)),
}
_SUFFIX = re.compile(r"^(?P<prefix>.+?)(?:_(?P<number>\d+))?$")


def _number(name: str, prefix: str) -> int | None:
    """Keras' counter in an automatic name: conv2d -> 0, conv2d_12 -> 12; None for any other name."""
    match = _SUFFIX.match(name)
    return int(match["number"] or 0) if match and match["prefix"] == prefix else None


def _read(h5py: Any, path: Path) -> dict[str, list[tuple[str, list[np.ndarray]]]]:
    """Per Keras class prefix, [(layer name, variables)] in the order Keras created the layers."""
    config = None
    source: Any = path
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            source = io.BytesIO(archive.read("model.weights.h5"))
            if "config.json" in archive.namelist():
                config = json.loads(archive.read("config.json"))
    found: dict[str, list[tuple[int, str | None, list[np.ndarray]]]] = {prefix: [] for prefix in KINDS}
    with h5py.File(source, "r") as f:
        for group_name, group in f["layers"].items():
            variables = group["vars"] if "vars" in group else {}
            prefix = _SUFFIX.match(group_name)["prefix"]
            if prefix not in KINDS:
                if len(variables):
                    raise CheckpointError(f"{path}: layer {group_name!r} has weights that no Keras ResNet has")
                continue
            name = variables.attrs.get("name") if hasattr(variables, "attrs") else None
            arrays = [np.asarray(variables[str(i)][()]) for i in range(len(variables))]
            found[prefix].append((_number(group_name, prefix), name, arrays))
    result = {}
    for prefix, layers in found.items():
        layers.sort(key=lambda layer: layer[0])  # model.layers order
        names = [layer[1] for layer in layers]
        if None in names and config is not None:  # older Keras 3: the names are only in config.json
            names = [layer["config"]["name"] for layer in config["config"]["layers"]
                     if layer["class_name"] == KINDS[prefix][0]]
        numbers = [None if name is None else _number(str(name), prefix) for name in names]
        if len(numbers) != len(layers) or None in numbers:
            raise CheckpointError(f"{path}: cannot tell the order Keras created its {KINDS[prefix][0]} layers in "
                                  "(no automatic layer names); save the model with model.save('name.keras')")
        order = sorted(range(len(layers)), key=numbers.__getitem__)
        result[prefix] = [(str(names[i]), layers[i][2]) for i in order]
    return result


def load_keras_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Copy the weights of a Keras tutorial ResNet file into ``model`` (a ``keras_resnet_v1/v2`` of the same depth).

    Every shape is checked before anything is copied; a missing, corrupt or mismatched file raises
    ``CheckpointError`` naming the file and the first mismatch.
    """
    try:
        import h5py
    except ImportError:
        raise UserError("load_keras_weights needs h5py: pip install 'resnetlab[keras]'") from None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        layers = _read(h5py, path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, zipfile.BadZipFile) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(f"{path}: not a readable Keras weights file ({message})") from None

    copies: list[tuple[torch.Tensor, np.ndarray]] = []
    for prefix, (keras_class, module_type, tensor_names, axes) in KINDS.items():
        modules = [m for m in model.modules() if isinstance(m, module_type)]
        if len(modules) != len(layers[prefix]):
            raise CheckpointError(f"{path}: {len(layers[prefix])} {keras_class} layers in the file, "
                                  f"{len(modules)} {module_type.__name__} modules in the model")
        for index, (module, (name, arrays)) in enumerate(zip(modules, layers[prefix])):
            if len(arrays) != len(tensor_names):
                raise CheckpointError(f"{path}: {keras_class} layer {name!r} has {len(arrays)} variables, "
                                      f"expected {len(tensor_names)}")
            for tensor_name, array in zip(tensor_names, arrays):
                target = getattr(module, tensor_name)
                if axes is not None and tensor_name == "weight" and array.ndim == len(axes):
                    array = array.transpose(axes)
                if target is None or tuple(array.shape) != tuple(target.shape):
                    have = None if target is None else tuple(target.shape)
                    raise CheckpointError(f"{path}: {keras_class} layer {name!r} ({keras_class} #{index}) gives "
                                          f"{tensor_name} {tuple(array.shape)}, the model has {have}")
                copies.append((target, array))
    with torch.no_grad():
        for target, array in copies:
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return model
