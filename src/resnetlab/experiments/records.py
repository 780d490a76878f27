"""``experiment.json``: what an experiment was (kind, arguments, recipe, runs, hardware, wall time), so that its
results carry their evidence and ``resnetlab report`` can describe the setup without re-running anything."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetlab.errors import UserError
from resnetlab.files import write_json

if TYPE_CHECKING:
    import torch

EXPERIMENT_FILE = "experiment.json"
LENGTH_KEYS = ("epochs", "iterations")  # the only config fields a rerun may change: it extends the runs
RUNTIME_KEYS = ("device", "log_every", "tensorboard", "keep_checkpoints", "checkpoint_every")  # no effect on results


def display_name(model: str) -> str:
    """``plain20`` -> ``plain-20``, ``resnet20`` -> ``ResNet-20``, ``preact_resnet20`` -> ``pre-act ResNet-20``
    (from the registry's family and depth); other names as they are."""
    from resnetlab.models import model_info

    try:
        info = model_info(model)
    except UserError:
        return model
    shown = {"cifar_v1": "ResNet-", "imagenet": "ResNet-", "cifar_plain": "plain-", "imagenet_plain": "plain-",
             "cifar_v2_basic": "pre-act ResNet-"}.get(info.family)
    return f"{shown}{info.depth}" if shown else model


def read_experiment(exp_dir: str | Path) -> dict[str, Any]:
    path = Path(exp_dir) / EXPERIMENT_FILE
    if not path.exists():
        raise UserError(f"{exp_dir}: no {EXPERIMENT_FILE} (not an experiment directory)")
    return json.loads(path.read_text())


def check_rerun(exp_dir: Path, kind: str, config: dict[str, Any] | None, arguments: dict[str, Any]) -> None:
    """Refuse to mix two different experiments in one directory; a longer training length is allowed. The record
    of an attempt that failed before it trained or measured anything holds nothing to protect: it is no obstacle."""
    path = exp_dir / EXPERIMENT_FILE
    if not path.exists():
        return
    old = json.loads(path.read_text())
    if old.get("status") != "finished" and not holds_results(exp_dir):
        return
    if old.get("kind") != kind:
        raise UserError(f"{exp_dir} holds a {old.get('kind')!r} experiment, not {kind!r}; choose another --out")
    changed = [key for key, value in (config or {}).items()
               if key not in LENGTH_KEYS + RUNTIME_KEYS and (old.get("config") or {}).get(key, value) != value]
    changed += [key for key in ("recipe", "seed", "batch_size", "images")
                if key in arguments and key in old.get("arguments", {}) and old["arguments"][key] != arguments[key]]
    if changed:
        raise UserError(f"{exp_dir} was made with other settings ({', '.join(sorted(set(changed)))} differ); "
                        "rerun with the same ones to continue it, or choose another --out")


def holds_results(exp_dir: Path) -> bool:
    """Whether an experiment directory holds anything trained or measured: a run's checkpoint, a probed model."""
    return any(exp_dir.glob("runs/*/checkpoints/*")) or any(exp_dir.glob("models/*.json"))


def preflight(device: str, data: str | None) -> torch.device:
    """The device (refused when it is not there) and the data path (refused when it does not exist), checked
    before an experiment writes its record: a typo fails with nothing written."""
    from resnetlab.data.sources import check_source_exists
    from resnetlab.train.environment import pick_device

    check_source_exists(data or "")
    return pick_device(device)


def run_environment(run_dirs: list[Path]) -> dict[str, Any]:
    """The first run's ``environment.json`` (every run of an experiment runs on the same machine)."""
    for run_dir in run_dirs:
        path = Path(run_dir) / "environment.json"
        if path.exists():
            return json.loads(path.read_text())
    return {}


def write_experiment(exp_dir: Path, kind: str, *, title: str, arguments: dict[str, Any], started: float,
                     config: dict[str, Any] | None = None, runs: list[dict[str, Any]] | None = None,
                     environment: dict[str, Any] | None = None, status: str = "finished",
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write (or rewrite) ``experiment.json``; ``wall_seconds`` adds up the runs' own training times."""
    runs = runs or []
    record = {
        "kind": kind, "title": title, "status": status, "arguments": arguments, "config": config,
        "runs": runs, "environment": environment or run_environment([Path(r["run_dir"]) for r in runs]),
        "training_wall_seconds": sum(r.get("wall_seconds") or 0.0 for r in runs),
        "last_invocation_seconds": time.time() - started,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}),
    }
    write_json(exp_dir / EXPERIMENT_FILE, record)
    return record


def record_data(record: dict[str, Any]) -> str | None:
    """The data an experiment used: its config's, else what it recorded, else its argument."""
    return (record.get("config") or {}).get("data") or record.get("data") or record.get("arguments", {}).get("data")


def measured_seconds(record: dict[str, Any]) -> float:
    """Time spent on the experiment's work: the runs' training, else the probes' measurements."""
    if record.get("runs"):
        return record["training_wall_seconds"]
    return record.get("measured_seconds", record.get("last_invocation_seconds", 0.0))


def length_text(config: dict[str, Any]) -> str:
    if config.get("iterations"):
        return f"{config['iterations']:,} iterations"
    return f"{config.get('epochs')} epoch{'s' if config.get('epochs') != 1 else ''}"


def data_text(data: str | None) -> str:
    return Path(data).name if data else "default source ($RESNETLAB_DATA, else cifar10)"


def recipe_text(arguments: dict[str, Any], config: dict[str, Any]) -> str:
    """One line a reader can check against the paper: optimizer, lr, schedule, length, batch, regularisation."""
    parts = [f"{arguments.get('recipe', '?')}: {config['optimizer'].upper()} lr {config['lr']:g}"]
    if config["optimizer"] == "sgd":
        parts.append(f"momentum {config['momentum']:g}" + (" (Nesterov)" if config.get("nesterov") else ""))
    schedule = config["schedule"]
    if schedule == "step":
        schedule += f" (x{config['gamma']:g} at {', '.join(f'{m:g}' for m in config['milestones'])} of training)"
    parts += [f"{schedule} schedule", length_text(config), f"batch {config['batch_size']}",
              f"weight decay {config['weight_decay']:g}", f"{config['augmentation']} augmentation",
              f"{config['normalization']} normalisation",
              f"{config['val_split']} images held out for validation" if config["val_split"] else "no validation split"]
    return ", ".join(parts)


def hardware_text(environment: dict[str, Any]) -> str:
    if not environment:
        return "unknown (no environment.json)"
    threads = environment.get("cpu_threads", "?")
    device = environment.get("gpu") or (f"{environment.get('device', '?')} ({environment.get('processor', '?')}, "
                                        f"{threads} thread{'' if threads == 1 else 's'})")
    return f"{device}; {environment.get('platform', '?')}; Python {environment.get('python', '?')}, " \
           f"torch {environment.get('torch', '?')}, resnetlab {environment.get('resnetlab', '?')}" + \
           (f" (git {environment['git_revision']})" if environment.get("git_revision") else "")


def setup_rows(record: dict[str, Any], rows: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The "Setup" section as (item, text) rows: what was run, on what, for how long."""
    arguments, config = record.get("arguments", {}), record.get("config")
    items = [("experiment", record["title"])]
    if arguments.get("command"):
        items.append(("command", f"`{arguments['command']}`"))
    items.append(("data", data_text(record_data(record))))
    if config:
        items.append(("recipe", recipe_text(arguments, config)))
    if arguments.get("seeds") is not None:
        items.append(("seeds", ", ".join(str(s) for s in arguments["seeds"])))
    items += rows or []
    items.append(("hardware", hardware_text(record.get("environment", {}))))
    if record.get("runs"):
        items.append(("wall time", (f"{record['training_wall_seconds']:,.0f} s of training over "
                                   f"{len(record['runs'])} runs (sum of the runs' own times)")))
    else:
        items.append(("wall time", f"{measured_seconds(record):,.0f} s of measurement"))
    if record.get("status") != "finished":
        items.append(("status", f"**{record.get('status')}**: not every run has finished"))
    return [(key, str(value)) for key, value in items]
