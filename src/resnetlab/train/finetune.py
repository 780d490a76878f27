"""Starting from trained weights (``--init``) and keeping stages fixed (``--freeze``): fine-tuning.

``--init`` takes a torchvision-format state dict (``resnet50-*.pth`` as torchvision's model zoo saves it, a
training checkpoint of torchvision's reference holding it under "model", or the same as .safetensors) or a
resnetlab checkpoint (run directory, checkpoint directory or model.safetensors). The ImageNet ResNets share
torchvision's parameter names, so its weights load as they are. When the classifier's shape differs (1000
ImageNet classes, 10 of yours), it is replaced by a freshly initialised one and the log says so; any other
mismatch is refused. A resnetlab checkpoint records its class names: when they are not this data's (five other
classes of the same count), its classifier would map the features to the wrong names, so it is replaced too;
the same names in another order are reordered to this data's.

``--freeze stem,layer1`` keeps those parts as they are: no gradients, no weight decay, and their BatchNorm
layers stay in evaluation mode (running statistics used and left unchanged), as is usual when fine-tuning
(torchvision's detection models freeze BN the same way).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from resnetlab.errors import CheckpointError, UserError
from resnetlab.train.checkpoint import MODEL_FILE, load_checkpoint
from resnetlab.train.inference import weights_mismatch

CLASSIFIER = ("fc.weight", "fc.bias")
STEM = ("conv1", "bn1")
Log = Callable[[str], None]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a torchvision-format file or a resnetlab checkpoint, never unpickling code."""
    return read_initial_weights(path)[0]


def read_initial_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The tensors of ``path`` and, for a resnetlab checkpoint, the class names its classifier was trained on."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"--init {path}: no such file or directory")
    if path.is_dir() or path.name == MODEL_FILE:
        checkpoint = load_checkpoint(path, with_state=False)
        return checkpoint.model_state, checkpoint.metadata.get("classes")
    try:
        if path.suffix == ".safetensors":
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"--init {path}: cannot read weights from it ({first}); give a state dict saved "
                              "with torch.save or safetensors, or a resnetlab checkpoint") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # torchvision reference checkpoints
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"--init {path}: not a state dict (a mapping of names to tensors)")
    return {key.removeprefix("module."): value for key, value in state.items()}, None  # saved from DDP


def names_text(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" ... ({len(names)})" if len(names) > 5 else "")


def load_initial_weights(model: nn.Module, path: str | Path, log: Log, classes: list[str] | None = None) -> None:
    """Copy the weights of `path` into `model`, replacing the classifier when its shape differs or, where both
    are known, when it was trained on other classes than ``classes`` (this data's, in label order)."""
    state, trained_on = read_initial_weights(path)
    own = model.state_dict()
    replaced = [key for key in CLASSIFIER if key in state and key in own and state[key].shape != own[key].shape]
    if replaced:
        log(f"--init {path}: its classifier has {state['fc.weight'].shape[0]} classes, this data "
            f"{own['fc.weight'].shape[0]}: fc is replaced by a new, randomly initialised layer")
    elif classes and trained_on and trained_on != classes and all(key in state for key in CLASSIFIER):
        if sorted(trained_on) == sorted(classes):
            order = torch.tensor([trained_on.index(name) for name in classes])
            state = {**state, **{key: state[key][order] for key in CLASSIFIER}}
            log(f"--init {path}: the same classes in another order; the classifier's rows are reordered to this "
                "data's")
        else:
            replaced = list(CLASSIFIER)
            log(f"--init {path}: its classifier was trained on {names_text(trained_on)}, this data has "
                f"{names_text(classes)}: fc is replaced by a new, randomly initialised layer")
    state = {key: value for key, value in state.items() if key not in replaced}
    details = weights_mismatch({key: value for key, value in own.items() if key not in replaced}, state)
    if details:
        raise CheckpointError(f"--init {path} does not fit {type(model).__name__} ({details}); is it the same "
                              "model (--model)?")
    model.load_state_dict(state, strict=False)
    log(f"initial weights: {path} ({len(state)} tensors)")


def stage_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The parts ``--freeze`` can name: stem, layer1..layerN, fc."""
    parts = {"stem": [getattr(model, name) for name in STEM if hasattr(model, name)]}
    index = 1
    while hasattr(model, f"layer{index}"):
        parts[f"layer{index}"] = [getattr(model, f"layer{index}")]
        index += 1
    if hasattr(model, "fc"):
        parts["fc"] = [model.fc]
    return parts


def freeze(model: nn.Module, spec: str, log: Log) -> list[str]:
    """Freeze the comma-separated parts of `spec` (e.g. "stem,layer1"); returns their names."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        return []
    parts = stage_modules(model)
    unknown = [name for name in names if name not in parts or not parts[name]]
    if unknown:
        raise UserError(f"--freeze: unknown part {', '.join(unknown)}; this model has {', '.join(parts)}")
    frozen = 0
    for name in names:
        for module in parts[name]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
                frozen += parameter.numel()
            for norm in module.modules():
                if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                    keep_in_eval_mode(norm)
    total = sum(p.numel() for p in model.parameters())
    log(f"frozen: {', '.join(names)} ({frozen:,} of {total:,} parameters; their BatchNorm statistics fixed)")
    return names


def keep_in_eval_mode(module: nn.Module) -> None:
    """Evaluation mode now and after every ``model.train()``."""
    module.eval()
    module.train = lambda mode=True: module  # nn.Module.train calls this on each child


def prepare_model(model: nn.Module, init: str, freeze_spec: str, fresh: bool, log: Log,
                  classes: list[str] | None = None) -> None:
    """``--init`` (only for a fresh run: a resumed one has its own weights) and ``--freeze`` (always)."""
    if init and fresh:
        load_initial_weights(model, init, log, classes)
    freeze(model, freeze_spec, log)
