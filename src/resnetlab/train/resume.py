"""What a resumed run may change: the stored config, with the explicit overrides applied and logged, and the
fields declared ``resume="fixed"`` in train/config.py refused with a new value."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from resnetlab.errors import UserError
from resnetlab.train.config import TrainConfig, coerce, field_types

FIXED_ON_RESUME = tuple(f.name for f in fields(TrainConfig) if f.metadata.get("resume") == "fixed")


def resume_config(stored: dict[str, Any], overrides: dict[str, Any], log: Callable[[str], None],
                  run_dir: str | Path = "the run") -> TrainConfig:
    """The config a resumed run continues with: the stored one, with the explicit overrides (e.g. more epochs)
    applied and logged. A field declared ``resume="fixed"`` (the model, the data and its split, the seed, the
    batch size: what the checkpoint's weights and data order depend on) is refused with a new value."""
    values = {key: value for key, value in stored.items() if key in field_types()}
    for key, value in overrides.items():
        value = coerce(key, value)
        if values.get(key) == value or (key == "data" and same_file(values.get(key), value)):
            continue
        if key in FIXED_ON_RESUME and not (key == "data" and data_moved(values.get(key))):
            raise UserError(f"cannot change {key} of an existing run ({run_dir} has {values.get(key)!r}); "
                            "use another --out")
        log(f"resume: overriding {key} = {values.get(key)!r} -> {value!r}")
        values[key] = value
    return TrainConfig(**values).validate()


def same_file(stored: Any, given: Any) -> bool:
    """Two spellings of one data path (``../data/x.tar.xz`` and the absolute path ``resnetlab train`` stores)."""
    try:
        return isinstance(stored, str) and isinstance(given, str) and os.path.samefile(stored, given)
    except OSError:
        return False


def data_moved(stored: Any) -> bool:
    """A stored data path that no longer exists: the data was moved, and a new ``data`` may point to it."""
    return (isinstance(stored, str) and stored.strip().lower() not in ("", "cifar10", "cifar100", "synthetic")
            and not Path(stored).expanduser().exists())
