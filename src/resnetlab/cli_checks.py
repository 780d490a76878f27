"""Checks and messages of the training-side commands that give a user the way forward: where a run's data
went, a run shorter than what it already trained, the command that resumes, the flag that was meant."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from resnetlab.data.sources import DATA_ENV, is_path_source
from resnetlab.errors import UserError


def command_prefix() -> str:
    """How to run resnetlab again, as this process was started: ``resnetlab`` when that is on the PATH,
    else the console script's path (``.venv/bin/resnetlab`` after the quick start) or ``python -m resnetlab``."""
    program = sys.argv[0] if sys.argv else ""
    if Path(program).name == "resnetlab":
        on_path = shutil.which("resnetlab")
        if on_path and os.path.abspath(on_path) == os.path.abspath(program):
            return "resnetlab"
        return shlex.quote(program)
    python = sys.executable  # compared unresolved: a virtual environment's python is a link to another one
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == os.path.abspath(python):
        python = "python"
    return f"{shlex.quote(python)} -m resnetlab"


def pasteable(message: str) -> str:
    """A message whose suggested commands begin ``resnetlab ...``, with the prefix that works here."""
    prefix = command_prefix()
    return message if prefix == "resnetlab" else message.replace("resnetlab train --resume", f"{prefix} train --resume")


def absolute_data(data: str | None) -> str | None:
    """A data path as an absolute path (named sources stay names), so that a run can be evaluated or resumed
    from any directory."""
    if data is None or not is_path_source(data):
        return data
    return os.path.abspath(os.path.expanduser(data))


def default_data() -> str:
    """What an empty ``data`` means for a new run: $RESNETLAB_DATA (made absolute) if set, else the default."""
    check_data_env()
    return absolute_data(os.environ.get(DATA_ENV, "")) or ""


def check_data_env() -> None:
    """$RESNETLAB_DATA naming a path that is not there: said with the variable's name, since nobody typed it."""
    value = os.environ.get(DATA_ENV, "")
    if is_path_source(value) and not Path(value).expanduser().exists():
        raise UserError(f"${DATA_ENV}={value}: no such path; fix or unset it, or give --data")


def layered_values(recipe: str | None, config_file: str | None) -> dict[str, tuple[Any, str]]:
    """What a typed ``--recipe`` and ``--config FILE`` set, as key -> (value, the flag that set it), the file over
    the recipe: on an existing run these apply as flags do (resume_config's rules), not silently not at all."""
    from resnetlab.train.config import coerce, read_toml, recipe_values

    layers = ([(f"--recipe {recipe}", recipe_values(recipe))] if recipe else []) + \
             ([(f"--config {config_file}", read_toml(Path(config_file)))] if config_file else [])
    found: dict[str, tuple[Any, str]] = {}
    for source, table in layers:
        for key, value in table.items():
            try:
                value = coerce(key, value)
            except UserError as error:
                raise UserError(f"{source}: {error}") from None
            found[key] = (absolute_data(value) if key == "data" else value, source)
    return found


def check_layers_on_resume(run_dir: Path, stored: dict[str, Any], layered: dict[str, tuple[Any, str]],
                           flags: dict[str, Any]) -> None:
    """Refuse a typed recipe or config file that sets a field a started run cannot change (its model, seed, batch
    size...) to another value than the run's, naming the flag: the user may never have typed that field."""
    from resnetlab.train.resume import FIXED_ON_RESUME

    for key, (value, source) in layered.items():
        if key in flags or key == "data" or key not in FIXED_ON_RESUME or stored.get(key, value) == value:
            continue
        raise UserError(f"{source} sets {key} = {value!r}, but {run_dir} has {stored[key]!r}, which a started run "
                        f"cannot change; drop {source.split()[0]} to continue the run as it is, or choose another "
                        "--out")


def check_stored_data(data: str, run: Path) -> None:
    """A path from a run's config that is gone: say where it came from and how to give its new place."""
    if is_path_source(data) and not Path(data).expanduser().exists():
        raise UserError(f"data source not found: {data} (the path stored in {run}'s config); if the data has "
                        "moved, give its new place with --data PATH")


def check_not_shorter(run_dir: Path, state: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse a length that a stored run has already passed: its weights are past that point and cannot go back."""
    if "epochs" not in overrides and "iterations" not in overrides:
        return
    progress = state["progress"]
    done_steps = int(progress["step"])
    if overrides.get("iterations"):
        wanted, unit = int(overrides["iterations"]), "steps"
        done = done_steps
    else:
        wanted, unit = int(overrides["epochs"]), "epochs"
        done = int(progress["epoch"])
    if wanted < done:
        raise UserError(f"{run_dir} has already trained {done:,} {unit} ({done_steps:,} steps), more than the "
                        f"{wanted:,} asked for, and its weights cannot go back; for a shorter run choose a new "
                        f"directory, e.g. --out {run_dir}-{wanted}{'ep' if unit == 'epochs' else 'it'}")


def check_resume_folder(path: Path) -> None:
    if not path.exists():
        raise UserError(f"--resume {path}: no such folder (give a run directory, e.g. runs/resnet20-cpu)")


def unrecognized(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """``unrecognized arguments: --batchsize 64 (did you mean --batch-size?)``."""
    options = sorted(set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", parser.format_help())))
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=")[0], options, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]}?")
    return f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else "")
