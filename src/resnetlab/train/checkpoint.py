"""Checkpoints that cannot run code and cannot be half-written.

A checkpoint is a directory ``checkpoints/step-00012345/`` (or ``best-...``) holding
- ``model.safetensors``: the model's state dict, plus JSON metadata (model name and options, classes, image
  size, normalizer, step) so that eval, predict and export need nothing else;
- ``state.pt``: optimizer, schedule, RNG and progress state, a plain dict of tensors and numbers read back
  with ``torch.load(weights_only=True)``, which refuses pickled code.
Both files are written into a temporary directory that is renamed into place in one step, so a kill or a full
disk leaves either the old checkpoint set or the new one, never a torn one. Older ones are pruned afterwards,
each renamed out of the way before it is deleted, so a kill while pruning cannot leave a torn one either. A
failed write (a full disk) raises CheckpointError saying which checkpoint is still intact.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from resnetlab.errors import CheckpointError
from resnetlab.files import fsync_tree, usual_permissions

FORMAT = "resnetlab-checkpoint/1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
_NAME = re.compile(r"(step|best)-(\d{8})")


@dataclass
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    state: dict[str, Any] | None  # None when only the weights file was given

    @property
    def step(self) -> int:
        return int(self.metadata["step"])


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: Path, kind: str, model_state: dict[str, torch.Tensor], metadata: dict[str, Any],
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune older ones of the same kind (``keep`` newest remain)."""
    folder = checkpoints_dir(run_dir)
    final = folder / f"{kind}-{int(metadata['step']):08d}"
    stale = folder / f".old-{final.name}-{os.getpid()}"
    tensors = {key: value.detach().cpu().contiguous() for key, value in model_state.items()}
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        save_file(tensors, temporary / MODEL_FILE, metadata={"format": FORMAT, "resnetlab": json.dumps(metadata)})
        torch.save({**state, "format": FORMAT, "step": int(metadata["step"])}, temporary / STATE_FILE)
        usual_permissions(temporary)
        fsync_tree(temporary)
        if final.exists():  # the same step saved again (e.g. a stop request right after an epoch's checkpoint)
            final.rename(stale)  # a kill before the next line leaves .old-*, which clean_temporary puts back
            temporary.rename(final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            temporary.rename(final)
        fsync_tree(folder)
    except BaseException as error:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        if stale.exists() and not final.exists():
            stale.rename(final)
        if isinstance(error, (OSError, SafetensorError, RuntimeError)):  # what full or failing disks raise
            raise CheckpointError(_write_failure(error, final, list_checkpoints(run_dir, kind), run_dir)) from error
        raise
    for old in list_checkpoints(run_dir, kind)[max(1, keep):]:  # never the one just written
        doomed = folder / f".del-{old.name}"
        try:
            old.rename(doomed)  # out of sight in one step first, so a kill while deleting leaves no torn checkpoint
        except OSError:
            continue  # pruning is housekeeping: the next save tries again
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def _write_failure(error: BaseException, final: Path, kept: list[Path], run_dir: Path) -> str:
    """One line for a failed write. safetensors and torch report a full disk in their own words."""
    text = " ".join(str(error).split()) or type(error).__name__
    full = (getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "os error 28" in text
            or "No space left" in text)
    previous = f"the previous checkpoint {kept[0]} is intact" if kept else "no earlier checkpoint exists"
    remedy = "free some space" if full else "fix that"
    return (f"cannot write checkpoint {final}: {'no space left on device' if full else text}; {previous}. "
            f"{remedy.capitalize()}, then resume with: resnetlab train --resume {run_dir}")


def list_checkpoints(run_dir: Path, kind: str = "step") -> list[Path]:
    """Complete checkpoints of one kind, newest first (temporary directories of killed writes are skipped)."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(2)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name)) and m.group(1) == kind]
    return [path for _, path in sorted(found, reverse=True)]


def clean_temporary(run_dir: Path) -> None:
    """Remove what killed writes and prunes left behind; put back a checkpoint a kill caught mid-replacement."""
    folder = checkpoints_dir(run_dir)
    if folder.is_dir():
        for leftover in folder.glob(".old-*"):
            name = leftover.name[len(".old-"):].rpartition("-")[0]
            if _NAME.fullmatch(name) and not (folder / name).exists():
                leftover.rename(folder / name)
            else:
                shutil.rmtree(leftover, ignore_errors=True)
        for leftover in [*folder.glob(".tmp-*"), *folder.glob(".del-*")]:
            shutil.rmtree(leftover, ignore_errors=True)


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model state and resnetlab metadata of a ``model.safetensors`` file."""
    try:
        tensors = load_file(path)
        with safe_open(path, framework="pt") as handle:
            raw = handle.metadata() or {}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    if raw.get("format") != FORMAT or "resnetlab" not in raw:
        raise CheckpointError(f"{path}: not a resnetlab checkpoint (no resnetlab metadata)")
    try:
        metadata = json.loads(raw["resnetlab"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata") from None
    return tensors, metadata


def read_state(path: Path) -> dict[str, Any]:
    """Training state; ``weights_only=True`` makes torch refuse anything but tensors and plain containers."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file not found: {path}") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: unreadable or unsafe training state ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a resnetlab training state")
    return state


def load_checkpoint(path: str | Path, with_state: bool = True) -> Checkpoint:
    """Load a checkpoint directory or a ``model.safetensors`` file; a run directory means its best, else last."""
    path = Path(path)
    if path.is_dir() and (checkpoints_dir(path).is_dir() or (path / "config.toml").is_file()):
        candidates = list_checkpoints(path, "best") + list_checkpoints(path, "step")
        if not candidates and (path / "results.json").is_file():
            raise CheckpointError(f"{path}: this run finished but kept no checkpoint (checkpoints/ is empty: they "
                                  "were deleted, or pruned by keep_checkpoints = 0); train it again to evaluate it")
        if not candidates:
            raise CheckpointError(f"{path}: no checkpoint yet; a run writes its first at the end of its first "
                                  "epoch (and when it is stopped with Ctrl-C)")
        path = candidates[0]
    elif path.is_dir() and not (path / MODEL_FILE).exists() and not (path / STATE_FILE).exists():
        raise CheckpointError(not_a_checkpoint_directory(path))
    if path.is_dir():
        weights_file, state_file = path / MODEL_FILE, path / STATE_FILE
    elif path.suffix == ".safetensors":
        weights_file, state_file, with_state = path, None, False
    elif not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    else:
        raise CheckpointError(f"{path}: expected a checkpoint directory, a run directory or a .safetensors file")
    model_state, metadata = read_weights(weights_file)
    state = None
    if with_state:
        state = read_state(state_file)
        if int(state["step"]) != int(metadata["step"]):
            raise CheckpointError(f"{path}: weights (step {metadata['step']}) and state (step {state['step']}) "
                                  "do not belong together")
    return Checkpoint(path, model_state, metadata, state)


def not_a_checkpoint_directory(path: Path) -> str:
    """What a folder that is neither a run nor a checkpoint is, naming the runs inside it (a seed sweep's)."""
    runs = sorted(item.name for item in path.iterdir() if checkpoints_dir(item).is_dir())
    inside = f"; it holds the runs {', '.join(runs)}: name one of them" if runs else ""
    return (f"{path} is not a run or checkpoint directory (no checkpoints/, no {MODEL_FILE}){inside}; give a run "
            f"directory, a checkpoint directory or a .safetensors file")


def load_latest(run_dir: Path, report: Callable[[str], None] | None = None) -> Checkpoint | None:
    """The newest loadable ``step-`` checkpoint; a corrupt one is skipped and the previous one used instead.

    Each skipped checkpoint is reported in one line naming the file at fault and the checkpoint used instead,
    through ``report`` (the training log), else as a warning.
    """
    say = report or (lambda message: warnings.warn(message, stacklevel=3))
    skipped: list[str] = []
    for path in list_checkpoints(run_dir, "step"):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            skipped.append(" ".join(str(error).split()))
            continue
        for reason in skipped:
            say(f"warning: {reason}; falling back to the previous checkpoint {path}")
        return checkpoint
    for reason in skipped:
        say(f"warning: {reason}; no earlier checkpoint to fall back to")
    return None
